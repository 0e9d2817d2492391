"""One delivery of a training job as the other parts read it (:class:`RunContext`, fixed once
the dataset is fetched), where this trainer works (:class:`Workspace`), what the training
thread has reached (:class:`TrainingState`, read by the progress ticks) and what it produced
(:class:`Trained`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loraforge.runtime.jobs import Job
from loraforge.runtime.keys import ProjectRef
from loraforge.runtime.params import TrainingParams
from loraforge.trainer.checkpoints import EvalSettings
from loraforge.trainer.config import RunConfig
from loraforge.trainer.run.fetch import FetchedDataset
from loraforge.trainer.run.layout import run_prefix
from loraforge.trainer.run.options import validate_extra
from loraforge.trainer.train import Trainer, TrainResult


@dataclass(frozen=True)
class Workspace:
    """Where this trainer works: its local folders and device."""

    root: Path  # runs/<job_id>/ (removed after each job) and the local cache
    models_dir: Path | None = None  # base weights (None: the settings' default)
    device: str = "auto"

    @property
    def cache_dir(self) -> Path:
        """The local copy of the tenant's latent / text cache (shared by every run here)."""
        return self.root / "cache"

    def run_dir(self, job_id: str) -> Path:
        return self.root / "runs" / job_id


@dataclass(frozen=True)
class RunContext:
    """A training job's run: what it trains on, with which config, and where it writes."""

    job: Job
    params: TrainingParams  # as the job was started (extra with the evaluation settings)
    dataset: FetchedDataset
    config: RunConfig
    evaluation: EvalSettings
    workspace: Workspace

    @property
    def workdir(self) -> Path:
        """This run's local folder (dataset, checkpoints, previews): removed when the job ends."""
        return self.workspace.run_dir(self.job.id)

    @property
    def prefix(self) -> str:
        """The run's folder in `loras/`."""
        return run_prefix(ProjectRef(self.job.tenant, self.job.project), self.job.id)

    @property
    def checkpoint_dir(self) -> Path:
        """Where the Trainer writes step-N/ checkpoints (CheckpointSync uploads them)."""
        return Path(self.config.output_dir) / "checkpoints"

    def resumed(self) -> RunContext:
        """This run continuing from the checkpoint restored into ``checkpoint_dir``."""
        return dataclasses.replace(self, config=self.config.model_copy(update={"resume": "latest"}))


def run_context(
    job: Job, params: TrainingParams, dataset: FetchedDataset, workspace: Workspace
) -> RunContext:
    """The run of ``job`` on its fetched ``dataset`` (extra checked again: InvalidInput)."""
    evaluation, _ = validate_extra(params.extra)
    return RunContext(
        job=job,
        params=params,
        dataset=dataset,
        config=run_config(params, dataset, workspace.run_dir(job.id), workspace),
        evaluation=evaluation,
        workspace=workspace,
    )


def run_config(
    params: TrainingParams, dataset: FetchedDataset, workdir: Path, workspace: Workspace
) -> RunConfig:
    """The job's RunConfig: its fields, its extra's RunConfig options, the fetched dataset and
    the workspace. Unset numbers stay unset: the RunConfig's resolve() fills in the family
    defaults (and the checkpoint / validation cadence) exactly as for loraforge-train."""
    _, options = validate_extra(params.extra)
    values: dict[str, Any] = {
        "preset": params.base_preset,
        "dataset": dataset.path,
        "output_dir": workdir / "out",
        "trigger": dataset.trigger,
        "dataset_id": params.dataset_id,
        "rank": params.rank,
        "alpha": params.alpha,
        "learning_rate": params.learning_rate,
        "steps": params.steps,
        "resolution": params.resolution,
        "frames": params.frames,
        "seed": params.seed,
        "cache_dir": workspace.cache_dir,
        "models_dir": workspace.models_dir,
        "device": workspace.device,
        "validation_dataset": dataset.validation_path,
        **options,
    }
    return RunConfig.parse({k: v for k, v in values.items() if v is not None})


@dataclass
class TrainingState:
    """What the training thread has reached; the event loop's progress ticks read it.

    Written by the training thread only (progress, messages, previews rendered at each
    evaluation); the ticks read whole values, so no lock is needed."""

    step: int = 0
    total: int = 1
    message: str = "loading the base model"
    trainer: Trainer | None = None  # set once built: its validation losses so far
    # step -> previews rendered while training (the evaluation scores these, renders no more)
    rendered: dict[int, list[Path]] = field(default_factory=dict)
    likeness: dict[int, float] = field(default_factory=dict)  # step -> measured likeness
    logs: list[str] = field(default_factory=list)

    def on_progress(self, step: int, total: int, loss: float) -> None:
        self.step, self.total = step, total
        self.message = f"step {step}/{total}, loss {loss:.4f}"

    @property
    def fraction(self) -> float:
        return self.step / max(1, self.total)

    def scores(self) -> dict[str, dict[str, float]]:
        """Progress fields: the validation loss of every evaluation so far (a sweep reports
        each to its pruner while the run goes on: cli/sweep_cmd.py) and the likeness of each
        step's previews, when it is measurable."""
        vals = dict(self.trainer.val_losses) if self.trainer is not None else {}
        likeness = dict(self.likeness)
        out: dict[str, dict[str, float]] = {}
        if vals:
            out["val_losses"] = {str(k): v for k, v in sorted(vals.items())}
        if likeness:
            out["likeness"] = {str(k): v for k, v in sorted(likeness.items())}
        return out


@dataclass(frozen=True)
class Trained:
    """A finished training: the Trainer (its pipeline, args, dataset), its result, and what
    the run rendered and uploaded on the way."""

    trainer: Trainer
    result: TrainResult
    rendered: dict[int, list[Path]]  # step -> previews rendered while training
    uploaded_previews: dict[str, dict[str, Any]]  # object key -> artifact (LivePreviews)
    logs: list[str]
