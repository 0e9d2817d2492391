"""`loraforge caption`: caption a curated dataset (a job in the captioning service), then show
every caption with its trigger; `caption edit` / `caption approve` for review.

The review subcommands call the captioning service's review RPCs (ListCaptions, EditCaption,
ApproveCaption); with `--api` every subcommand goes through the gateway's REST API instead.
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
from loraforge.cli.remote import remote_of
from loraforge.runtime.params import LoraType

INTERIM = (
    "Goes through the captioning service (settings.endpoints.captioning), or the "
    "gateway with --api."
)

caption_app = typer.Typer(
    help="Caption a curated dataset; review (edit, approve) its captions.",
    invoke_without_command=True,
    no_args_is_help=False,
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
    except Exception:
        return "user"


@caption_app.callback(invoke_without_command=True)
def caption(
    ctx: typer.Context,
    project: str | None = typer.Option(
        None, "--project", "-p", help="Project to caption (required)."
    ),
    trigger: str | None = typer.Option(
        None, "--trigger", help="Rare token every caption starts with, e.g. ohwx_woman (required)."
    ),
    tenant: str = typer.Option("default", "--tenant", help="Tenant the project belongs to."),
    dataset: str | None = typer.Option(
        None, "--dataset", help="Dataset id (default: the project's newest curated dataset)."
    ),
    lora_type: Annotated[
        LoraType | None,
        typer.Option("--type", help="What the LoRA learns (default: the dataset's type)."),
    ] = None,
    source: Annotated[
        Source,
        typer.Option(
            "--source",
            help="Where descriptions come from: measured "
            "attributes, a local VLM, or an OpenAI-style API.",
        ),
    ] = Source.ATTRIBUTES,
    class_noun: str | None = typer.Option(
        None, "--class-noun", help="Class word after the trigger, e.g. woman (default: person)."
    ),
    base: str | None = typer.Option(
        None, "--base", help="Base model preset the captions are for (sets the token limit)."
    ),
    motion: str | None = typer.Option(
        None, "--motion", help="Effect LoRAs: the motion every sample shares."
    ),
    wait: bool = typer.Option(
        True, "--wait/--no-wait", help="Follow the job and show the captions."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of tables."),
) -> None:
    """Caption a curated dataset: every caption starts with the trigger; edited or approved
    captions are kept as they are on a re-run."""
    if ctx.invoked_subcommand is not None:
        return
    if not project or not trigger:
        missing = " and ".join(
            n for n, v in (("--project", project), ("--trigger", trigger)) if not v
        )
        fail(
            f"missing {missing}: `loraforge caption --project NAME --trigger WORD`",
            as_json=as_json,
            code=2,
        )
    remote = remote_of(ctx)
    if remote is not None:
        _remote_caption(
            remote,
            project,
            trigger,
            dataset,
            lora_type,
            source,
            class_noun,
            base,
            motion,
            wait,
            as_json,
        )
        return
    _caption(
        project,
        tenant,
        trigger,
        dataset,
        lora_type,
        source,
        class_noun,
        base,
        motion,
        wait,
        as_json,
    )


def _caption(
    project: str,
    tenant: str,
    trigger: str,
    dataset: str | None,
    lora_type: LoraType | None,
    source: Source,
    class_noun: str | None,
    base: str | None,
    motion: str | None,
    wait: bool,
    as_json: bool,
) -> None:
    from loraforge.captioning.auto import save_defaults
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
    try:
        # Later datasets of this project are captioned the same way, automatically.
        save_defaults(
            store,
            ref,
            trigger=trigger,
            lora_type=kind,
            source=source.value,
            class_noun=class_noun,
            base_preset=base,
            motion=motion,
        )
    except LoraforgeError as exc:
        fail(str(exc), as_json=as_json, code=2)
    wire = scope(tenant, project)
    target = settings.endpoints.captioning
    with sync_channel(target) as channel:
        stub = captioning_pb2_grpc.CaptioningServiceStub(channel)
        request = captioning_pb2.StartCaptioningRequest(
            scope=wire,
            request_id=f"cli-{uuid.uuid4().hex}",
            dataset_id=dataset_id,
            trigger=trigger,
            lora_type=kind,
            source=source.value,
            class_noun=class_noun or "",
            base_preset=base or "",
            motion=motion or "",
        )
        job = call(
            stub.StartCaptioning, request, service="captioning", target=target, as_json=as_json
        )
        if wait and not is_terminal(job):
            job = follow(stub, wire, job, service="captioning", target=target, as_json=as_json)
    state = job_state(job)
    if not wait and state not in ("SUCCEEDED", "FAILED", "CANCELLED"):
        if as_json:
            emit_json({"job_id": job.id, "state": state, "dataset_id": dataset_id})
        else:
            console.print(
                f"captioning job [bold]{job.id}[/bold] {state} for dataset {dataset_id} "
                "(not waiting for it: --no-wait)"
            )
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
    captions = [
        {
            "clip_id": r.clip_id,
            "text": r.text,
            "approved": r.approved,
            "edited": r.current.by_human,
            "author": r.current.author,
            "versions": len(r.versions),
            "warnings": list(r.current.warnings),
        }
        for r in records
    ]
    return {
        "job_id": job.id,
        "state": job_state(job),
        "message": job.message,
        "dataset_id": dataset_id,
        "tenant": ref.tenant,
        "project": ref.project,
        "trigger": result.get("trigger", trigger),
        "lora_type": result.get("lora_type"),
        "written": int(result.get("written") or 0),
        "kept": int(result.get("kept") or 0),
        "captions": captions,
        "warnings": list(result.get("warnings") or []),
    }


def _highlight(text: str, trigger: str) -> Any:
    from rich.text import Text

    out = Text(text)
    out.highlight_words([trigger], style="bold magenta")
    return out


def _print(view: dict[str, Any]) -> None:
    from rich.table import Table

    console.print(
        f"[green]dataset {view['dataset_id']}[/green] ({view['tenant']}/{view['project']}): "
        f"{len(view['captions'])} captions, {view['written']} new, {view['kept']} kept "
        f"(job {view['job_id']})"
    )
    table = Table("clip", "caption", "status")
    for c in view["captions"]:
        status = "approved" if c["approved"] else ("edited" if c["edited"] else "")
        table.add_row(c["clip_id"], _highlight(c["text"], view["trigger"]), status)
    console.print(table)
    for w in view["warnings"]:
        console.print(f"[yellow]warning:[/yellow] {w}")
    console.print(
        "review: `loraforge caption edit CLIP_ID TEXT` / `loraforge caption approve CLIP_ID`"
    )


# -- review (through the captioning service's review RPCs) -------------------------------------


class _Review:
    """ListCaptions / EditCaption / ApproveCaption on one dataset (the newest by default)."""

    def __init__(self, project: str, tenant: str, dataset: str | None, as_json: bool):
        from loraforge.runtime.errors import LoraforgeError, Unavailable
        from loraforge.runtime.keys import ProjectRef
        from loraforge.runtime.settings import load_settings
        from loraforge.runtime.storage import ObjectStore

        try:
            settings = load_settings()
            ref = ProjectRef(tenant, project)
            store = ObjectStore.connect(settings.s3)
            self.dataset_id, _ = resolve_dataset(store, ref, dataset)
        except Unavailable as exc:
            fail(str(exc), as_json=as_json)
        except LoraforgeError as exc:
            fail(str(exc), as_json=as_json, code=2)
        self.scope = scope(tenant, project)
        self.target = settings.endpoints.captioning
        self.as_json = as_json

    def _call(self, name: str, request: Any) -> Any:
        from loraforge.runtime.grpc_client import sync_channel
        from loraforge.v1 import captioning_pb2_grpc

        with sync_channel(self.target) as channel:
            stub = captioning_pb2_grpc.CaptioningServiceStub(channel)
            return call(
                getattr(stub, name),
                request,
                service="captioning",
                target=self.target,
                as_json=self.as_json,
            )

    def list(self) -> list[Any]:
        from loraforge.v1 import captioning_pb2

        return list(
            self._call(
                "ListCaptions",
                captioning_pb2.ListCaptionsRequest(scope=self.scope, dataset_id=self.dataset_id),
            ).captions
        )

    def edit(self, clip_id: str, text: str, *, user: str, approve: bool) -> Any:
        from loraforge.v1 import captioning_pb2

        return self._call(
            "EditCaption",
            captioning_pb2.EditCaptionRequest(
                scope=self.scope,
                dataset_id=self.dataset_id,
                clip_id=clip_id,
                text=text,
                user=user,
                approve=approve,
            ),
        )

    def approve(self, clip_id: str, *, user: str, revoke: bool) -> Any:
        from loraforge.v1 import captioning_pb2

        return self._call(
            "ApproveCaption",
            captioning_pb2.ApproveCaptionRequest(
                scope=self.scope,
                dataset_id=self.dataset_id,
                clip_id=clip_id,
                user=user,
                revoke=revoke,
            ),
        )


def _record_view(rec: Any) -> dict[str, Any]:
    """A CaptionRecord (wire) as the CLI shows it."""
    return {
        "clip_id": rec.clip_id,
        "dataset_id": rec.dataset_id,
        "text": rec.text,
        "approved": rec.approved,
        "approved_by": rec.approved_by,
        "author": rec.versions[-1].author if rec.versions else "",
        "versions": len(rec.versions),
    }


@caption_app.command(
    "edit",
    help=f"Replace one clip's caption with TEXT (a new version; the "
    f"old ones are kept). A re-run of captioning keeps it. {INTERIM}",
)
def edit(
    ctx: typer.Context,
    clip_id: str = typer.Argument(..., help="Clip id, as `loraforge caption` lists them."),
    text: str = typer.Argument(..., help="The new caption, starting with the trigger."),
    project: str = typer.Option(..., "--project", "-p", help="Project name."),
    tenant: str = typer.Option("default", "--tenant", help="Tenant the project belongs to."),
    dataset: str | None = typer.Option(None, "--dataset", help="Dataset id (default: the newest)."),
    approve: bool = typer.Option(False, "--approve", help="Approve it as well."),
    user: str = typer.Option(_default_user(), "--user", help="Who edits (kept in the history)."),
    as_json: bool = typer.Option(False, "--json", help="Print the record as JSON."),
) -> None:
    if remote_of(ctx) is not None:
        _remote_edit(remote_of(ctx), clip_id, text, project, dataset, approve, as_json)
        return
    rec = _Review(project, tenant, dataset, as_json).edit(clip_id, text, user=user, approve=approve)
    if as_json:
        emit_json(_record_view(rec))
    else:
        console.print(
            f"{rec.clip_id}:",
            _highlight(rec.text, rec.text.split(",")[0]),
            f"(version {len(rec.versions) - 1}{', approved' if rec.approved else ''})",
        )


@caption_app.command(
    "approve", help=f"Approve captions as they are (a re-run keeps them). {INTERIM}"
)
def approve(
    ctx: typer.Context,
    clip_ids: Annotated[
        list[str] | None, typer.Argument(help="Clip ids to approve.", show_default=False)
    ] = None,
    project: str = typer.Option(..., "--project", "-p", help="Project name."),
    tenant: str = typer.Option("default", "--tenant", help="Tenant the project belongs to."),
    dataset: str | None = typer.Option(None, "--dataset", help="Dataset id (default: the newest)."),
    every: bool = typer.Option(False, "--all", help="Approve every caption of the dataset."),
    revoke: bool = typer.Option(False, "--revoke", help="Withdraw the approval instead."),
    user: str = typer.Option(_default_user(), "--user", help="Who approves."),
    as_json: bool = typer.Option(False, "--json", help="Print the records as JSON."),
) -> None:
    if not clip_ids and not every:
        fail("name the clips to approve, or pass --all", as_json=as_json, code=2)
    if remote_of(ctx) is not None:
        _remote_approve(remote_of(ctx), clip_ids or [], every, revoke, project, dataset, as_json)
        return
    review = _Review(project, tenant, dataset, as_json)
    ids = [r.clip_id for r in review.list()] if every else list(clip_ids or [])
    recs = [review.approve(cid, user=user, revoke=revoke) for cid in ids]
    if as_json:
        emit_json({"dataset_id": review.dataset_id, "captions": [_record_view(r) for r in recs]})
    else:
        word = "withdrew approval of" if revoke else "approved"
        console.print(f"{word} {len(recs)} caption(s) of dataset {review.dataset_id}")


# -- remote (--api): the gateway's captioning-jobs and datasets/{id}/captions -------------------


def _caption_view(c: dict[str, Any]) -> dict[str, Any]:
    return {
        "clip_id": c["clip_id"],
        "text": c["text"],
        "approved": c.get("approved", False),
        "edited": c.get("edited", False),
        "author": c.get("author", ""),
        "versions": c.get("versions", 1),
        "warnings": c.get("warnings", []),
    }


def _remote_caption(
    remote: Any,
    project: str,
    trigger: str,
    dataset: str | None,
    lora_type: LoraType | None,
    source: Source,
    class_noun: str | None,
    base: str | None,
    motion: str | None,
    wait: bool,
    as_json: bool,
) -> None:
    from loraforge.captioning.trigger import validate_trigger
    from loraforge.runtime.errors import LoraforgeError

    try:
        validate_trigger(trigger)
    except LoraforgeError as exc:
        fail(str(exc), as_json=as_json, code=2)
    with remote:
        dataset_id = dataset or remote.newest_dataset(project, as_json=as_json)
        body = {
            "dataset_id": dataset_id,
            "trigger": trigger,
            "source": source.value,
            "lora_type": lora_type.value if lora_type else None,
            "class_noun": class_noun or "",
            "base_preset": base or "",
            "motion": motion or "",
        }
        job = remote.start(project, "captioning", body, as_json=as_json)
        if wait and job["state"] not in ("SUCCEEDED", "FAILED", "CANCELLED"):
            job = remote.follow(project, "captioning", job, as_json=as_json)
        if not wait and job["state"] not in ("SUCCEEDED", "FAILED", "CANCELLED"):
            if as_json:
                emit_json({"job_id": job["id"], "state": job["state"], "dataset_id": dataset_id})
            else:
                console.print(
                    f"captioning job [bold]{job['id']}[/bold] {job['state']} for dataset "
                    f"{dataset_id} (not waiting for it: --no-wait)"
                )
            return
        if job["state"] != "SUCCEEDED":
            fail(
                f"captioning job {job['id']} {job['state'].lower()}: {job.get('message', '')}",
                as_json=as_json,
            )
        caps = remote.request(
            "GET", f"/v1/projects/{project}/datasets/{dataset_id}/captions", as_json=as_json
        )["captions"]
    result = job.get("result") or {}
    view = {
        "job_id": job["id"],
        "state": job["state"],
        "message": job.get("message", ""),
        "dataset_id": dataset_id,
        "tenant": None,
        "project": project,
        "trigger": result.get("trigger", trigger),
        "lora_type": result.get("lora_type"),
        "written": int(result.get("written") or 0),
        "kept": int(result.get("kept") or 0),
        "captions": [_caption_view(c) for c in caps],
        "warnings": list(result.get("warnings") or []),
    }
    if as_json:
        emit_json(view)
    else:
        view["tenant"] = "(key's tenant)"
        _print(view)


def _remote_edit(
    remote: Any,
    clip_id: str,
    text: str,
    project: str,
    dataset: str | None,
    approve: bool,
    as_json: bool,
) -> None:
    """PUT .../captions/CLIP (the gateway records the key as the author), then approve."""
    with remote:
        dataset_id = dataset or remote.newest_dataset(project, as_json=as_json)
        base = f"/v1/projects/{project}/datasets/{dataset_id}/captions/{clip_id}"
        rec = remote.request("PUT", base, json={"text": text}, as_json=as_json)
        if approve:
            rec = remote.request("POST", f"{base}/approve", as_json=as_json)
    view = {
        "dataset_id": dataset_id,
        **_caption_view(rec),
        "approved_by": rec.get("approved_by", ""),
    }
    if as_json:
        emit_json(view)
    else:
        console.print(
            f"{view['clip_id']}:",
            _highlight(view["text"], rec.get("trigger") or text.split(",")[0]),
            f"(version {view['versions'] - 1}{', approved' if view['approved'] else ''})",
        )


def _remote_approve(
    remote: Any,
    clip_ids: list[str],
    every: bool,
    revoke: bool,
    project: str,
    dataset: str | None,
    as_json: bool,
) -> None:
    if revoke:
        fail(
            "--revoke has no equivalent in the gateway's API; withdraw approvals locally "
            "(without --api)",
            as_json=as_json,
            code=2,
        )
    with remote:
        dataset_id = dataset or remote.newest_dataset(project, as_json=as_json)
        base = f"/v1/projects/{project}/datasets/{dataset_id}/captions"
        if every:
            clip_ids = [
                c["clip_id"] for c in remote.request("GET", base, as_json=as_json)["captions"]
            ]
        recs = [
            remote.request("POST", f"{base}/{cid}/approve", as_json=as_json) for cid in clip_ids
        ]
    if as_json:
        emit_json({"dataset_id": dataset_id, "captions": [_caption_view(r) for r in recs]})
    else:
        console.print(f"approved {len(recs)} caption(s) of dataset {dataset_id}")
