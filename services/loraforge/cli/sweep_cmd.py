"""`loraforge sweep`: an Optuna hyper-parameter sweep whose trials are short training runs on the
trainer service (document 003: tune the character LoRA, reuse the best parameters for the
project's other LoRA types).

Each trial is one StartTraining job with the trial's parameters (only what the search space
holds; the rest is the family default, as for `loraforge train`). The objective
(`--objective`, evaluation/sweep.py: OBJECTIVES): `validation_loss`, the job's validation loss
on its held-out clips, reported to the pruner at every evaluation while the job trains (the
job's progress carries them) and scored as its lowest; a pruned trial's job is cancelled. Or
`likeness`, the identity similarity of the previews to the references: each evaluation's
previews are scored while the job trains (reported to the pruner), the trial's score is that
of the checkpoint the trainer chose. `auto` picks likeness for a character
LoRA on real weights (tiny random models never render a face) and validation loss otherwise.
Every trial evaluates at the same steps, so the pruner compares like with like. Each trial's
user attrs say why it scored what it did. The study lives in
`<stack data dir>/sweeps/<project>/<study>.db`, so running the same command again continues
the sweep instead of starting over.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from loraforge.cli.backend import call, local_only
from loraforge.cli.datasets import resolve_dataset
from loraforge.cli.jobs import POLL_S, is_terminal, job_state, scope
from loraforge.cli.output import (
    EXIT_FAILED,
    EXIT_REFUSED,
    command,
    console,
    err_console,
    fail,
    json_option,
    show,
)
from loraforge.evaluation.errors import TrialFailed
from loraforge.evaluation.sweep import (
    TrialScore,
    best_params_for_reuse,
    default_space,
    load_study,
    run_sweep,
    schedule_extra,
    training_fields,
)
from loraforge.runtime.errors import InvalidInput, LoraforgeError, Unavailable
from loraforge.runtime.grpc_client import sync_channel
from loraforge.runtime.keys import ProjectRef, validate_key_part
from loraforge.runtime.servicers import dict_from_struct, struct_from_dict
from loraforge.runtime.settings import load_settings
from loraforge.runtime.storage import ObjectStore
from loraforge.v1 import common_pb2, trainer_pb2, trainer_pb2_grpc

LORA_TYPES = ("character", "background", "style", "pose", "expression", "lighting", "effect")


def register(app: typer.Typer) -> None:
    command(app, "sweep")(sweep)


def study_path(settings: Any, project: str, study: str) -> Path:
    return Path(settings.stack.data_dir) / "sweeps" / project / f"{study}.db"


def sweep(
    ctx: typer.Context,
    project: str = typer.Option(
        ..., "--project", "-p", help="Project whose dataset the trials train on."
    ),
    base: str = typer.Option(
        ..., "--base", help="Base model preset, e.g. sdxl, wan2.1-t2v-14b, tiny-sdxl."
    ),
    trials: int = typer.Option(
        ...,
        "--trials",
        "-n",
        min=1,
        help="Trials the study should hold in total (a re-run continues).",
    ),
    study: str = typer.Option("", "--study", help="Study name (default: <base>-<lora type>)."),
    tenant: str = typer.Option("default", "--tenant", help="Tenant the project belongs to."),
    dataset: str = typer.Option(
        "", "--dataset", help="Dataset id (default: the project's newest)."
    ),
    lora_type: str = typer.Option(
        "character", "--lora-type", help=f"LoRA type being tuned ({', '.join(LORA_TYPES)})."
    ),
    reuse_for: str = typer.Option(
        "", "--reuse-for", help="Also print the best parameters adapted for this LoRA type."
    ),
    max_steps: int = typer.Option(
        0, "--max-steps", min=0, help="Cap on each trial's training steps (0: the trial's own)."
    ),
    trial_timeout_s: float = typer.Option(
        3600.0, "--trial-timeout-s", help="Give up on a trial's job after this long."
    ),
    seed: int = typer.Option(0, "--seed", help="Sampler seed (same seed, same proposals)."),
    objective: str = typer.Option(
        "auto",
        "--objective",
        help=(
            "What the sweep optimises: likeness (identity similarity of the previews to the "
            "references), validation_loss (held-out clips), or auto: likeness for a character "
            "LoRA on real weights, else validation loss."
        ),
    ),
    as_json: bool = json_option(),
) -> None:
    """Tune training hyper-parameters with short runs on the trainer service."""
    local_only(ctx, "sweep")
    for name, value in (("--lora-type", lora_type), ("--reuse-for", reuse_for or lora_type)):
        if value not in LORA_TYPES:
            raise InvalidInput(f"unknown {name} {value!r}; choose from {', '.join(LORA_TYPES)}")
    if objective not in ("auto", *OBJECTIVE_NAMES):
        raise InvalidInput(
            f"unknown --objective {objective!r}; choose from auto, {', '.join(OBJECTIVE_NAMES)}"
        )
    settings = load_settings()
    ref = ProjectRef(tenant, project)
    from loraforge.trainer.presets import get_preset  # imports torch (seconds)

    get_preset(base)
    study = validate_key_part(study or f"{base}-{lora_type}".replace(".", "_"))

    try:
        view = run_study(
            settings,
            ref,
            base,
            trials=trials,
            study=study,
            dataset_id=dataset or None,
            lora_type=lora_type,
            reuse_for=reuse_for or lora_type,
            max_steps=max_steps,
            trial_timeout_s=trial_timeout_s,
            seed=seed,
            objective=objective,
        )
    except Unavailable:
        raise
    except LoraforgeError as exc:  # run_study raises it for input it cannot use (exit 2)
        fail(str(exc), code=EXIT_REFUSED)
    show(view, _print)
    if view["best_trial"] is None:
        raise SystemExit(EXIT_FAILED)  # the view says no trial completed


def run_study(
    settings: Any,
    ref: Any,
    base: str,
    *,
    trials: int,
    study: str,
    dataset_id: str | None = None,
    lora_type: str = "character",
    reuse_for: str | None = None,
    max_steps: int = 0,
    trial_timeout_s: float = 3600.0,
    seed: int = 0,
    space: Any = None,
    objective: str = "auto",
) -> dict[str, Any]:
    """The sweep behind the command: run (or continue) `study` until it holds `trials` finished
    trials, each a training job on the trainer at `settings.endpoints.trainer`; returns the
    command's view (trials, best trial, the best parameters adapted for `reuse_for`). `space`
    overrides the family's default search space; `objective` is auto, likeness or
    validation_loss (module docstring).
    Raises LoraforgeError for bad input; the caller decides how to report it."""
    # the trainer's modules import torch (seconds): only `sweep` pays for them
    from loraforge.trainer.config import checkpoint_interval, effective_defaults
    from loraforge.trainer.presets import get_preset

    preset = get_preset(base)
    path = study_path(settings, ref.project, study)
    goal = choose_objective(objective, lora_type, preset)
    space = space or default_space(preset.family)
    # one evaluation cadence for every trial (about four evaluations of the shortest)
    steps = space.get("steps")
    shortest = min(
        getattr(steps, "low", None) or effective_defaults(base)["steps"], max_steps or 10**9
    )
    trial_extra = {**TRIAL_EXTRA[goal], "eval_every": checkpoint_interval(shortest)}
    runner = make_trial_runner(
        settings,
        ref,
        base,
        dataset_id,
        max_steps=max_steps,
        timeout_s=trial_timeout_s,
        study=study,
        trial_extra=trial_extra,
        objective=goal,
    )
    result = run_sweep(
        runner,
        space,
        trials,
        path,
        study,
        objective=goal,
        seed=seed,
        lora_type=lora_type,
        family=preset.family,
    )
    reuse = None
    if result.best_params is not None:
        reuse = best_params_for_reuse(load_study(path, study), reuse_for or lora_type)
        reuse["extra"] = trainer_extra(reuse["extra"])  # as `loraforge train` takes them
    return {
        "study": study,
        "storage": str(path),
        "project": ref.project,
        "tenant": ref.tenant,
        "base": base,
        "objective": goal,
        "objective_description": OBJECTIVE_DESCRIPTIONS[goal],
        **{k: v for k, v in result.as_dict().items() if k not in ("study_name", "storage_url")},
        "reuse": reuse,
    }


# -- the trial runner: one training job per trial ----------------------------------------------

TrialRunnerFn = Callable[[dict[str, Any], Callable[[int, float], None]], Any]

OBJECTIVE_NAMES = ("likeness", "validation_loss")
OBJECTIVE_DESCRIPTIONS = {
    "likeness": "likeness of the chosen checkpoint's previews to the reference faces (higher "
    "is better)",
    "validation_loss": "lowest validation loss on the held-out clips (lower is better)",
}
# A validation-loss sweep skips the likeness evaluation (preview renders): time and GPU for
# nothing it reads. A likeness sweep needs it, but not the strength pass (five more preview
# sets of the chosen step, for a weight recommendation no trial score reads).
TRIAL_EXTRA: dict[str, dict[str, Any]] = {
    "validation_loss": {"evaluate": False},
    "likeness": {"eval_strength": False},
}
IDENTITY_TYPES = frozenset({"character"})
# the job result / progress field holding the objective's value of each evaluated step
VALUES_KEY = {"validation_loss": "val_losses", "likeness": "likeness"}


def choose_objective(objective: str, lora_type: str, preset: Any) -> str:
    """`auto`: likeness where it can be measured (an identity LoRA on real weights: tiny
    random models never render a face), else validation loss."""
    if objective != "auto":
        return objective
    return "likeness" if lora_type in IDENTITY_TYPES and not preset.tiny else "validation_loss"


def trainer_extra(extra: dict[str, Any]) -> dict[str, Any]:
    """The search space's schedule knobs -> the trainer's RunConfig fields
    (evaluation/sweep.py: schedule_extra)."""
    return schedule_extra(extra)


def training_run(
    params: dict[str, Any], *, dataset_id: str, base: str, max_steps: int = 0, seed: int = 0
) -> dict[str, Any]:
    """Sweep parameters -> TrainingRun fields: what the space searches (alpha from the alpha
    ratio, the family's schedule knobs in `extra`); the rest stays unset = family default."""
    from loraforge.trainer.config import effective_defaults  # imports torch

    d = effective_defaults(base)  # what the trainer resolves an unset field to
    fields = training_fields(params, d["rank"], max_steps=max_steps, default_steps=d["steps"])
    return {"dataset_id": dataset_id, "base_preset": base, "seed": seed, **fields}


def trial_score(objective: str, result: dict[str, Any], job_id: str) -> Any:
    """A finished job's result -> the trial's TrialScore (value and why)."""
    from loraforge.trainer.sweep_trials import validation_score  # imports torch

    vals = {int(k): float(v) for k, v in (result.get("val_losses") or {}).items()}
    if objective == "validation_loss":
        return validation_score(vals, job_id)
    likeness = {int(k): float(v) for k, v in (result.get("likeness") or {}).items()}
    best = result.get("best_step")
    if not likeness or best is None or int(best) not in likeness:
        # the likeness formula multiplies by the share of renders with a face: none is 0
        return TrialScore(
            0.0,
            f"likeness 0: unmeasurable for job {job_id} "
            f"({result.get('best_reason') or 'no evaluation'})",
            {
                "objective": objective,
                "job": job_id,
                "best_step": best,
                "val_losses": {str(k): v for k, v in sorted(vals.items())},
            },
        )
    best = int(best)
    return TrialScore(
        likeness[best],
        f"likeness {likeness[best]:.4g} of step {best}, the "
        f"checkpoint the trainer chose: {result.get('best_reason')}",
        {
            "objective": objective,
            "job": job_id,
            "best_step": best,
            "likeness": {str(k): v for k, v in sorted(likeness.items())},
            "val_losses": {str(k): v for k, v in sorted(vals.items())},
        },
    )


def make_trial_runner(
    settings: Any,
    ref: Any,
    base: str,
    dataset_id: str | None,
    *,
    max_steps: int,
    timeout_s: float,
    study: str,
    trial_extra: dict[str, Any] | None = None,
    objective: str = "validation_loss",
) -> TrialRunnerFn:
    """A runner that trains each trial on the trainer service and scores it by `objective`,
    reporting each evaluation to the pruner as it comes (a pruned trial's job is cancelled).
    `trial_extra` is merged into every job's `extra` (e.g. {"evaluate": False})."""
    state: dict[str, Any] = {"dataset": dataset_id}

    def run(params: dict[str, Any], report: Callable[[int, float], None]) -> Any:
        import optuna

        if state["dataset"] is None:
            state["dataset"], _ = resolve_dataset(ObjectStore.connect(settings.s3), ref, None)
        fields = training_run(params, dataset_id=state["dataset"], base=base, max_steps=max_steps)
        extra = {**fields.pop("extra"), **(trial_extra or {})}  # already the trainer's names
        target = settings.endpoints.trainer
        sc = scope(ref.tenant, ref.project)
        reported: set[int] = set()

        def report_new(result: dict[str, Any], values_key: str) -> None:
            for step, value in sorted(
                (int(k), float(v)) for k, v in (result.get(values_key) or {}).items()
            ):
                if step > 0 and step not in reported:  # step 0: the untrained LoRA
                    reported.add(step)
                    report(step, value)

        with sync_channel(target) as channel:
            stub = trainer_pb2_grpc.TrainerServiceStub(channel)
            request = trainer_pb2.StartTrainingRequest(
                scope=sc,
                request_id=f"sweep-{study}-{uuid.uuid4().hex[:12]}",
                run=common_pb2.TrainingRun(**fields, extra=struct_from_dict(extra)),
            )
            job = call(stub.StartTraining, request, service="trainer", target=target)
            get = common_pb2.GetJobRequest(scope=sc, job_id=job.id)
            deadline = time.monotonic() + timeout_s
            try:
                while True:  # each evaluation's value as the job trains
                    report_new(dict_from_struct(job.result), VALUES_KEY[objective])
                    if is_terminal(job):
                        break
                    if time.monotonic() > deadline:
                        stub.CancelJob(
                            common_pb2.CancelJobRequest(scope=sc, job_id=job.id), timeout=10
                        )
                        raise TrialFailed(
                            f"training job {job.id} did not finish within {timeout_s:.0f} s"
                        )
                    time.sleep(POLL_S)
                    job = call(stub.GetJob, get, service="trainer", target=target)
            except optuna.TrialPruned:
                if not is_terminal(job):  # free the trainer for the next trial
                    stub.CancelJob(common_pb2.CancelJobRequest(scope=sc, job_id=job.id), timeout=10)
                raise
        if job_state(job) != "SUCCEEDED":
            raise TrialFailed(f"training job {job.id} {job_state(job).lower()}: {job.message}")
        result = dict_from_struct(job.result)
        report_new(result, VALUES_KEY[objective])  # evaluations finished after the last poll
        return trial_score(objective, result, job.id)

    return run


# -- output ------------------------------------------------------------------------------------


def _print(view: dict[str, Any]) -> None:
    table = Table("trial", "state", view["objective"], "params", "why")
    for t in view["trials"]:
        value = "" if t["value"] is None else f"{t['value']:.5g}"
        params = ", ".join(
            f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
            for k, v in sorted(t["params"].items())
        )
        table.add_row(str(t["number"]), t["state"], value, params, t.get("reason", ""))
    console.print(table)
    console.print(
        f"study [bold]{view['study']}[/bold] ({view['storage']}): {view['n_complete']} complete, "
        f"{view['n_pruned']} pruned, {view['n_failed']} failed"
    )
    if view["best_trial"] is None:
        err_console.print("[red]no trial completed[/red]: nothing to reuse yet")
        return
    console.print(f"best: trial {view['best_trial']}, {view['objective']} {view['best_value']:.5g}")
    reuse = view["reuse"]
    console.print(
        f"reuse for {reuse['lora_type']} LoRAs: learning_rate={reuse['learning_rate']:.3g} "
        f"rank={reuse['rank']} alpha={reuse['alpha']} steps={reuse['steps']} "
        f"extra={reuse['extra']} (suggested weight {reuse['suggested_weight']})"
    )
