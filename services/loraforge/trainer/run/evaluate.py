"""Likeness evaluation of a run: previews of each evaluated step rendered while training
(:func:`live_previews`, the Trainer's ``on_eval``), then every checkpoint and the final step
scored against reference faces from the dataset's keyframes and one step chosen
(:func:`evaluate_run`, ``checkpoints.CheckpointEvaluator``)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from loraforge.curation.faces import make_backend
from loraforge.runtime.storage import Bucket, ObjectStore
from loraforge.trainer.checkpoints import (
    CheckpointEvaluator,
    LiveLikeness,
    ReferenceCandidate,
    RunEvaluation,
    validation_prompts,
)
from loraforge.trainer.run.context import RunContext, Trained, TrainingState
from loraforge.trainer.run.sync import CheckpointSync
from loraforge.trainer.train import Trainer

log = logging.getLogger(__name__)

# (BGR image, pose, key) of a reference keyframe
Reference = tuple[np.ndarray, dict[str, Any] | None, str]


@dataclass(frozen=True)
class NotEvaluated:
    """Why a run has no evaluation (turned off, or it failed): best is the final step."""

    reason: str


def live_previews(
    run: RunContext, store: ObjectStore, trainer: Trainer, state: TrainingState
) -> Callable[[int], None]:
    """The Trainer's ``on_eval``: render the validation prompts with the LoRA as it is at that
    step, with the settings the evaluation after training uses, into ``state.rendered``, and
    score their likeness to the dataset's reference faces when there are any
    (``state.likeness``, published with the progress: a likeness sweep prunes on it while the
    run trains). A failed render is logged; training goes on."""
    settings = run.evaluation
    prompts = _prompts(run)
    renderer = CheckpointEvaluator(trainer, settings, log=state.logs.append)

    def references() -> tuple[Any, Any]:  # the same ones the evaluation builds
        backend = make_backend(settings.face_backend)
        images = reference_images(
            store, run.dataset.reference_keyframes, run.workdir / "eval" / "live-refs"
        )
        return renderer.references(images, backend)[0], backend

    likeness = LiveLikeness(references)
    state.likeness = likeness.values

    def on_eval(step: int) -> None:
        state.message = f"step {step}: rendering previews"
        try:
            state.rendered[step] = renderer.render_step(step, prompts, run.workdir / "eval")
            likeness.score(step, state.rendered[step])
        except Exception as e:
            log.warning("previews at step %s failed: %s", step, e)
            state.logs.append(f"previews at step {step} failed ({type(e).__name__}: {e})")

    return on_eval


def evaluate_run(
    run: RunContext,
    store: ObjectStore,
    trained: Trained,
    sync: CheckpointSync,
    progress: Callable[[float, str], None],
    should_cancel: Callable[[], bool],
) -> RunEvaluation:
    """Every checkpoint + the final step: previews (those rendered while training, else
    rendered now), likeness against the references, collapse, validation loss; the chosen
    step and its exported LoRA files; a report under ``<workdir>/eval``."""
    out = run.workdir / "eval"
    result = trained.result
    states = sync.loaders(result.step, out / "checkpoints")
    final = trained.trainer.lora_state()
    states[result.step] = lambda: final
    evaluator = CheckpointEvaluator(
        trained.trainer,
        run.evaluation,
        progress=progress,
        should_cancel=should_cancel,
        log=trained.logs.append,
        rendered=trained.rendered,
    )
    return evaluator.run(
        states,
        result.eval_losses,
        reference_images(store, run.dataset.reference_keyframes, out / "refs"),
        _prompts(run),
        out,
        title=f"LoRA evaluation: job {run.job.id}",
        lora_type=run.dataset.lora_type,
        val_bands=result.eval_bands,
    )


def reference_images(
    store: ObjectStore, candidates: Sequence[ReferenceCandidate], dest: Path
) -> list[Reference]:
    """The dataset's keyframes (most frontal first, as listed), downloaded into ``dest``;
    one that cannot be downloaded or decoded is left out (logged)."""
    import cv2  # heavy; only for a run that evaluates

    out = []
    for i, c in enumerate(candidates):
        try:
            path = store.download(Bucket(c.bucket), c.key, dest / f"{i:03d}{Path(c.key).suffix}")
        except Exception as e:
            log.warning("reference keyframe %s not readable: %s", c.key, e)
            continue
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is not None:
            out.append((img, c.pose or None, c.key))
    return out


def _prompts(run: RunContext) -> list[str]:
    settings = run.evaluation
    return validation_prompts(
        run.dataset.trigger,
        run.dataset.captions,
        settings.captions_in_prompts,
        settings.prompts,
    )
