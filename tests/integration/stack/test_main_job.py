"""`loraforge run` (what `make run` runs): the whole pipeline on a private stack, example
footage generated from packaged photos, tiny model; it must finish and print its summary."""

from __future__ import annotations

import json

import pytest

from .conftest import cli

pytestmark = pytest.mark.timeout(600)


def test_main_job_runs_every_stage_and_summarises(stack_env: dict[str, str]) -> None:
    result = cli(stack_env, "run", "--json", timeout=540)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads(result.stdout)
    assert set(summary["stages"]) == {"ingest", "curate", "caption", "train", "preview render"}
    assert all(stage["state"] == "SUCCEEDED" for stage in summary["stages"].values())
    clips = summary["clips"]
    assert clips["in"] == 5 and clips["made"] >= 5
    assert clips["kept"] >= 1 and clips["rejected"] >= 1
    # The example footage has a second person and a blurred take: both must be refused.
    assert clips["rejected_by_reason"].get("people_count", 0) >= 1
    assert clips["rejected_by_reason"].get("blurry", 0) >= 1
    assert summary["dataset"].startswith("ds-")
    assert summary["lora"]["best"].endswith("best.safetensors")
    assert summary["lora"]["best_reason"] and summary["lora"]["recommended_weight"] is not None
    assert summary["preview"].endswith(".mp4")
    assert summary["not_run"] == []
