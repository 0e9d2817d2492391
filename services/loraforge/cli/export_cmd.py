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
from typing import Annotated, Any

import typer

from loraforge.cli.datasets import resolve_dataset
from loraforge.cli.output import console, emit_json, err_console, fail
from loraforge.cli.remote import local_only


class Format(StrEnum):
    SEED = "seed"
    KOHYA = "kohya"
    MUSUBI = "musubi"
    DIFFUSION_PIPE = "diffusion-pipe"
    AI_TOOLKIT = "ai-toolkit"
    WAN_I2V_ZIP = "wan-i2v-zip"
    WAN_KF2V_ZIP = "wan-kf2v-zip"


def register(app: typer.Typer) -> None:
    app.command("export")(export)


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
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Export a captioned dataset for a trainer, and validate the result by reading it back."""
    local_only(ctx, "export", as_json=as_json)
    from loraforge.captioning.dataset import read_dataset
    from loraforge.captioning.errors import ExportRefused
    from loraforge.captioning.exports import FORMATS
    from loraforge.captioning.exports import export as run_export
    from loraforge.captioning.exports import read as read_export
    from loraforge.captioning.review import CaptionReviewStore
    from loraforge.runtime.errors import LoraforgeError, Unavailable
    from loraforge.runtime.keys import ProjectRef
    from loraforge.runtime.settings import load_settings
    from loraforge.runtime.storage import ObjectStore

    assert fmt.value in FORMATS  # one list of formats: the exports package's
    try:
        settings = load_settings()
        ref = ProjectRef(tenant, project)
        store = ObjectStore.connect(settings.s3)
        dataset_id, record = resolve_dataset(store, ref, dataset)
        review = CaptionReviewStore(store, ref, dataset_id)
        captions = review.texts()
        run = review.load_run() or {}
        clips = read_dataset(store, ref, dataset_id).clips
    except Unavailable as exc:
        fail(str(exc), as_json=as_json)
    except LoraforgeError as exc:
        fail(str(exc), as_json=as_json, code=2)
    if not captions:
        fail(
            f"dataset {dataset_id} has no captions yet; run `loraforge caption --project {project} "
            "--trigger WORD` first",
            as_json=as_json,
            code=2,
        )
    trigger = trigger or run.get("trigger") or ""
    if not trigger and fmt is Format.KOHYA:
        fail("kohya needs the trigger word: pass --trigger", as_json=as_json, code=2)
    lora_type = run.get("lora_type") or record.get("lora_type") or ""

    with tempfile.TemporaryDirectory(prefix="loraforge-export-") as tmp:
        try:
            items = _download(store, clips, captions, Path(tmp), as_json)
            result = run_export(
                fmt.value, items, out, trigger=trigger, lora_type=lora_type, class_noun=class_noun
            )
        except ExportRefused as exc:
            _refused(exc, fmt.value, as_json)
        except Unavailable as exc:
            fail(str(exc), as_json=as_json)
        except LoraforgeError as exc:
            fail(str(exc), as_json=as_json, code=2)
    try:
        read_back = read_export(fmt.value, result.path)
    except (LoraforgeError, OSError, KeyError, ValueError) as exc:
        fail(f"the {fmt.value} export at {result.path} does not read back: {exc}", as_json=as_json)
    expected = int(result.report.get("train_samples", len(items)))
    if len(read_back) != expected:
        fail(
            f"the {fmt.value} export at {result.path} reads back {len(read_back)} samples, "
            f"not {expected}",
            as_json=as_json,
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
    if as_json:
        emit_json(view)
    else:
        _print(view)


def _refused(exc: Any, fmt: str, as_json: bool) -> None:
    detail = str(exc).removeprefix(f"[{exc.rule}] ")
    if as_json:
        emit_json({"error": str(exc), "rule": exc.rule, "format": fmt})
        raise SystemExit(2)
    fail(f"{fmt} export refused by rule '{exc.rule}': {detail}", code=2)


def _download(
    store: Any, clips: list[Any], captions: dict[str, str], work: Path, as_json: bool
) -> list[Any]:
    """The dataset's clips as local files with their current captions, in the dataset's order.
    A clip without a caption gets an empty one, which every export refuses by name
    (caption_required): an export never silently leaves a selected clip out."""
    from loraforge.captioning.exports import ExportItem

    items = []
    status = None if as_json else err_console.status("downloading clips")
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
