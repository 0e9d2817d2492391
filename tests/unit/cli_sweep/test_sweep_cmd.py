"""`loraforge sweep` plumbing with a fake trial runner: the study lands in the stack data dir,
the best trial and the reusable parameters are printed, a re-run continues the study."""

from __future__ import annotations

import json
import math
import os

import pytest
import typer
from typer.testing import CliRunner

from loraforge.cli import sweep_cmd

# Only this command (the other command modules change concurrently); a group, as in main.app.
app = typer.Typer(pretty_exceptions_enable=False)
app.callback()(lambda: None)
sweep_cmd.register(app)

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def env(tmp_path, monkeypatch):
    for name in [k for k in os.environ if k.startswith("LORAFORGE_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("LORAFORGE_STACK__DATA_DIR", str(tmp_path / "data"))
    calls: list[dict] = []

    def fake_factory(settings, ref, base, dataset_id, **kw):
        def run(params, report):
            fields = sweep_cmd.training_run(
                params, dataset_id=dataset_id or "ds-1", base=base, max_steps=kw["max_steps"]
            )
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
    args = [
        "sweep",
        "--project",
        "jane",
        "--base",
        "tiny-sdxl",
        "--trials",
        "3",
        "--study",
        "s1",
        "--max-steps",
        "20",
        "--reuse-for",
        "style",
        "--json",
    ]
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
    assert reuse["source"] == {
        "study": "s1",
        "trial": best["number"],
        "value": best["value"],
        "tuned_on": "character",
    }

    # the same command with more trials continues the study (3 old + 2 new)
    args[args.index("3")] = "5"
    again = json.loads(CliRunner().invoke(app, args).stdout)
    assert again["n_complete"] == 5 and len(calls) == 5

    human = CliRunner().invoke(app, [a for a in args if a != "--json"])
    assert human.exit_code == 0, human.output
    assert "best: trial" in human.stdout and "reuse for style" in human.stdout


def test_unknown_preset_and_lora_type_are_refused(env):
    res = CliRunner().invoke(
        app, ["sweep", "-p", "jane", "--base", "nope", "--trials", "1", "--json"]
    )
    assert res.exit_code == 2 and "unknown base preset 'nope'" in json.loads(res.stdout)["error"]
    res = CliRunner().invoke(
        app, ["sweep", "-p", "jane", "--base", "sdxl", "--trials", "1", "--lora-type", "hat"]
    )
    assert res.exit_code == 2 and "unknown --lora-type" in res.output


def test_training_run_maps_sweep_params_to_trainer_fields():
    fields = sweep_cmd.training_run(
        {
            "learning_rate": 2e-4,
            "rank": 16,
            "steps": 1500,
            "alpha_ratio": 0.5,
            "timestep_shift": 3.0,
            "timestep_sampling": "shift",
        },
        dataset_id="ds",
        base="tiny-wan2.1-t2v",
        max_steps=10,
    )
    assert fields == {
        "dataset_id": "ds",
        "base_preset": "tiny-wan2.1-t2v",
        "rank": 16,
        "alpha": 8,
        "learning_rate": 2e-4,
        "steps": 10,
        "seed": 0,
        "extra": {"timestep_sampling": "uniform", "flow_shift": 3.0},
    }


def test_trainer_extra_maps_schedule_knobs_and_keeps_noise_offset() -> None:
    assert sweep_cmd.trainer_extra({"timestep_shift": 5.0, "timestep_sampling": "shift"}) == {
        "timestep_sampling": "uniform",
        "flow_shift": 5.0,
    }
    assert sweep_cmd.trainer_extra({"timestep_sampling": "uniform", "timestep_shift": 3.0}) == {
        "timestep_sampling": "uniform",
        "flow_shift": 1.0,
    }
    assert sweep_cmd.trainer_extra({"noise_offset": 0.05, "rank": 8}) == {
        "noise_offset": 0.05,
        "rank": 8,
    }


def test_the_objective_is_likeness_where_measurable_and_scores_say_why() -> None:
    from loraforge.trainer.presets import get_preset

    assert sweep_cmd.choose_objective("auto", "character", get_preset("sdxl")) == "likeness"
    # tiny random models never render a face; a style LoRA has no identity to compare
    assert (
        sweep_cmd.choose_objective("auto", "character", get_preset("tiny-sdxl"))
        == "validation_loss"
    )
    assert sweep_cmd.choose_objective("auto", "style", get_preset("sdxl")) == "validation_loss"
    assert sweep_cmd.choose_objective("likeness", "style", get_preset("sdxl")) == "likeness"

    result = {
        "val_losses": {"0": 1.2, "2": 0.9, "4": 0.95},
        "best_step": 4,
        "best_reason": "highest likeness",
        "likeness": {"2": 0.41, "4": 0.52},
    }
    score = sweep_cmd.trial_score("likeness", result, "r1")
    assert score.value == 0.52 and "step 4" in score.reason and score.details["job"] == "r1"
    val = sweep_cmd.trial_score("validation_loss", result, "r1")
    assert val.value == 0.9 and val.details["best_step"] == 2
    # no face in any preview: likeness 0 (the formula's face rate), said so
    blind = sweep_cmd.trial_score("likeness", {**result, "likeness": {}}, "r2")
    assert blind.value == 0.0 and "unmeasurable" in blind.reason


def test_unsearched_parameters_stay_unset_for_the_family_default() -> None:
    fields = sweep_cmd.training_run({"learning_rate": 3e-4}, dataset_id="ds", base="sdxl")
    assert fields == {
        "dataset_id": "ds",
        "base_preset": "sdxl",
        "seed": 0,
        "learning_rate": 3e-4,
        "extra": {},
    }
    # the --max-steps cap applies to the family's steps too (SDXL: 1500)
    assert sweep_cmd.training_run({}, dataset_id="ds", base="sdxl", max_steps=300)["steps"] == 300
    # a tiny preset's own default (20 steps) is below the cap: left unset
    assert "steps" not in sweep_cmd.training_run(
        {}, dataset_id="ds", base="tiny-sdxl", max_steps=300
    )
