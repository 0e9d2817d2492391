"""Hyper-parameter sweeps with Optuna, stored in SQLite so a sweep survives restarts.

Document 003's recipe: run ~50 Optuna trials on the CHARACTER LoRA, then reuse the best
parameters for the project's other LoRA types (background, style, pose, expression, lighting),
re-tuning a type only if it underperforms. ``run_sweep`` is the first half,
``best_params_for_reuse`` the second.

The objective (what users want from a LoRA, :data:`OBJECTIVES`): ``likeness``, the identity
similarity of the trial's previews to the reference faces (maximised), when it is measurable
(an identity LoRA on real weights); otherwise ``validation_loss``, the denoising loss on the
held-out validation clips at fixed noise and timesteps (minimised). Never the training loss:
one random timestep of one batch is noise, and it falls while a LoRA overfits. A study keeps
the objective it was created with (study user attr ``objective``).

The trial runner is injected: ``trial_runner(params, report_cb) -> score`` runs a short training
trial (``loraforge sweep``: a job on the trainer service; :mod:`loraforge.trainer.sweep_trials`:
in process) and calls ``report_cb(step, score)`` at each intermediate evaluation (the
validation loss of that step). ``report_cb`` raises ``optuna.TrialPruned`` when the pruner says
the trial is worse than the median of earlier trials at that step: the runner must let it
propagate (stop training, free the GPU). The score may be a :class:`TrialScore`, whose reason
and details become the trial's user attrs (why it scored what it did). A runner that cannot
finish (OOM, divergence) raises ``TrialFailed``; the trial is recorded as failed and the
sweep goes on.

``n_trials`` is the TOTAL wanted for the study: re-running the same call after a crash
continues where it stopped instead of starting over (trials a crashed process left RUNNING are
marked FAILED first; one process per study file, which is what SQLite supports anyway).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from loraforge.evaluation.errors import TrialFailed
from loraforge.runtime.errors import InvalidInput

if TYPE_CHECKING:
    # lazy at run time: Optuna (with SQLAlchemy) is only needed to run or read a study; the
    # CLI and the trainer read the search space, scores and training fields without it
    import optuna
    from optuna.storages import RDBStorage


@dataclass(frozen=True)
class FloatParam:
    low: float
    high: float
    log: bool = False


@dataclass(frozen=True)
class IntParam:
    low: int
    high: int
    step: int = 1


@dataclass(frozen=True)
class CategoricalParam:
    choices: tuple[Any, ...]


Param = FloatParam | IntParam | CategoricalParam
SearchSpace = Mapping[str, Param]
ReportCallback = Callable[[int, float], None]
TrialRunner = Callable[[dict[str, Any], ReportCallback], "float | TrialScore"]

#: objective -> Optuna direction (module docstring)
Direction = Literal["maximize", "minimize"]
OBJECTIVES: dict[str, Direction] = {"likeness": "maximize", "validation_loss": "minimize"}


@dataclass(frozen=True)
class TrialScore:
    """A trial's score with why: ``reason`` (one sentence) and ``details`` (JSON-able values:
    the job, the validation loss per step, the chosen step...) are stored as user attrs."""

    value: float
    reason: str
    details: Mapping[str, Any] = field(default_factory=dict)


RANKS = (8, 16, 32, 64, 128)
FLOW_MATCHING_FAMILIES = frozenset({"wan", "flux"})


def default_space(family: str = "sdxl") -> dict[str, Param]:
    """What matters most for a LoRA, with ranges from the source documents:
    learning rate 5e-5..1e-4 for Wan (000), 2e-5 on the hosted service (004): searched on a log
    scale over 1e-5..5e-4; rank 64-128 recommended for Wan, smaller for SD: 8..128;
    steps 500-2000 (002), >= 800 on the hosted service: 500..3000; alpha as a ratio of the rank
    (alpha / rank scales the LoRA update, so the ratio, not alpha, is what transfers across
    ranks). Flow-matching families (Wan, Flux) add the timestep shift and the timestep sampling
    scheme, which decide which noise levels training sees; SD families add the noise offset
    (brightness range) instead.
    """
    space: dict[str, Param] = {
        "learning_rate": FloatParam(1e-5, 5e-4, log=True),
        "rank": CategoricalParam(RANKS),
        "steps": IntParam(500, 3000, step=250),
        "alpha_ratio": CategoricalParam((0.25, 0.5, 1.0)),
    }
    if family in FLOW_MATCHING_FAMILIES:
        space["timestep_shift"] = FloatParam(1.0, 8.0)
        space["timestep_sampling"] = CategoricalParam(("uniform", "logit_normal", "shift"))
    else:
        space["noise_offset"] = FloatParam(0.0, 0.1)
    return space


def suggest(trial: optuna.Trial, space: SearchSpace) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for name, p in space.items():
        if isinstance(p, FloatParam):
            params[name] = trial.suggest_float(name, p.low, p.high, log=p.log)
        elif isinstance(p, IntParam):
            params[name] = trial.suggest_int(name, p.low, p.high, step=p.step)
        elif isinstance(p, CategoricalParam):
            params[name] = trial.suggest_categorical(name, list(p.choices))
        else:
            raise InvalidInput(
                f"search space entry {name!r}: unknown parameter type {type(p).__name__}"
            )
    return params


def check_params(params: Mapping[str, Any], space: SearchSpace) -> None:
    """A baseline outside the space would crash the sweep inside Optuna; refuse it up front."""
    for name, v in params.items():
        p = space.get(name)
        if p is None:
            raise InvalidInput(
                f"baseline parameter {name!r} is not in the search space ({sorted(space)})"
            )
        ok = v in p.choices if isinstance(p, CategoricalParam) else p.low <= v <= p.high
        if not ok:
            raise InvalidInput(f"baseline {name}={v!r} is outside the search space {p}")


def storage_url(storage_path: Path | str) -> str:
    return f"sqlite:///{Path(storage_path).resolve()}"


def open_storage(storage_path: Path | str) -> RDBStorage:
    from optuna.storages import RDBStorage

    Path(storage_path).resolve().parent.mkdir(parents=True, exist_ok=True)
    return RDBStorage(storage_url(storage_path))


def load_study(storage_path: Path | str, study_name: str) -> optuna.Study:
    import optuna

    if not Path(storage_path).is_file():
        raise InvalidInput(f"{storage_path}: no sweep database there; run the sweep first")
    try:
        return optuna.load_study(study_name=study_name, storage=open_storage(storage_path))
    except KeyError:
        raise InvalidInput(f"{storage_path}: no study named {study_name!r}") from None


@dataclass(frozen=True)
class SweepResult:
    study_name: str
    storage_url: str
    best_trial: int | None
    best_value: float | None
    best_params: dict[str, Any] | None
    n_complete: int
    n_pruned: int
    n_failed: int
    trials: list[dict[str, Any]]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize(study: optuna.Study, url: str = "") -> SweepResult:
    import optuna
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    rows = [
        {
            "number": t.number,
            "state": t.state.name,
            "value": t.value,
            "params": t.params,
            "last_step": t.last_step,
            "intermediate": {str(k): v for k, v in sorted(t.intermediate_values.items())},
            "reason": t.user_attrs.get("reason", ""),
        }
        for t in trials
    ]
    complete = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    best = None
    if complete:
        # earliest trial among equal values, whatever the direction (deterministic report)
        sign = -1.0 if study.direction == optuna.study.StudyDirection.MAXIMIZE else 1.0
        best = min(complete, key=lambda t: (sign * (t.value or 0.0), t.number))
    return SweepResult(
        study.study_name,
        url,
        None if best is None else best.number,
        None if best is None else best.value,
        None if best is None else dict(best.params),
        len(complete),
        sum(t.state == TrialState.PRUNED for t in trials),
        sum(t.state == TrialState.FAIL for t in trials),
        rows,
    )


def run_sweep(
    trial_runner: TrialRunner,
    space: SearchSpace,
    n_trials: int,
    storage_path: Path | str,
    study_name: str,
    pruner: optuna.pruners.BasePruner | None = None,
    direction: Direction | None = None,
    objective: str | None = None,
    seed: int = 0,
    baseline_params: Sequence[Mapping[str, Any]] = (),
    lora_type: str = "character",
    family: str = "",
    dataset_size: int | None = None,
    timeout_s: float | None = None,
) -> SweepResult:
    """Run (or continue) a sweep until the study holds ``n_trials`` finished trials.

    ``pruner`` defaults to ``MedianPruner(n_startup_trials=5)``: no pruning until five trials
    have finished, then a trial is stopped when its reported score at a step is below the median
    of earlier trials at that step. ``baseline_params`` are enqueued (only when the study is
    new) so the documented defaults are always among the trials. The TPE sampler is seeded, so
    the same call on a new study proposes the same parameters. ``objective`` (a key of
    :data:`OBJECTIVES`) sets the direction and is recorded; without it ``direction`` is used
    as given (default maximize).
    """
    import optuna
    from optuna.trial import TrialState

    if n_trials < 1:
        raise InvalidInput(f"n_trials must be at least 1, got {n_trials}")
    if objective is not None:
        if objective not in OBJECTIVES:
            raise InvalidInput(
                f"unknown sweep objective {objective!r}; one of {', '.join(OBJECTIVES)}"
            )
        if direction is not None and direction != OBJECTIVES[objective]:
            raise InvalidInput(
                f"objective {objective} is {OBJECTIVES[objective]}d, not {direction}d"
            )
        direction = OBJECTIVES[objective]
    direction = direction or "maximize"
    for p in baseline_params:
        check_params(p, space)
    storage = open_storage(storage_path)
    study = optuna.create_study(
        storage=storage,
        study_name=study_name,
        direction=direction,
        load_if_exists=True,
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=pruner or optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=0),
    )
    existing = study.get_trials(deepcopy=False)
    recorded = study.user_attrs.get("objective")
    if existing and objective is not None and recorded not in (None, objective):
        raise InvalidInput(
            f"study {study_name!r} optimises {recorded}, not {objective}: its "
            "trials' scores would not compare; use another study name"
        )
    for t in existing:
        if t.state == TrialState.RUNNING:  # left behind by a crashed process
            storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
    if not existing:
        study.set_user_attr("lora_type", lora_type)
        study.set_user_attr("family", family)
        if objective is not None:
            study.set_user_attr("objective", objective)
        study.set_user_attr(
            "space",
            json.dumps({k: asdict(v) | {"kind": type(v).__name__} for k, v in space.items()}),
        )
        if dataset_size is not None:
            study.set_user_attr("dataset_size", int(dataset_size))
        for p in baseline_params:
            study.enqueue_trial(dict(p))
    finished = sum(t.state.is_finished() for t in study.get_trials(deepcopy=False))
    remaining = n_trials - finished

    def run_trial(trial: optuna.Trial) -> float:
        params = suggest(trial, space)

        def report_cb(step: int, score: float) -> None:
            trial.report(float(score), int(step))
            if trial.should_prune():
                others = [
                    t.intermediate_values[step]
                    for t in trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                    if step in t.intermediate_values
                ]
                median = sorted(others)[len(others) // 2] if others else None
                why = (
                    f"pruned at step {step}: {objective or 'score'} {score:.4g} is worse than "
                    + (f"the median {median:.4g} of " if median is not None else "")
                    + "the finished trials at that step"
                )
                trial.set_user_attr("reason", why)
                raise optuna.TrialPruned(f"trial {trial.number} {why}")

        value = trial_runner(params, report_cb)
        if isinstance(value, TrialScore):
            trial.set_user_attr("reason", value.reason)
            for k, v in value.details.items():
                trial.set_user_attr(k, json.loads(json.dumps(v, default=str)))
            value = value.value
        if value is None or not math.isfinite(float(value)):
            raise TrialFailed(f"trial {trial.number}: the runner returned no finite score")
        return float(value)

    if remaining > 0:
        study.optimize(
            run_trial,
            n_trials=remaining,
            timeout=timeout_s,
            catch=(TrialFailed,),
            gc_after_trial=False,
        )
    return summarize(study, storage_url(storage_path))


def schedule_extra(extra: Mapping[str, Any]) -> dict[str, Any]:
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


def training_fields(
    params: Mapping[str, Any], default_rank: int, max_steps: int = 0, default_steps: int = 0
) -> dict[str, Any]:
    """A trial's parameters -> training fields (rank, alpha, learning_rate, steps, extra):
    only what the search space holds; what it does not search stays unset, so the trainer's
    family default applies (trainer/config.py). ``alpha_ratio`` becomes alpha at the trial's
    rank (the family's rank, ``default_rank``, when rank is not searched); ``max_steps`` caps
    the steps, searched or the family's (``default_steps``)."""
    p = dict(params)
    out: dict[str, Any] = {}
    if "rank" in p:
        out["rank"] = int(p.pop("rank"))
    if "alpha_ratio" in p:
        out["alpha"] = max(1, round(out.get("rank", default_rank) * float(p.pop("alpha_ratio"))))
    if "learning_rate" in p:
        out["learning_rate"] = float(p.pop("learning_rate"))
    if "steps" in p:
        out["steps"] = int(p.pop("steps"))
    if max_steps and out.get("steps", default_steps) > max_steps:  # the sweep's cap
        out["steps"] = max_steps
    out["extra"] = schedule_extra(p)
    return out


# document 003's suggested inference weight per LoRA type (ranges given as their middle);
# "effect" (Wan effects, document 004) is applied at full strength
SUGGESTED_WEIGHT = {
    "character": 1.0,
    "background": 0.8,
    "style": 0.9,
    "pose": 0.7,
    "expression": 0.6,
    "lighting": 0.7,
    "effect": 1.0,
}
MIN_REUSE_STEPS = 500  # document 002's lower bound for a LoRA


def best_params_for_reuse(
    study: optuna.Study, lora_type: str, dataset_size: int | None = None
) -> dict[str, Any]:
    """Best trial's parameters as training parameters for ``lora_type`` of the same project.

    Learning rate, rank, alpha ratio and the schedule parameters carry over unchanged (the
    recipe). Steps: when both this type's ``dataset_size`` and the tuned one (stored with the
    study) are known, steps are scaled to keep the same number of passes over the data, rounded
    to 50 and at least MIN_REUSE_STEPS; otherwise they carry over too. The result has the keys of
    ``runtime.params.TrainingParams`` (learning_rate, rank, alpha, steps, extra) plus provenance.
    """
    if lora_type not in SUGGESTED_WEIGHT:
        raise InvalidInput(f"unknown LoRA type {lora_type!r}; one of {sorted(SUGGESTED_WEIGHT)}")
    res = summarize(study)
    if res.best_params is None:
        raise InvalidInput(
            f"study {study.study_name!r} has no completed trial to reuse; run more trials"
        )
    p = dict(res.best_params)
    # a parameter the space did not search is None: the family default (trainer/config.py)
    rank = int(p.pop("rank")) if "rank" in p else None
    ratio = p.pop("alpha_ratio", None)
    lr = float(p.pop("learning_rate")) if "learning_rate" in p else None
    steps = int(p.pop("steps")) if "steps" in p else None
    tuned_size = study.user_attrs.get("dataset_size")
    if steps is not None and dataset_size and tuned_size:
        steps = max(MIN_REUSE_STEPS, round(steps * dataset_size / tuned_size / 50.0) * 50)
    return {
        "learning_rate": lr,
        "rank": rank,
        "alpha": (
            max(1, round(rank * float(ratio if ratio is not None else 1.0)))
            if rank is not None
            else None
        ),
        "steps": steps,
        "extra": p,  # family-specific knobs (timestep shift/sampling, noise offset)
        "lora_type": lora_type,
        "suggested_weight": SUGGESTED_WEIGHT[lora_type],
        "source": {
            "study": study.study_name,
            "trial": res.best_trial,
            "value": res.best_value,
            "tuned_on": study.user_attrs.get("lora_type", "character"),
        },
    }
