"""A sweep ranks trials by validation loss and prunes a bad one early: two trials that differ
only in a planted learning rate (2e-2, which learns, against 1e-12, which leaves the LoRA
where it started), trained in process on a tiny preset, the bad one reported at its first
evaluation and stopped there. (On the tiny random model even lr 0.99 lowers the validation
loss, measured; a learning rate that does not move is what reliably fails.)"""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from loraforge.evaluation.sweep import CategoricalParam, load_study, run_sweep
from loraforge.trainer.config import RunConfig
from loraforge.trainer.sweep_trials import local_trial_runner
from loraforge.trainer.synthetic import TRIGGER

GOOD, BAD = 2e-2, 1e-12
STEPS, EVERY = 6, 2


def test_sweep_ranks_by_validation_loss_and_prunes_the_bad_trial_early(
    video_dataset: Path, tmp_path: Path
) -> None:
    base = RunConfig(
        preset="tiny-wan2.1-t2v",
        dataset=video_dataset,
        output_dir=tmp_path,
        trigger=TRIGGER,
        steps=STEPS,
        eval_every=EVERY,
        checkpoint_every=0,
        rank=4,
        seed=3,
    )
    trained: list[int] = []
    runner = local_trial_runner(
        base,
        tmp_path / "trials",
        trainer_kwargs={"on_progress": lambda step, total, loss: trained.append(step)},
    )
    db = tmp_path / "s.db"
    res = run_sweep(
        runner,
        {"learning_rate": CategoricalParam((GOOD, BAD))},
        2,
        db,
        "lr",
        objective="validation_loss",
        baseline_params=[{"learning_rate": GOOD}, {"learning_rate": BAD}],
        pruner=optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0),
    )

    study = load_study(db, "lr")
    good, bad = study.get_trials(deepcopy=False)
    assert good.params == {"learning_rate": GOOD} and bad.params == {"learning_rate": BAD}
    assert study.direction == optuna.study.StudyDirection.MINIMIZE
    assert study.user_attrs["objective"] == "validation_loss"
    # the good trial ran to the end, reporting its validation loss at every evaluation
    assert good.state == TrialState.COMPLETE
    assert sorted(good.intermediate_values) == list(range(EVERY, STEPS + 1, EVERY))
    assert good.value == pytest.approx(min(good.intermediate_values.values()))
    assert good.user_attrs["objective"] == "validation_loss"
    assert "lowest validation loss" in good.user_attrs["reason"]
    assert set(good.user_attrs["val_losses"]) == {"0", *(str(s) for s in good.intermediate_values)}
    # the bad one was worse at its first evaluation, pruned there and trained no further
    assert bad.state == TrialState.PRUNED and bad.last_step == EVERY
    assert bad.intermediate_values[EVERY] > good.intermediate_values[EVERY]
    assert "pruned at step 2" in bad.user_attrs["reason"] and "median" in bad.user_attrs["reason"]
    assert trained == list(range(1, STEPS + 1)) + list(range(1, EVERY + 1))
    assert res.best_trial == good.number and res.n_pruned == 1
