"""`loraforge caption`: caption a curated dataset (a job in the captioning service), then show
every caption with its trigger; `caption edit` / `caption approve` for review.

The review subcommands work directly on the object store (CaptionReviewStore) for now: the
captioning gRPC has no review calls yet. Once it has, they should go through the service.
"""

from __future__ import annotations

import getpass
import uuid
from enum import StrEnum
from typing import Annotated, Any

import typer
from loraforge.cli.datasets import resolve_dataset
from loraforge.cli.jobs import call, follow, is_terminal, job_state, scope
from loraforge.cli.output import console, emit_json, fail
from loraforge.runtime.params import LoraType

INTERIM = ("Interim: writes the caption records in the object store directly "
           "(LORAFORGE_S3__*), until the captioning service has review calls.")

caption_app = typer.Typer(
    help="Caption a curated dataset; review (edit, approve) its captions.",
    invoke_without_command=True, no_args_is_help=False,
)


class Source(StrEnum):
    ATTRIBUTES = "attributes"
    VLM = "vlm"
    OPENAI = "openai"


def register(app: typer.Typer) -> None:
    app.add_typer(caption_app, name="caption")


def _default_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no login name (containers): a neutral one
        return "user"


@caption_app.callback(invoke_without_command=True)
def caption(
    ctx: typer.Context,
    project: str | None = typer.Option(None, "--project", "-p", help="Project to caption (required)."),
    trigger: str | None = typer.Option(None, "--trigger", help="Rare token every caption starts "
                                       "with, e.g. ohwx_woman (required)."),
    tenant: str = typer.Option("default", "--tenant", help="Tenant the project belongs to."),
    dataset: str | None = typer.Option(None, "--dataset", help="Dataset id (default: the project's "
                                       "newest curated dataset)."),
    lora_type: Annotated[LoraType | None, typer.Option(
        "--type", help="What the LoRA learns (default: the dataset's type).")] = None,
    source: Annotated[Source, typer.Option("--source", help="Where descriptions come from: measured "
                                           "attributes, a local VLM, or an OpenAI-style API.")
                      ] = Source.ATTRIBUTES,
    class_noun: str | None = typer.Option(None, "--class-noun", help="Class word after the trigger, "
                                          "e.g. woman (default: person)."),
    base: str | None = typer.Option(None, "--base", help="Base model preset the captions are for "
                                    "(sets the token limit)."),
    motion: str | None = typer.Option(None, "--motion", help="Effect LoRAs: the motion every "
                                      "sample shares."),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="Follow the job and show the captions."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of tables."),
) -> None:
    """Caption a curated dataset: every caption starts with the trigger; edited or approved
    captions are kept as they are on a re-run."""
    if ctx.invoked_subcommand is not None:
        return
    if not project or not trigger:
        missing = " and ".join(n for n, v in (("--project", project), ("--trigger", trigger)) if not v)
        fail(f"missing {missing}: `loraforge caption --project NAME --trigger WORD`",
             as_json=as_json, code=2)
    _caption(project, tenant, trigger, dataset, lora_type, source, class_noun, base, motion,
             wait, as_json)


