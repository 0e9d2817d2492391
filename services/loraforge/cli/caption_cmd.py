"""`loraforge caption`: caption a curated dataset (a job in the captioning service), then show
every caption with its trigger; `caption edit` / `caption approve` for review.

On the local stack the review subcommands call the captioning service's review RPCs
(ListCaptions, EditCaption, ApproveCaption); with `--api` the gateway's REST API.
"""

from __future__ import annotations

import getpass
from dataclasses import asdict
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from loraforge.captioning.trigger import validate_trigger
from loraforge.cli.backend import Job, backend_of
from loraforge.cli.jobs import follow
from loraforge.cli.output import Command, Group, JobFailed, console, json_option, show
from loraforge.runtime.errors import InvalidInput, LoraforgeError
from loraforge.runtime.params import LoraType

INTERIM = (
    "Goes through the captioning service (settings.endpoints.captioning), or the "
    "gateway with --api."
)

caption_app = typer.Typer(
    cls=Group,
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
    as_json: bool = json_option(),
) -> None:
    """Caption a curated dataset: every caption starts with the trigger; edited or approved
    captions are kept as they are on a re-run."""
    if ctx.invoked_subcommand is not None:
        return
    if not project or not trigger:
        missing = " and ".join(
            n for n, v in (("--project", project), ("--trigger", trigger)) if not v
        )
        raise InvalidInput(f"missing {missing}: `loraforge caption --project NAME --trigger WORD`")
    validate_trigger(trigger)  # the same rules as the service, before any network call
    with backend_of(ctx, tenant) as backend:
        dataset_id, dataset_type = backend.resolve_dataset(project, dataset)
        kind = lora_type.value if lora_type else dataset_type
        backend.save_caption_defaults(
            project,
            trigger=trigger,
            lora_type=kind or "",
            source=source.value,
            class_noun=class_noun,
            base_preset=base,
            motion=motion,
        )
        job = backend.start(
            "captioning",
            project,
            {
                "dataset_id": dataset_id,
                "trigger": trigger,
                "lora_type": kind,
                "source": source.value,
                "class_noun": class_noun or "",
                "base_preset": base or "",
                "motion": motion or "",
            },
        )
        if wait and not job.terminal:
            job = follow(backend, job)
        if not job.terminal:
            show(
                {"job_id": job.id, "state": job.state, "dataset_id": dataset_id},
                lambda v: console.print(
                    f"captioning job [bold]{v['job_id']}[/bold] {v['state']} for dataset "
                    f"{dataset_id} (not waiting for it: --no-wait)"
                ),
            )
            return
        if job.state != "SUCCEEDED":
            raise JobFailed(f"captioning job {job.id} {job.state.lower()}: {job.message}")
        try:
            captions = backend.captions(project, dataset_id)
        except LoraforgeError as exc:
            raise LoraforgeError(
                f"job {job.id} succeeded but its captions cannot be read: {exc}"
            ) from exc
    show(_view(job, backend.tenant, dataset_id, captions, trigger), _print)


def _view(
    job: Job, tenant: str | None, dataset_id: str, captions: list[Any], trigger: str
) -> dict[str, Any]:
    result = job.result
    return {
        "job_id": job.id,
        "state": job.state,
        "message": job.message,
        "dataset_id": dataset_id,
        "tenant": tenant,
        "project": job.project,
        "trigger": result.get("trigger", trigger),
        "lora_type": result.get("lora_type"),
        "written": int(result.get("written") or 0),
        "kept": int(result.get("kept") or 0),
        "captions": [
            {
                k: v
                for k, v in asdict(c).items()
                if k in ("clip_id", "text", "approved", "edited", "author", "versions", "warnings")
            }
            for c in captions
        ],
        "warnings": list(result.get("warnings") or []),
    }


def _highlight(text: str, trigger: str) -> Any:
    out = Text(text)
    out.highlight_words([trigger], style="bold magenta")
    return out


def _print(view: dict[str, Any]) -> None:
    tenant = view["tenant"] or "(key's tenant)"
    console.print(
        f"[green]dataset {view['dataset_id']}[/green] ({tenant}/{view['project']}): "
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


# -- review -------------------------------------------------------------------------------------


@caption_app.command(
    "edit",
    cls=Command,
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
    as_json: bool = json_option("Print the record as JSON."),
) -> None:
    with backend_of(ctx, tenant) as backend:
        dataset_id, _ = backend.resolve_dataset(project, dataset)
        rec = backend.edit_caption(project, dataset_id, clip_id, text, user=user, approve=approve)
    show(
        asdict(rec),
        lambda v: console.print(
            f"{v['clip_id']}:",
            _highlight(v["text"], v["text"].split(",")[0]),
            f"(version {v['versions'] - 1}{', approved' if v['approved'] else ''})",
        ),
    )


@caption_app.command(
    "approve", cls=Command, help=f"Approve captions as they are (a re-run keeps them). {INTERIM}"
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
    as_json: bool = json_option("Print the records as JSON."),
) -> None:
    if not clip_ids and not every:
        raise InvalidInput("name the clips to approve, or pass --all")
    with backend_of(ctx, tenant) as backend:
        dataset_id, _ = backend.resolve_dataset(project, dataset)
        ids = (
            [c.clip_id for c in backend.captions(project, dataset_id)]
            if every
            else list(clip_ids or [])
        )
        recs = [
            backend.approve_caption(project, dataset_id, cid, user=user, revoke=revoke)
            for cid in ids
        ]
    word = "withdrew approval of" if revoke else "approved"
    show(
        {"dataset_id": dataset_id, "captions": [asdict(r) for r in recs]},
        lambda v: console.print(f"{word} {len(recs)} caption(s) of dataset {dataset_id}"),
    )
