"""`loraforge train`: train a LoRA on a captioned dataset (a job in the trainer service);
`loraforge presets`: the base models one can train on; `loraforge lora pull`: download a
run's LoRA files from the object store.

    loras  <t>/<p>/runs/<run_id>/last.safetensors, best.safetensors,
           checkpoints/step-N/adapter.safetensors, run.json (written last)
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from loraforge.cli.backend import backend_of, training_run_of
from loraforge.cli.jobs import follow
from loraforge.cli.output import Command, JobFailed, command, console, json_option, show
from loraforge.runtime.errors import InvalidInput
from loraforge.runtime.settings import load_settings
from loraforge.v1 import common_pb2

lora_app = typer.Typer(help="Trained LoRAs in the object store.", no_args_is_help=True)


class Which(StrEnum):
    BEST = "best"
    LAST = "last"
    ALL = "all"


def register(app: typer.Typer) -> None:
    command(app, "train")(train)
    command(app, "presets")(presets)
    app.add_typer(lora_app, name="lora")


# ---------------------------------------------------------------- train


def train(
    ctx: typer.Context,
    project: str = typer.Option(..., "--project", "-p", help="Project whose dataset to train on."),
    base: str = typer.Option(..., "--base", help="Base model preset (see `loraforge presets`)."),
    tenant: str = typer.Option("default", "--tenant", help="Tenant the project belongs to."),
    dataset: str | None = typer.Option(
        None, "--dataset", help="Dataset id (default: the project's newest captioned dataset)."
    ),
    rank: int | None = typer.Option(
        None,
        "--rank",
        help="LoRA rank (default: the family's; `loraforge presets --json` shows every default).",
    ),
    alpha: int | None = typer.Option(
        None,
        "--alpha",
        help="LoRA alpha: the update is scaled by "
        "alpha/rank (default: the family's alpha/rank ratio at "
        "this rank).",
    ),
    lr: float | None = typer.Option(None, "--lr", help="Learning rate (default: the family's)."),
    steps: int | None = typer.Option(
        None, "--steps", help="Optimizer steps (default: the family's; or give --epochs)."
    ),
    epochs: int | None = typer.Option(
        None,
        "--epochs",
        help="Passes over the training clips "
        "instead of --steps: steps = epochs x ceil(clips / batch), "
        "shown in the run record.",
    ),
    resolution: int | None = typer.Option(
        None, "--resolution", help="Training resolution (default: the family's)."
    ),
    frames: int | None = typer.Option(
        None, "--frames", help="Frames per video sample, 4k+1 (Wan)."
    ),
    seed: int | None = typer.Option(None, "--seed", help="Random seed."),
    dora: bool = typer.Option(
        False,
        "--dora",
        help="Train DoRA (a learned magnitude per output "
        "row on top of the LoRA pair); ComfyUI loads the file as is.",
    ),
    prompts: list[str] = typer.Option(
        [],
        "--prompt",
        help=(
            "Validation prompt for the previews rendered at each checkpoint, repeatable (the "
            "trigger is put in front where missing); default: the trigger alone and a few captions."
        ),
    ),
    options: list[str] = typer.Option(
        [],
        "--set",
        metavar="KEY=VALUE",
        help=(
            "Any other training option, repeatable (values are JSON, else text), e.g. --set "
            "block_swap=20 --set fp8_base=true --set timestep_sampling=logit_normal; "
            "`loraforge-train --help` lists them."
        ),
    ),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="Follow the job to its end."),
    as_json: bool = json_option("Print one JSON object."),
) -> None:
    """Train a LoRA on a captioned dataset; prints where the LoRA files are stored."""
    # trainer.presets imports torch (seconds): only the commands that need it pay for it
    from loraforge.trainer.presets import get_preset

    get_preset(base)  # the service's rule, before any network call
    extra = (
        parse_options(options)
        | ({"use_dora": True} if dora else {})
        | ({"eval_prompts": list(prompts)} if prompts else {})
        | ({"epochs": epochs} if epochs is not None else {})
    )
    with backend_of(ctx, tenant) as backend:
        dataset_id, _ = backend.resolve_dataset(project, dataset, captioned=True)
        fields = train_fields(
            dataset_id,
            base,
            extra,
            rank=rank,
            alpha=alpha,
            learning_rate=lr,
            steps=steps,
            resolution=resolution,
            frames=frames,
            seed=seed,
        )
        job = backend.start("trainer", project, fields)
        if wait and not job.terminal:
            job = follow(backend, job)
    view = {
        "job_id": job.id,
        "run_id": job.id,
        "state": job.state,
        "message": job.message,
        "project": project,
        "dataset_id": dataset_id,
        "base_preset": base,
        **({"tenant": backend.tenant} if backend.tenant else {"api": backend.where}),
        **{k: job.result[k] for k in RESULT_KEYS if k in job.result},
    }
    if job.state in ("FAILED", "CANCELLED"):
        raise JobFailed(f"training job {job.id} {job.state.lower()}: {job.message}")
    show(view, _print)


RESULT_KEYS = (
    "run_prefix",
    "last_key",
    "best_key",
    "trigger",
    "steps",
    "final_loss",
    "best_step",
    "best_reason",
    "report_key",
)


def _print(view: dict[str, Any]) -> None:
    if view["state"] != "SUCCEEDED":
        console.print(
            f"training job [bold]{view['job_id']}[/bold] {view['state']} on dataset "
            f"{view['dataset_id']} (not waiting for it: --no-wait)"
        )
        return
    console.print(
        f"trained [bold]{view['base_preset']}[/bold] LoRA on dataset {view['dataset_id']}: "
        f"{view['message']}"
    )
    if "api" in view:  # the gateway says where the files are through `lora pull`
        console.print(
            f"pull it with: loraforge --api {view['api']} lora pull {view['job_id']} "
            f"--project {view['project']} --out DIR"
        )
        return
    console.print(
        f"  best  loras/{view.get('best_key', '?')}"
        + (f" (step {view['best_step']})" if view.get("best_step") is not None else "")
    )
    if view.get("best_reason"):
        console.print(f"        why: {view['best_reason']}")
    if view.get("report_key"):
        console.print(f"  report  loras/{view['report_key']}")
    console.print(f"  last  loras/{view.get('last_key', '?')}")
    tenant = view["tenant"]
    console.print(
        f"pull it with: loraforge lora pull {view['job_id']} --project {view['project']} "
        + ("" if tenant == "default" else f"--tenant {tenant} ")
        + "--out DIR"
    )


def train_fields(
    dataset_id: str, base: str, extra: dict[str, Any], **numbers: Any
) -> dict[str, Any]:
    """What `loraforge train` asks for (the gateway's training-run body): optional numbers,
    None leaves one to the family default."""
    return {"dataset_id": dataset_id, "preset": base, **numbers, "extra": extra}


def training_run(
    dataset_id: str, base: str, extra: dict[str, Any], **numbers: Any
) -> common_pb2.TrainingRun:
    """The TrainingRun the local stack's trainer gets from `loraforge train`."""
    return training_run_of(train_fields(dataset_id, base, extra, **numbers))


def parse_options(options: list[str]) -> dict[str, Any]:
    """``["block_swap=20", "fp8_base=true", "expert=high"]`` -> a dict for ``TrainingRun.extra``
    (values parsed as JSON, else kept as text); the trainer validates names and values."""
    out: dict[str, Any] = {}
    for option in options:
        key, sep, value = option.partition("=")
        key = key.strip()
        if not sep or not key:
            raise InvalidInput(f"--set {option!r}: expected KEY=VALUE, e.g. --set block_swap=20")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


# ---------------------------------------------------------------- presets


def presets(
    as_json: bool = json_option(
        "Print a JSON list (with each preset's effective training defaults)."
    ),
) -> None:
    """Base model presets: family, whether the weights are provisioned, where they come from,
    and (--json) the training defaults a run gets for every option left unset."""
    from loraforge.trainer.config import list_presets  # imports torch (seconds)

    try:
        models_dir = Path(load_settings().models.dir)
    except Exception:
        models_dir = None
    rows = list_presets(models_dir)
    show(rows, _print_presets)


def _print_presets(rows: list[dict[str, Any]]) -> None:
    table = Table(
        "preset", "family", "variant", "ready", "rank/alpha", "lr", "steps", "description"
    )
    for r in rows:
        d = r["defaults"]  # what a run that sets nothing gets (--json: every field)
        table.add_row(
            r["name"],
            r["family"],
            r["variant"],
            "yes" if r["provisioned"] else "no",
            f"{d['rank']}/{d['alpha']:g}",
            f"{d['learning_rate']:g}",
            str(d["steps"]),
            r["description"],
        )
    console.print(table)
    missing = [r for r in rows if not r["provisioned"]]
    if missing:
        console.print(
            f"{len(missing)} preset(s) need their weights provisioned, e.g. {missing[0]['weights']}"
        )


# ---------------------------------------------------------------- lora pull


@lora_app.command("pull", cls=Command)
def pull(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(help="Training run (job) id.")],
    out: Annotated[Path, typer.Option("--out", help="Folder to write the files to.")],
    project: str = typer.Option(..., "--project", "-p", help="Project of the run."),
    tenant: str = typer.Option("default", "--tenant", help="Tenant the project belongs to."),
    which: Annotated[
        Which,
        typer.Option("--which", help="best, last, or all (LoRA files, checkpoints and run.json)."),
    ] = Which.BEST,
    as_json: bool = json_option("Print one JSON object."),
) -> None:
    """Download a trained LoRA from loras/<tenant>/<project>/runs/RUN_ID/."""
    with backend_of(ctx, tenant) as backend:
        pulled = backend.pull_run(project, run_id, which.value, out)
    show({"run_id": run_id, **pulled.source, "files": pulled.files}, _print_files)


def _print_files(view: dict[str, Any]) -> None:
    for path in view["files"]:
        console.print(path)