def _caption(project: str, tenant: str, trigger: str, dataset: str | None, lora_type: LoraType | None,
             source: Source, class_noun: str | None, base: str | None, motion: str | None,
             wait: bool, as_json: bool) -> None:
    from loraforge.captioning.trigger import validate_trigger
    from loraforge.runtime.errors import LoraforgeError, NotFound, Unavailable
    from loraforge.runtime.grpc_client import sync_channel
    from loraforge.runtime.keys import ProjectRef
    from loraforge.runtime.settings import load_settings
    from loraforge.runtime.storage import ObjectStore
    from loraforge.v1 import captioning_pb2, captioning_pb2_grpc

    try:
        validate_trigger(trigger)  # the same rules as the service, before any network call
        settings = load_settings()
        ref = ProjectRef(tenant, project)
    except LoraforgeError as exc:
        fail(str(exc), as_json=as_json, code=2)
    store = ObjectStore.connect(settings.s3)
    try:
        dataset_id, record = resolve_dataset(store, ref, dataset)
    except Unavailable as exc:
        fail(str(exc), as_json=as_json)
    except (NotFound, LoraforgeError) as exc:
        fail(str(exc), as_json=as_json, code=2)
    kind = lora_type.value if lora_type else str(record.get("lora_type") or "")
    wire = scope(tenant, project)
    target = settings.endpoints.captioning
    with sync_channel(target) as channel:
        stub = captioning_pb2_grpc.CaptioningServiceStub(channel)
        request = captioning_pb2.StartCaptioningRequest(
            scope=wire, request_id=f"cli-{uuid.uuid4().hex}", dataset_id=dataset_id, trigger=trigger,
            lora_type=kind, source=source.value, class_noun=class_noun or "", base_preset=base or "",
            motion=motion or "")
        job = call(stub.StartCaptioning, request, service="captioning", target=target, as_json=as_json)
        if wait and not is_terminal(job):
            job = follow(stub, wire, job, service="captioning", target=target, as_json=as_json)
    state = job_state(job)
    if not wait and state not in ("SUCCEEDED", "FAILED", "CANCELLED"):
        if as_json:
            emit_json({"job_id": job.id, "state": state, "dataset_id": dataset_id})
        else:
            console.print(f"captioning job [bold]{job.id}[/bold] {state} for dataset {dataset_id} "
                          "(not waiting for it: --no-wait)")
        return
    if state != "SUCCEEDED":
        fail(f"captioning job {job.id} {state.lower()}: {job.message}", as_json=as_json)
    try:
        view = _view(store, ref, dataset_id, job, trigger)
    except LoraforgeError as exc:
        fail(f"job {job.id} succeeded but its captions cannot be read: {exc}", as_json=as_json)
    if as_json:
        emit_json(view)
    else:
        _print(view)


def _view(store: Any, ref: Any, dataset_id: str, job: Any, trigger: str) -> dict[str, Any]:
    from loraforge.captioning.review import CaptionReviewStore
    from loraforge.runtime.servicers import dict_from_struct

    result = dict_from_struct(job.result)
    records = CaptionReviewStore(store, ref, dataset_id).list()
    captions = [{
        "clip_id": r.clip_id, "text": r.text, "approved": r.approved, "edited": r.current.by_human,
        "author": r.current.author, "versions": len(r.versions), "warnings": list(r.current.warnings),
    } for r in records]
    return {
        "job_id": job.id, "state": job_state(job), "message": job.message, "dataset_id": dataset_id,
        "tenant": ref.tenant, "project": ref.project, "trigger": result.get("trigger", trigger),
        "lora_type": result.get("lora_type"), "written": int(result.get("written") or 0),
        "kept": int(result.get("kept") or 0), "captions": captions,
        "warnings": list(result.get("warnings") or []),
    }


def _highlight(text: str, trigger: str) -> Any:
    from rich.text import Text

    out = Text(text)
    out.highlight_words([trigger], style="bold magenta")
    return out


def _print(view: dict[str, Any]) -> None:
    from rich.table import Table

    console.print(f"[green]dataset {view['dataset_id']}[/green] ({view['tenant']}/{view['project']}): "
                  f"{len(view['captions'])} captions, {view['written']} new, {view['kept']} kept "
                  f"(job {view['job_id']})")
    table = Table("clip", "caption", "status")
    for c in view["captions"]:
        status = "approved" if c["approved"] else ("edited" if c["edited"] else "")
        table.add_row(c["clip_id"], _highlight(c["text"], view["trigger"]), status)
    console.print(table)
    for w in view["warnings"]:
        console.print(f"[yellow]warning:[/yellow] {w}")
    console.print("review: `loraforge caption edit CLIP_ID TEXT` / `loraforge caption approve CLIP_ID`")


# -- review (interim: the object store directly) ------------------------------------------------


def _review(project: str, tenant: str, dataset: str | None, as_json: bool) -> Any:
    from loraforge.captioning.review import CaptionReviewStore
    from loraforge.runtime.errors import LoraforgeError, Unavailable
    from loraforge.runtime.keys import ProjectRef
    from loraforge.runtime.settings import load_settings
    from loraforge.runtime.storage import ObjectStore

    try:
        settings = load_settings()
        ref = ProjectRef(tenant, project)
        store = ObjectStore.connect(settings.s3)
        dataset_id, _ = resolve_dataset(store, ref, dataset)
    except Unavailable as exc:
        fail(str(exc), as_json=as_json)
    except LoraforgeError as exc:
        fail(str(exc), as_json=as_json, code=2)
    return CaptionReviewStore(store, ref, dataset_id)


