"""The Trainer run of a RunContext, meant for a worker thread: the latent / text cache shared
through the object store, progress into a :class:`TrainingState`, previews rendered at each
evaluation, and a cancel that stops after the current optimizer step."""

from __future__ import annotations

import threading

from loraforge.runtime.storage import ObjectStore
from loraforge.trainer.cache import ObjectStoreCacheStore
from loraforge.trainer.run.context import RunContext, TrainingState
from loraforge.trainer.run.evaluate import live_previews
from loraforge.trainer.train import Trainer, TrainResult


def train(
    run: RunContext, store: ObjectStore, state: TrainingState, cancelled: threading.Event
) -> tuple[Trainer, TrainResult]:
    """Train ``run.config`` (status "cancelled" once ``cancelled`` is set: the Trainer
    checkpoints the step it stopped at)."""
    # `models/<tenant>/cache/`: every run, sweep and replica of the tenant shares its entries
    cache = ObjectStoreCacheStore(store, f"{run.job.tenant}/cache", run.workspace.cache_dir)
    trainer = Trainer(
        run.config,
        cache_store=cache,
        on_progress=state.on_progress,
        should_cancel=lambda _step: cancelled.is_set(),
        log=state.logs.append,
    )
    if run.evaluation.enabled and run.evaluation.previews > 0:
        trainer.on_eval = live_previews(run, store, trainer, state)
    state.message = f"training {trainer.args.steps} steps"
    state.trainer = trainer  # the ticks publish its validation losses as they come
    return trainer, trainer.run()
