"""Sweep trials trained in this process (:func:`local_trial_runner`), for the evaluation
library's :func:`~loraforge.evaluation.sweep.run_sweep`: each trial is one :class:`Trainer`
run of a base run config with the trial's parameters, scored by its validation loss.

The validation loss of each evaluation step is reported to the pruner from inside the
training loop (the trainer's ``on_eval``), so a pruned trial stops training at that step:
``optuna.TrialPruned`` propagates out of ``Trainer.run``. The service-backed runner of
``loraforge sweep`` (cli/sweep_cmd.py) does the same through the job's progress.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from loraforge.evaluation.errors import TrialFailed
from loraforge.evaluation.sweep import TrialScore, training_fields
from loraforge.trainer.config import RunConfig, resolve
from loraforge.trainer.train import Trainer


def validation_score(val_losses: dict[int, float], job_id: str = "") -> TrialScore:
    """A validation-loss trial's score: the lowest validation loss over its evaluations (the
    checkpoint the trainer ships when likeness is unmeasurable), and why. ``job_id``: the
    trainer job that trained it, if any (recorded)."""
    what = f"training job {job_id}" if job_id else "the trial"
    finite = {s: v for s, v in val_losses.items() if math.isfinite(v)}
    if val_losses and not finite:
        raise TrialFailed(f"{what} diverged: every validation loss is not finite")
    if not finite:
        raise TrialFailed(
            f"{what} measured no validation loss: the dataset has no validation set (it needs "
            "two or more clips and validation_split < 1, or a validation_dataset)"
        )
    step = min(finite, key=lambda s: (finite[s], s))
    return TrialScore(
        finite[step],
        f"lowest validation loss {finite[step]:.5g} at step {step} of {max(finite)} "
        "(held-out clips, fixed noise and timesteps)",
        {
            "objective": "validation_loss",
            "best_step": step,
            "val_losses": {str(k): v for k, v in sorted(finite.items())},
            **({"job": job_id} if job_id else {}),
        },
    )


def local_trial_runner(
    base: RunConfig,
    out_root: Path,
    *,
    max_steps: int = 0,
    trainer_kwargs: dict[str, Any] | None = None,
) -> Callable[[dict[str, Any], Callable[[int, float], None]], TrialScore]:
    """A trial runner training ``base`` with each trial's parameters under
    ``out_root/trial-N``; every trial evaluates at the same steps (``base.eval_every``, else
    the cadence of the base config's resolved steps), so the pruner compares like with like."""
    _, resolved = resolve(base)
    counter = {"n": 0}

    def run(params: dict[str, Any], report: Callable[[int, float], None]) -> TrialScore:
        fields = training_fields(
            params, resolved.rank, max_steps=max_steps, default_steps=resolved.steps
        )
        extra = fields.pop("extra")
        values = {
            **base.model_dump(),
            **fields,
            **extra,
            "eval_every": resolved.eval_every,
            "output_dir": Path(out_root) / f"trial-{counter['n']}",
        }
        counter["n"] += 1
        config = RunConfig.parse(values)
        trainer = Trainer(config, **(trainer_kwargs or {}))

        def on_eval(step: int) -> None:
            loss = trainer.val_losses.get(step)
            if loss is not None:
                report(step, loss)  # raises optuna.TrialPruned: training stops here

        trainer.on_eval = on_eval
        try:
            trainer.run()
        except RuntimeError as e:  # diverged to NaN in a kernel, out of memory
            raise TrialFailed(f"trial training failed: {e}") from e
        return validation_score(trainer.val_losses)

    return run
