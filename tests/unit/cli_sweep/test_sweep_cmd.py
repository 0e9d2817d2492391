"""`loraforge sweep` plumbing with a fake trial runner: the study lands in the stack data dir,
the best trial and the reusable parameters are printed, a re-run continues the study."""

from __future__ import annotations

import json
import math
import os

import pytest
import typer
from loraforge.cli import sweep_cmd

# Only this command (the other command modules change concurrently); a group, as in main.app.
app = typer.Typer(pretty_exceptions_enable=False)
app.callback()(lambda: None)
sweep_cmd.register(app)
from typer.testing import CliRunner

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def env(tmp_path, monkeypatch):
    for name in [k for k in os.environ if k.startswith("LORAFORGE_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("LORAFORGE_STACK__DATA_DIR", str(tmp_path / "data"))
    calls: list[dict] = []

    def fake_factory(settings, ref, base, dataset_id, **kw):
        def run(params, report):
            fields = sweep_cmd.training_run(params, dataset_id=dataset_id or "ds-1", base=base,
                                            max_steps=kw["max_steps"])
            calls.append(fields)
            # a made-up loss landscape: best near lr 1e-4, smaller is better
            loss = abs(math.log10(fields["learning_rate"]) + 4.0) + fields["rank"] / 1000.0
            report(fields["steps"], loss)
            return loss
        return run

    monkeypatch.setattr(sweep_cmd, "make_trial_runner", fake_factory)
    return tmp_path / "data", calls


def test_sweep_stores_the_study_and_prints_reusable_params(env):
    data_dir, calls = env
    args = ["sweep", "--project", "jane", "--base", "tiny-sdxl", "--trials", "3",
            "--study", "s1", "--max-steps", "20", "--reuse-for", "style", "--json"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    db = data_dir / "sweeps" / "jane" / "s1.db"
    assert out["storage"] == str(db) and db.is_file()
    assert out["n_complete"] == 3 and len(calls) == 3
    assert all(c["steps"] <= 20 and c["base_preset"] == "tiny-sdxl" for c in calls)
    assert all("noise_offset" in c["extra"] for c in calls)  # SD family knob goes to extra
    best = min(out["trials"], key=lambda t: t["value"])
    assert out["best_trial"] == best["number"] and out["best_value"] == pytest.approx(best["value"])
    reuse = out["reuse"]
    assert reuse["lora_type"] == "style" and reuse["suggested_weight"] == 0.9
    assert reuse["rank"] == best["params"]["rank"]
    assert reuse["alpha"] == max(1, round(best["params"]["rank"] * best["params"]["alpha_ratio"]))
    assert reuse["source"] == {"study": "s1", "trial": best["number"], "value": best["value"],
                               "tuned_on": "character"}

    # the same command with more trials continues the study (3 old + 2 new)
    args[args.index("3")] = "5"
    again = json.loads(CliRunner().invoke(app, args).stdout)
    assert again["n_complete"] == 5 and len(calls) == 5

    human = CliRunner().invoke(app, [a for a in args if a != "--json"])
    assert human.exit_code == 0, human.output
    assert "best: trial" in human.stdout and "reuse for style" in human.stdout


def test_unknown_preset_and_lora_type_are_refused(env):
    res = CliRunner().invoke(app, ["sweep", "-p", "jane", "--base", "nope", "--trials", "1", "--json"])
    assert res.exit_code == 2 and "unknown base preset 'nope'" in json.loads(res.stdout)["error"]
    res = CliRunner().invoke(app, ["sweep", "-p", "jane", "--base", "sdxl", "--trials", "1",
                                   "--lora-type", "hat"])
    assert res.exit_code == 2 and "unknown --lora-type" in res.output


def test_training_run_maps_sweep_params_to_trainer_fields():
    fields = sweep_cmd.training_run(
        {"learning_rate": 2e-4, "rank": 16, "steps": 1500, "alpha_ratio": 0.5,
         "timestep_shift": 3.0, "timestep_sampling": "shift"},
        dataset_id="ds", base="tiny-wan2.1-t2v", max_steps=10)
    assert fields == {"dataset_id": "ds", "base_preset": "tiny-wan2.1-t2v", "rank": 16, "alpha": 8,
                      "learning_rate": 2e-4, "steps": 10, "seed": 0,
                      "extra": {"timestep_sampling": "uniform", "flow_shift": 3.0}}


def test_trainer_extra_maps_schedule_knobs_and_keeps_noise_offset() -> None:
    assert sweep_cmd.trainer_extra({"timestep_shift": 5.0, "timestep_sampling": "shift"}) == {
        "timestep_sampling": "uniform", "flow_shift": 5.0}
    assert sweep_cmd.trainer_extra({"timestep_sampling": "uniform", "timestep_shift": 3.0}) == {
        "timestep_sampling": "uniform", "flow_shift": 1.0}
    assert sweep_cmd.trainer_extra({"noise_offset": 0.05, "rank": 8}) == {
        "noise_offset": 0.05, "rank": 8}
