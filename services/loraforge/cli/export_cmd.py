"""`loraforge export`: a captioned dataset in a trainer's (or a hosted service's) layout.

Downloads the dataset's clips and current captions (edits included) from the object store to a
temporary folder, writes the export to --out, then reads it back with the format's own reader
to validate it. A dataset that breaks a rule of the target (e.g. the hosted Wan minimum of 10
samples) is refused with exit 2 and the rule's name.
"""

from __future__ import annotations

import tempfile
from enum import StrEnum
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, NoReturn

import typer

from loraforge.captioning.dataset import read_dataset
from loraforge.captioning.errors import ExportRefused
from loraforge.captioning.exports import FORMATS, ExportItem
from loraforge.captioning.exports import export as run_export
from loraforge.captioning.exports import read as read_export
from loraforge.captioning.review import CaptionReviewStore
from loraforge.cli.backend import local_only
from loraforge.cli.datasets import resolve_dataset
from loraforge.cli.output import (
    EXIT_REFUSED,
    command,
    console,
    emit_json,
    err_console,
    fail,
    json_option,
    show,
    wants_json,
)
from loraforge.runtime.errors import InvalidInput, LoraforgeError, Unavailable
from loraforge.runtime.keys import ProjectRef
from loraforge.runtime.settings import load_settings
from loraforge.runtime.storage import ObjectStore


class Format(StrEnum):
    SEED = "seed"
    KOHYA = "kohya"
    MUSUBI = "musubi"
    DIFFUSION_PIPE = "diffusion-pipe"
    AI_TOOLKIT = "ai-toolkit"
    WAN_I2V_ZIP = "wan-i2v-zip"
    WAN_KF2V_ZIP = "wan-kf2v-zip"


# one list of formats: the exports package's
assert {f.value for f in Format} <= set(FORMATS), "Format names a layout the exports lack"


def register(app: typer.Typer) -> None:
    command(app, "export")(export)


def export(
    ctx: typer.Context,
    fmt: Annotated[Format, typer.Option("--format", "-f", help="Target layout.")],
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            help="Where to write it: a new (empty) folder; "
            "for the Wan zips a folder or a .zip path.",
        ),
    ],
    project: str = typer.Option(..., "--project", "-p", help="Project whose dataset to export."),
    tenant: str = typer.Option("default", "--tenant", help="Tenant the project belongs to."),
    dataset: str | None = typer.Option(None, "--dataset", help="Dataset id (default: the newest)."),
    trigger: str | None = typer.Option(
        None, "--trigger", help="Trigger word (default: the one the dataset was captioned with)."
    ),
    class_noun: str = typer.Option(
        "person", "--class-noun", help="kohya: class word of the folder."
    ),
    as_json: bool = json_option("Print one JSON object."),
) -> None:
    """Export a captioned dataset for a trainer, and validate the result by reading it back."""
    local_only(ctx, "export")
    try:
        settings = load_settings()
        ref = ProjectRef(tenant, project)
        store = ObjectStore.connect(settings.s3)
        dataset_id, record = resolve_dataset(store, ref, dataset)
        review = CaptionReviewStore(store, ref, dataset_id)
        captions = review.texts()
        run = review.load_run() or {}
        clips = read_dataset(store, ref, dataset_id).clips
    except Unavailable:
        raise
    except LoraforgeError as exc:  # reading the dataset: what it is made of is refused (exit 2)
        fail(str(exc), code=EXIT_REFUSED)
    if not captions:
        raise InvalidInput(
            f"dataset {dataset_id} has no captions yet; run `loraforge caption --project {project} "
            "--trigger WORD` first"
        )
    trigger = trigger or run.get("trigger") or ""
    if not trigger and fmt is Format.KOHYA:
        raise InvalidInput("kohya needs the trigger word: pass --trigger")
    lora_type = run.get("lora_type") or record.get("lora_type") or ""

    with tempfile.TemporaryDirectory(prefix="loraforge-export-") as tmp:
        try:
            items = _download(store, clips, captions, Path(tmp))
            result = run_export(
                fmt.value, items, out, trigger=trigger, lora_type=lora_type, class_noun=class_noun
            )
        except ExportRefused as exc:
            _refused(exc, fmt.value)
        except Unavailable:
            raise
        except LoraforgeError as exc:  # the export cannot be made of this dataset (exit 2)
            fail(str(exc), code=EXIT_REFUSED)
    try:
        read_back = read_export(fmt.value, result.path)
    except (LoraforgeError, OSError, KeyError, ValueError) as exc:
        raise LoraforgeError(
            f"the {fmt.value} export at {result.path} does not read back: {exc}"
        ) from exc
    expected = int(result.report.get("train_samples", len(items)))
    if len(read_back) != expected:
        raise LoraforgeError(
            f"the {fmt.value} export at {result.path} reads back {len(read_back)} samples, "
            f"not {expected}"
        )
    view = {
        "format": fmt.value,
        "path": str(result.path),
        "files": [str(f) for f in result.files],
        "dataset_id": dataset_id,
        "tenant": tenant,
        "project": project,
        "trigger": trigger,
        "samples": len(items),
        "validated": len(read_back),
        "report": result.report,
    }
    show(view, _print)


def _refused(exc: ExportRefused, fmt: str) -> NoReturn:
    """Exit 2 naming the rule (with --json, the rule as its own field too)."""
    detail = str(exc).removeprefix(f"[{exc.rule}] ")
    if wants_json():
        emit_json({"error": str(exc), "rule": exc.rule, "format": fmt})
        raise SystemExit(EXIT_REFUSED)
    fail(f"{fmt} export refused by rule '{exc.rule}': {detail}", code=EXIT_REFUSED)


def _download(
    store: ObjectStore, clips: list[Any], captions: dict[str, str], work: Path
) -> list[ExportItem]:
    """The dataset's clips as local files with their current captions, in the dataset's order.
    A clip without a caption gets an empty one, which every export refuses by name
    (caption_required): an export never silently leaves a selected clip out."""
    items = []
    status = None if wants_json() else err_console.status("downloading clips")
    if status is not None:
        status.start()
    try:
        for i, c in enumerate(clips):
            if status is not None:
                status.update(f"downloading clip {i + 1}/{len(clips)}: {c.clip_id}")
            suffix = PurePosixPath(c.key).suffix.lower() or ".mp4"
            path = store.download(c.bucket, c.key, work / f"{i:04d}{suffix}")
            items.append(ExportItem(c.clip_id, path, captions.get(c.clip_id, "")))
    finally:
        if status is not None:
            status.stop()
    return items


def _print(view: dict[str, Any]) -> None:
    console.print(
        f"[green]exported[/green] {view['samples']} sample(s) of dataset {view['dataset_id']} "
        f"as {view['format']} to [bold]{view['path']}[/bold] "
        f"(read back and checked: {view['validated']})"
    )
    report = dict(view["report"])
    if "recommended_n_epochs" in report:
        console.print(
            f"Wan step rule: {report['train_samples']} training samples at batch size "
            f"{report['batch_size']} make {report['steps_per_epoch']} steps per epoch; set "
            f"n_epochs to at least [bold]{report['recommended_n_epochs']}[/bold] to reach "
            f"the {report['min_total_steps']} steps the service needs"
        )
    for k, v in report.items():
        console.print(f"  {k}: {v}")
    if len(view["files"]) > 1 and view["format"].startswith("wan"):
        for f in view["files"]:
            console.print(f"  file: {f}")
