"""`loraforge sweep`: an Optuna hyper-parameter sweep whose trials are short training runs on the
trainer service (document 003: tune the character LoRA, reuse the best parameters for the
project's other LoRA types).

Each trial is one StartTraining job with the trial's parameters, followed to its end; its final
training loss (the job result's `final_loss`) is the trial's score, lower is better, and is
reported to the pruner. The study lives in `<stack data dir>/sweeps/<project>/<study>.db`, so
running the same command again continues the sweep instead of starting over.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
from loraforge.cli.output import console, emit_json, err_console, fail
from loraforge.cli.remote import local_only

LORA_TYPES = ("character", "background", "style", "pose", "expression", "lighting", "effect")


def register(app: typer.Typer) -> None:
    app.command("sweep")(sweep)


def study_path(settings: Any, project: str, study: str) -> Path:
    return Path(settings.stack.data_dir) / "sweeps" / project / f"{study}.db"


def sweep(
    ctx: typer.Context,
    project: str = typer.Option(..., "--project", "-p", help="Project whose dataset the trials train on."),
    base: str = typer.Option(..., "--base", help="Base model preset, e.g. sdxl, wan2.1-t2v-14b, tiny-sdxl."),
    trials: int = typer.Option(..., "--trials", "-n", min=1,
                               help="Trials the study should hold in total (a re-run continues)."),
    study: str = typer.Option("", "--study", help="Study name (default: <base>-<lora type>)."),
    tenant: str = typer.Option("default", "--tenant", help="Tenant the project belongs to."),
    dataset: str = typer.Option("", "--dataset", help="Dataset id (default: the project's newest)."),
    lora_type: str = typer.Option("character", "--lora-type",
                                  help=f"LoRA type being tuned ({', '.join(LORA_TYPES)})."),
    reuse_for: str = typer.Option("", "--reuse-for",
                                  help="Also print the best parameters adapted for this LoRA type."),
    max_steps: int = typer.Option(0, "--max-steps", min=0,
                                  help="Cap on each trial's training steps (0: the trial's own)."),
    trial_timeout_s: float = typer.Option(3600.0, "--trial-timeout-s",
                                          help="Give up on a trial's job after this long."),
    seed: int = typer.Option(0, "--seed", help="Sampler seed (same seed, same proposals)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of tables."),
) -> None:
    """Tune training hyper-parameters with short runs on the trainer service."""
    local_only(ctx, "sweep", as_json=as_json)
    from loraforge.runtime.errors import LoraforgeError
    from loraforge.runtime.keys import ProjectRef
    from loraforge.runtime.settings import load_settings

    for name, value in (("--lora-type", lora_type), ("--reuse-for", reuse_for or lora_type)):
        if value not in LORA_TYPES:
            fail(f"unknown {name} {value!r}; choose from {', '.join(LORA_TYPES)}", as_json=as_json, code=2)
    try:
        settings = load_settings()
        ref = ProjectRef(tenant, project)
        from loraforge.runtime.keys import validate_key_part
        from loraforge.trainer.presets import get_preset

        get_preset(base)
        study = validate_key_part(study or f"{base}-{lora_type}".replace(".", "_"))
    except LoraforgeError as exc:
        fail(str(exc), as_json=as_json, code=2)

    try:
        view = run_study(settings, ref, base, trials=trials, study=study, dataset_id=dataset or None,
                         lora_type=lora_type, reuse_for=reuse_for or lora_type,
                         max_steps=max_steps, trial_timeout_s=trial_timeout_s, seed=seed,
                         as_json=as_json)
    except LoraforgeError as exc:
        fail(str(exc), as_json=as_json, code=2)
    if as_json:
        emit_json(view)
    else:
        _print(view)
    if view["best_trial"] is None:
        raise SystemExit(1)


def run_study(settings: Any, ref: Any, base: str, *, trials: int, study: str,
              dataset_id: str | None = None, lora_type: str = "character",
              reuse_for: str | None = None, max_steps: int = 0, trial_timeout_s: float = 3600.0,
              seed: int = 0, as_json: bool = True, space: Any = None) -> dict[str, Any]:
    """The sweep behind the command: run (or continue) `study` until it holds `trials` finished
    trials, each a training job on the trainer at `settings.endpoints.trainer`; returns the
    command's view (trials, best trial, the best parameters adapted for `reuse_for`). `space`
    overrides the family's default search space.
    Raises LoraforgeError for bad input; the caller decides how to report it."""
    from loraforge.evaluation.sweep import (
        best_params_for_reuse,
        default_space,
        load_study,
        run_sweep,
    )
    from loraforge.trainer.presets import get_preset

    preset = get_preset(base)
    path = study_path(settings, ref.project, study)
    runner = make_trial_runner(settings, ref, base, dataset_id, max_steps=max_steps,
                               timeout_s=trial_timeout_s, as_json=as_json, study=study,
                               trial_extra=SWEEP_TRIAL_EXTRA)
    result = run_sweep(runner, space or default_space(preset.family), trials, path, study,
                       direction="minimize", seed=seed, lora_type=lora_type, family=preset.family)
    reuse = None
    if result.best_params is not None:
        reuse = best_params_for_reuse(load_study(path, study), reuse_for or lora_type)
        reuse["extra"] = trainer_extra(reuse["extra"])  # as `loraforge train` takes them
    return {"study": study, "storage": str(path), "project": ref.project, "tenant": ref.tenant,
            "base": base, "objective": "final training loss (lower is better)",
            **{k: v for k, v in result.as_dict().items() if k not in ("study_name", "storage_url")},
            "reuse": reuse}


# -- the trial runner: one training job per trial ----------------------------------------------

TrialRunnerFn = Callable[[dict, Callable[[int, float], None]], float]

# Trials are scored by final training loss only: the trainer's per-checkpoint likeness
# evaluation (preview renders) would cost time and GPU for nothing the sweep reads.
SWEEP_TRIAL_EXTRA: dict[str, Any] = {"evaluate": False}


def trainer_extra(extra: dict[str, Any]) -> dict[str, Any]:
    """The search space's schedule knobs -> the trainer's RunConfig fields.

    `timestep_shift` is the trainer's `flow_shift`; `timestep_sampling` "uniform" is plain uniform
    timesteps (shift 1), "shift" uniform timesteps shifted by `timestep_shift`, "logit_normal"
    logit-normal timesteps shifted by it. Other keys (`noise_offset` of the SD families
    included) pass through unchanged."""
    out = dict(extra)
    shift = out.pop("timestep_shift", None)
    sampling = out.pop("timestep_sampling", None)
    if sampling == "uniform":
        out.update(timestep_sampling="uniform", flow_shift=1.0)
    elif sampling is not None:
        out["timestep_sampling"] = "uniform" if sampling == "shift" else sampling
        if shift is not None:
            out["flow_shift"] = float(shift)
    elif shift is not None:
        out["flow_shift"] = float(shift)
    return out


def training_run(params: dict, *, dataset_id: str, base: str, max_steps: int = 0,
                 seed: int = 0) -> dict[str, Any]:
    """Sweep parameters -> TrainingRun fields (alpha from the alpha ratio; the family's
    schedule knobs in `extra`)."""
    p = dict(params)
    rank = int(p.pop("rank"))
    ratio = float(p.pop("alpha_ratio", 1.0))
    steps = int(p.pop("steps"))
    if max_steps:
        steps = min(steps, max_steps)
    return {"dataset_id": dataset_id, "base_preset": base, "rank": rank,
            "alpha": max(1, round(rank * ratio)), "learning_rate": float(p.pop("learning_rate")),
            "steps": steps, "seed": seed, "extra": p}


def make_trial_runner(settings: Any, ref: Any, base: str, dataset_id: str | None, *,
                      max_steps: int, timeout_s: float, as_json: bool, study: str,
                      trial_extra: dict[str, Any] | None = None) -> TrialRunnerFn:
    """A runner that trains each trial on the trainer service and scores it by final loss.
    `trial_extra` is merged into every job's `extra` (e.g. {"evaluate": False})."""
    state: dict[str, Any] = {"dataset": dataset_id}

    def run(params: dict, report: Callable[[int, float], None]) -> float:
        from loraforge.cli.jobs import call, follow, is_terminal, job_state, scope
        from loraforge.evaluation.errors import TrialFailed
        from loraforge.runtime.grpc_client import sync_channel
        from loraforge.runtime.servicers import dict_from_struct, struct_from_dict
        from loraforge.v1 import common_pb2, trainer_pb2, trainer_pb2_grpc

        if state["dataset"] is None:
            from loraforge.cli.datasets import resolve_dataset
            from loraforge.runtime.storage import ObjectStore

            state["dataset"], _ = resolve_dataset(ObjectStore.connect(settings.s3), ref, None)
        fields = training_run(params, dataset_id=state["dataset"], base=base, max_steps=max_steps)
        extra = {**trainer_extra(fields.pop("extra")), **(trial_extra or {})}
        target = settings.endpoints.trainer
        sc = scope(ref.tenant, ref.project)
        with sync_channel(target) as channel:
            stub = trainer_pb2_grpc.TrainerServiceStub(channel)
            request = trainer_pb2.StartTrainingRequest(
                scope=sc, request_id=f"sweep-{study}-{uuid.uuid4().hex[:12]}",
                run=common_pb2.TrainingRun(**fields, extra=struct_from_dict(extra)))
            job = call(stub.StartTraining, request, service="trainer", target=target, as_json=as_json)
            if not is_terminal(job):
                job = follow(stub, sc, job, service="trainer", target=target, as_json=as_json,
                             timeout_s=timeout_s)
            if not is_terminal(job):
                stub.CancelJob(common_pb2.CancelJobRequest(scope=sc, job_id=job.id), timeout=10)
                raise TrialFailed(f"training job {job.id} did not finish within {timeout_s:.0f} s")
        if job_state(job) != "SUCCEEDED":
            raise TrialFailed(f"training job {job.id} {job_state(job).lower()}: {job.message}")
        result = dict_from_struct(job.result)
        loss = result.get("final_loss")
        if loss is None:
            raise TrialFailed(f"training job {job.id} reported no final loss")
        report(int(result.get("steps") or fields["steps"]), float(loss))
        return float(loss)

    return run


# -- output ------------------------------------------------------------------------------------


def _print(view: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table("trial", "state", "loss", "params")
    for t in view["trials"]:
        value = "" if t["value"] is None else f"{t['value']:.5g}"
        params = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                           for k, v in sorted(t["params"].items()))
        table.add_row(str(t["number"]), t["state"], value, params)
    console.print(table)
    console.print(f"study [bold]{view['study']}[/bold] ({view['storage']}): {view['n_complete']} complete, "
                  f"{view['n_pruned']} pruned, {view['n_failed']} failed")
    if view["best_trial"] is None:
        err_console.print("[red]no trial completed[/red]: nothing to reuse yet")
        return
    console.print(f"best: trial {view['best_trial']}, final loss {view['best_value']:.5g}")
    reuse = view["reuse"]
    console.print(f"reuse for {reuse['lora_type']} LoRAs: learning_rate={reuse['learning_rate']:.3g} "
                  f"rank={reuse['rank']} alpha={reuse['alpha']} steps={reuse['steps']} "
                  f"extra={reuse['extra']} (suggested weight {reuse['suggested_weight']})")
