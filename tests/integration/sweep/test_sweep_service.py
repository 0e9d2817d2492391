"""`loraforge sweep` against the real trainer service: a 3-trial sweep on a tiny preset trains
three jobs, stores its study in the stack data dir and reports the best trial with parameters
that `loraforge train` can take again."""

from __future__ import annotations

import asyncio

import pytest
from optuna.trial import TrialState

from loraforge.cli import sweep_cmd
from loraforge.evaluation.sweep import (
    CategoricalParam,
    FloatParam,
    IntParam,
    best_params_for_reuse,
    load_study,
)
from loraforge.runtime.host import ServiceProcess
from loraforge.runtime.jobs import JobState
from loraforge.runtime.keys import ProjectRef
from loraforge.runtime.params import TrainingParams
from loraforge.trainer.main import mount

from ..trainer.test_trainer_service import DS, PROJECT, TENANT, seed_captioned_dataset

pytestmark = pytest.mark.timeout(240)

BASE = "tiny-wan2.1-t2v"
SPACE = {
    "learning_rate": FloatParam(1e-4, 1e-3, log=True),
    "rank": CategoricalParam((4, 8)),
    "steps": IntParam(2, 4),
    "alpha_ratio": CategoricalParam((0.5, 1.0)),
    # Wan's schedule knobs, so the sweep -> RunConfig translation meets the real trainer
    "timestep_shift": FloatParam(1.0, 5.0),
    "timestep_sampling": CategoricalParam(("uniform", "logit_normal", "shift")),
}


@pytest.fixture
async def trainer_service(settings):
    proc = ServiceProcess("trainer", settings, mount, drain_delay_s=0)
    await proc.start()
    try:
        yield proc
    finally:
        await proc.stop()


async def test_three_trial_sweep_stores_its_study_and_reports_the_best_trial(
    trainer_service, settings, store, tmp_path
) -> None:
    seed_captioned_dataset(store, tmp_path)
    endpoints = settings.endpoints.model_copy(
        update={"trainer": f"127.0.0.1:{trainer_service.port}"}
    )
    cli_settings = settings.model_copy(update={"endpoints": endpoints})
    ref = ProjectRef(TENANT, PROJECT)

    # the command's own code path (sync gRPC), off the event loop the service runs on;
    # no dataset id: the runner resolves the project's newest, as the command does
    view = await asyncio.to_thread(
        sweep_cmd.run_study,
        cli_settings,
        ref,
        BASE,
        trials=3,
        study="tiny-sweep",
        reuse_for="style",
        trial_timeout_s=120,
        seed=3,
        space=SPACE,
    )

    path = sweep_cmd.study_path(cli_settings, PROJECT, "tiny-sweep")
    assert view["storage"] == str(path) and path.is_file()
    assert path.is_relative_to(settings.stack.data_dir)
    assert view["n_failed"] == 0, view["trials"]
    assert view["n_complete"] + view["n_pruned"] == 3

    study = load_study(path, "tiny-sweep")
    trials = study.get_trials(deepcopy=False)
    assert len(trials) == 3
    assert {t.state for t in trials} <= {TrialState.COMPLETE, TrialState.PRUNED}
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert complete, "the first trials of a study are never pruned (MedianPruner startup)"
    assert view["objective"] == study.user_attrs["objective"] == "validation_loss"  # tiny: auto
    best = min(complete, key=lambda t: (t.value, t.number))
    assert view["best_trial"] == best.number
    assert view["best_value"] == pytest.approx(best.value) and best.value > 0
    assert set(best.params) == set(SPACE) and 2 <= best.params["steps"] <= 4
    assert study.user_attrs["family"] == "wan"

    reuse = best_params_for_reuse(study, "style")
    assert {"learning_rate", "rank", "alpha", "steps", "extra"} <= set(reuse)
    assert reuse["source"]["trial"] == best.number
    # the command's reuse block carries extra in the trainer's own names
    assert view["reuse"]["extra"] == sweep_cmd.trainer_extra(reuse["extra"])
    assert "timestep_shift" not in view["reuse"]["extra"]
    train = TrainingParams(
        dataset_id=DS,
        base_preset=BASE,
        **{k: view["reuse"][k] for k in ("learning_rate", "rank", "alpha", "steps", "extra")},
    )
    assert train.rank == best.params["rank"] and train.steps == best.params["steps"]

    # one trainer job per trial, each trained with its trial's parameters, evaluation off
    jobs = await trainer_service.clients.jobs.list(TENANT, PROJECT, kind="trainer")
    assert len(jobs) == 3
    assert all(j.state is JobState.SUCCEEDED for j in jobs), [(j.state, j.message) for j in jobs]
    by_job = {j.id: j for j in jobs}
    for t in complete:  # a complete trial's score is its job's lowest validation loss ...
        job_vals = by_job[t.user_attrs["job"]].result["val_losses"]
        assert t.value == pytest.approx(min(job_vals.values()))
        # ... each evaluation after step 0 was reported to the pruner at its step, and the
        # study says why the trial scored what it did
        assert {str(k): v for k, v in t.intermediate_values.items()} == pytest.approx(
            {k: v for k, v in job_vals.items() if k != "0"}
        )
        assert len(t.intermediate_values) >= 2
        assert "lowest validation loss" in t.user_attrs["reason"]
        assert t.user_attrs["objective"] == "validation_loss"
    by_steps = sorted((j.params["steps"], j.params["rank"]) for j in jobs)
    assert by_steps == sorted((t.params["steps"], t.params["rank"]) for t in trials)
    for j in jobs:
        assert j.params["dataset_id"] == DS and j.params["base_preset"] == BASE
        assert j.params["extra"]["evaluate"] is False
        assert "flow_shift" in j.params["extra"]
        assert j.params["extra"]["timestep_sampling"] in ("uniform", "logit_normal")

    # the same call again continues the stored study: nothing new is trained
    again = await asyncio.to_thread(
        sweep_cmd.run_study,
        cli_settings,
        ref,
        BASE,
        trials=3,
        study="tiny-sweep",
        trial_timeout_s=120,
        seed=3,
        space=SPACE,
    )
    assert again["best_trial"] == view["best_trial"]
    assert len(await trainer_service.clients.jobs.list(TENANT, PROJECT, kind="trainer")) == 3