def _record_view(rec: Any) -> dict[str, Any]:
    return {"clip_id": rec.clip_id, "dataset_id": rec.dataset_id, "text": rec.text,
            "approved": rec.approved, "approved_by": rec.approved_by, "author": rec.current.author,
            "versions": len(rec.versions)}


def _check_edit(review: Any, text: str) -> str:
    """The rules the captioner holds a person's caption to, from the run that made the
    captions (trigger, template, shared text). Length is checked with the estimate."""
    from loraforge.captioning.captioner import validate_user_caption
    from loraforge.captioning.templates import CaptionTemplate
    from loraforge.captioning.tokens import EstimateTokenizer

    run = review.load_run()
    if not run:
        return text.strip()
    template = CaptionTemplate.from_dict(run["lora_type"], run["template"]) if run.get("template") else None
    return validate_user_caption(text, trigger=run["trigger"], tokenizer=EstimateTokenizer(),
                                 template=template, shared=run.get("shared") or {})


@caption_app.command("edit", help=f"Replace one clip's caption with TEXT (a new version; the "
                     f"old ones are kept). A re-run of captioning keeps it. {INTERIM}")
def edit(
    clip_id: str = typer.Argument(..., help="Clip id, as `loraforge caption` lists them."),
    text: str = typer.Argument(..., help="The new caption, starting with the trigger."),
    project: str = typer.Option(..., "--project", "-p", help="Project name."),
    tenant: str = typer.Option("default", "--tenant", help="Tenant the project belongs to."),
    dataset: str | None = typer.Option(None, "--dataset", help="Dataset id (default: the newest)."),
    approve: bool = typer.Option(False, "--approve", help="Approve it as well."),
    user: str = typer.Option(_default_user(), "--user", help="Who edits (kept in the history)."),
    as_json: bool = typer.Option(False, "--json", help="Print the record as JSON."),
) -> None:
    from loraforge.runtime.errors import LoraforgeError, Unavailable

    review = _review(project, tenant, dataset, as_json)
    try:
        rec = review.edit(clip_id, _check_edit(review, text), user=user, approve=approve)
    except Unavailable as exc:
        fail(str(exc), as_json=as_json)
    except LoraforgeError as exc:
        fail(str(exc), as_json=as_json, code=2)
    if as_json:
        emit_json(_record_view(rec))
    else:
        run = review.load_run() or {}
        console.print(f"{rec.clip_id}:", _highlight(rec.text, run.get("trigger") or rec.text.split(",")[0]),
                      f"(version {len(rec.versions) - 1}{', approved' if rec.approved else ''})")


@caption_app.command("approve", help=f"Approve captions as they are (a re-run keeps them). {INTERIM}")
def approve(
    clip_ids: Annotated[list[str] | None, typer.Argument(help="Clip ids to approve.",
                                                         show_default=False)] = None,
    project: str = typer.Option(..., "--project", "-p", help="Project name."),
    tenant: str = typer.Option("default", "--tenant", help="Tenant the project belongs to."),
    dataset: str | None = typer.Option(None, "--dataset", help="Dataset id (default: the newest)."),
    every: bool = typer.Option(False, "--all", help="Approve every caption of the dataset."),
    revoke: bool = typer.Option(False, "--revoke", help="Withdraw the approval instead."),
    user: str = typer.Option(_default_user(), "--user", help="Who approves."),
    as_json: bool = typer.Option(False, "--json", help="Print the records as JSON."),
) -> None:
    from loraforge.runtime.errors import LoraforgeError, Unavailable

    if not clip_ids and not every:
        fail("name the clips to approve, or pass --all", as_json=as_json, code=2)
    review = _review(project, tenant, dataset, as_json)
    try:
        ids = [r.clip_id for r in review.list()] if every else list(clip_ids or [])
        recs = [review.approve(cid, user=user, approved=not revoke) for cid in ids]
    except Unavailable as exc:
        fail(str(exc), as_json=as_json)
    except LoraforgeError as exc:
        fail(str(exc), as_json=as_json, code=2)
    if as_json:
        emit_json({"dataset_id": review.dataset_id, "captions": [_record_view(r) for r in recs]})
    else:
        word = "withdrew approval of" if revoke else "approved"
        console.print(f"{word} {len(recs)} caption(s) of dataset {review.dataset_id}")
