from __future__ import annotations

import math

import optuna
import pytest
from optuna.trial import TrialState

from loraforge.evaluation.errors import TrialFailed
from loraforge.evaluation.sweep import (
    CategoricalParam,
    FloatParam,
    best_params_for_reuse,
    default_space,
    load_study,
    run_sweep,
)
from loraforge.runtime.errors import InvalidInput

optuna.logging.set_verbosity(optuna.logging.WARNING)

GOOD = {"learning_rate": 1e-4, "rank": 32, "steps": 1500, "alpha_ratio": 0.5, "noise_offset": 0.05}
BAD = {"learning_rate": 1e-5, "rank": 8, "steps": 500, "alpha_ratio": 0.25, "noise_offset": 0.0}
STEPS = (100, 200, 300)


def quality(p: dict) -> float:
    """Analytic stand-in for a trained LoRA's likeness: best at lr 1e-4, rank 32, ratio 0.5."""
    return (
        1.0
        - 0.3 * (math.log10(p["learning_rate"]) + 4.0) ** 2
        - 0.05 * abs(math.log2(p["rank"] / 32))
        - 0.2 * abs(p["alpha_ratio"] - 0.5)
        - 0.5 * abs(p["noise_offset"] - 0.05)
    )


class FakeRunner:
    """A short 'training' that reports its score at three steps, rising towards quality(p)."""

    def __init__(self) -> None:
        self.calls: list[dict] = []
        self.reached: list[int] = []

    def __call__(self, params, report_cb) -> float:
        self.calls.append(params)
        last = 0
        for s in STEPS:
            report_cb(s, quality(params) * s / STEPS[-1])
            last = s
        self.reached.append(last)
        return quality(params)


def test_three_trial_sweep_prunes_stores_and_reports(tmp_path):
    db = tmp_path / "sweeps" / "jane.db"
    runner = FakeRunner()
    res = run_sweep(
        runner,
        default_space("sdxl"),
        3,
        db,
        "jane-character",
        pruner=optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0),
        baseline_params=[GOOD, BAD],
        dataset_size=300,
    )
    states = [t["state"] for t in res.trials]
    # trial 0 (good) completes; trial 1 (bad) is below the median at its first report and is
    # stopped there: its runner never reached the end
    assert states[0] == "COMPLETE" and states[1] == "PRUNED" and len(states) == 3
    assert res.trials[1]["last_step"] == 100 and len(runner.calls) == 3
    assert runner.calls[0] == GOOD and runner.calls[1] == BAD
    assert res.n_pruned >= 1 and res.n_complete == 3 - res.n_pruned - res.n_failed
    complete = [t for t in res.trials if t["state"] == "COMPLETE"]
    best = max(complete, key=lambda t: t["value"])
    assert res.best_trial == best["number"] and res.best_value == pytest.approx(best["value"])
    assert res.best_value == pytest.approx(quality(res.best_params))
    assert res.storage_url.startswith("sqlite:///") and db.is_file()

    # the study survives: reload it from the SQLite file alone
    again = load_study(db, "jane-character")
    assert len(again.trials) == 3 and again.best_value == pytest.approx(res.best_value)
    assert again.trials[1].state == TrialState.PRUNED
    assert again.user_attrs["lora_type"] == "character"


def test_sweep_resumes_to_the_total_and_fails_stale_trials(tmp_path):
    db = tmp_path / "s.db"
    space = {
        "learning_rate": FloatParam(1e-5, 1e-3, log=True),
        "rank": CategoricalParam((8, 32)),
        "alpha_ratio": CategoricalParam((0.25, 0.5)),
        "noise_offset": FloatParam(0.0, 0.1),
        "steps": CategoricalParam((500, 1500)),
    }
    r1 = FakeRunner()
    run_sweep(r1, space, 2, db, "s", baseline_params=[GOOD])
    # a crashed process left a trial RUNNING
    load_study(db, "s").ask()
    r2 = FakeRunner()
    res = run_sweep(r2, space, 4, db, "s", baseline_params=[BAD])
    assert len(r1.calls) == 2 and len(r2.calls) == 1  # 2 done + 1 stale = 3; one more to 4
    assert [t["state"] for t in res.trials][2] == "FAIL"
    assert BAD not in r2.calls  # baselines are only enqueued into a new study
    assert run_sweep(FakeRunner(), space, 4, db, "s").n_complete == res.n_complete  # no-op


def test_a_failed_trial_is_recorded_and_the_sweep_goes_on(tmp_path):
    def runner(params, report_cb):
        if params["rank"] == 128:
            raise TrialFailed("CUDA out of memory at rank 128")
        return quality(params)

    big = dict(GOOD, rank=128)
    res = run_sweep(
        runner, default_space("sdxl"), 2, tmp_path / "f.db", "f", baseline_params=[big, GOOD]
    )
    assert [t["state"] for t in res.trials] == ["FAIL", "COMPLETE"]
    assert res.best_trial == 1 and res.n_failed == 1


def test_best_params_are_reused_for_other_types(tmp_path):
    db = tmp_path / "r.db"
    run_sweep(
        lambda p, cb: quality(p),
        default_space("sdxl"),
        2,
        db,
        "r",
        baseline_params=[GOOD, BAD],
        dataset_size=300,
    )
    study = load_study(db, "r")
    same = best_params_for_reuse(study, "style")
    assert same["learning_rate"] == pytest.approx(1e-4) and same["rank"] == 32
    assert same["alpha"] == 16 and same["steps"] == 1500
    assert same["extra"] == {"noise_offset": pytest.approx(0.05)}
    assert same["suggested_weight"] == 0.9 and same["source"]["trial"] == 0
    assert same["source"]["tuned_on"] == "character"
    # half the data: half the steps for the same passes over it; never below 500
    assert best_params_for_reuse(study, "expression", dataset_size=150)["steps"] == 750
    assert best_params_for_reuse(study, "expression", dataset_size=20)["steps"] == 500
    with pytest.raises(InvalidInput, match="unknown LoRA type"):
        best_params_for_reuse(study, "portrait")


def test_baselines_outside_the_space_are_refused(tmp_path):
    with pytest.raises(InvalidInput, match="outside the search space"):
        run_sweep(
            FakeRunner(),
            default_space(),
            1,
            tmp_path / "b.db",
            "b",
            baseline_params=[dict(GOOD, rank=12)],
        )
    with pytest.raises(InvalidInput, match="not in the search space"):
        run_sweep(
            FakeRunner(),
            default_space(),
            1,
            tmp_path / "b.db",
            "b",
            baseline_params=[dict(GOOD, timestep_shift=3.0)],
        )


def test_wan_space_searches_the_timestep_schedule():
    space = default_space("wan")
    assert {"timestep_shift", "timestep_sampling"} <= set(space)
    assert "noise_offset" not in space
    assert space["rank"].choices == (8, 16, 32, 64, 128) and space["learning_rate"].log


def test_missing_study_and_empty_study_are_explained(tmp_path):
    with pytest.raises(InvalidInput, match="no sweep database"):
        load_study(tmp_path / "none.db", "x")

    def always_fails(params, cb):
        raise TrialFailed("diverged")

    run_sweep(always_fails, default_space(), 1, tmp_path / "e.db", "e")
    with pytest.raises(InvalidInput, match="no completed trial"):
        best_params_for_reuse(load_study(tmp_path / "e.db", "e"), "style")
    with pytest.raises(InvalidInput, match="no study named"):
        load_study(tmp_path / "e.db", "other")
