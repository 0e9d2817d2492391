"""`loraforge train / presets / lora pull` against the trainer service in-process."""

from __future__ import annotations

import asyncio
import json
import os

import pytest
from safetensors import safe_open

from loraforge.runtime.host import ServiceProcess
from loraforge.trainer.main import mount

from .test_trainer_service import PROJECT, TENANT, seed_captioned_dataset

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
async def cli(settings, settings_env, monkeypatch):
    from typer.testing import CliRunner

    from loraforge.cli.main import app

    proc = ServiceProcess("trainer", settings, mount, drain_delay_s=0)
    await proc.start()
    for name in [k for k in os.environ if k.startswith("LORAFORGE_")]:
        monkeypatch.delenv(name)
    env = {**settings_env, "LORAFORGE_ENDPOINTS__TRAINER": f"127.0.0.1:{proc.port}"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    async def run(*args: str):
        return await asyncio.to_thread(CliRunner().invoke, app, list(args))

    try:
        yield run
    finally:
        await proc.stop()


async def test_train_then_pull(cli, store, tmp_path) -> None:
    ran = await cli("presets", "--json")
    assert ran.exit_code == 0, ran.output
    assert "tiny-wan2.1-t2v" in {r["name"] for r in json.loads(ran.stdout)}

    bad = await cli("train", "--project", PROJECT, "--tenant", TENANT, "--base", "nope", "--json")
    assert bad.exit_code == 2 and "unknown base preset" in bad.output

    bad = await cli(
        "train",
        "--project",
        PROJECT,
        "--tenant",
        TENANT,
        "--base",
        "tiny-sdxl",
        "--set",
        "block_swap",
        "--json",
    )
    assert bad.exit_code == 2 and "expected KEY=VALUE" in bad.output

    seed_captioned_dataset(store, tmp_path)
    ran = await cli(
        "train",
        "--project",
        PROJECT,
        "--tenant",
        TENANT,
        "--base",
        "tiny-wan2.1-t2v",
        "--steps",
        "2",
        "--rank",
        "4",
        "--dora",
        "--set",
        "timestep_sampling=logit_normal",
        "--prompt",
        "a square on a beach",
        "--json",
    )
    assert ran.exit_code == 0, ran.output
    view = json.loads(ran.stdout)
    assert view["state"] == "SUCCEEDED" and view["best_key"].endswith("/best.safetensors")

    out = tmp_path / "pulled"
    ran = await cli(
        "lora",
        "pull",
        view["run_id"],
        "--project",
        PROJECT,
        "--tenant",
        TENANT,
        "--out",
        str(out),
        "--json",
    )
    assert ran.exit_code == 0, ran.output
    assert [p.name for p in out.iterdir()] == ["best.safetensors"]
    with safe_open(str(out / "best.safetensors"), "pt") as f:  # --dora and --set reached the run
        assert any(k.endswith(".dora_scale") for k in f.keys())  # noqa: SIM118 (not a dict)
        assert (
            json.loads(f.metadata()["loraforge.training_args"])["timestep_sampling"]
            == "logit_normal"
        )
    ran = await cli(
        "lora",
        "pull",
        view["run_id"],
        "--project",
        PROJECT,
        "--tenant",
        TENANT,
        "--out",
        str(out),
        "--which",
        "all",
    )
    assert ran.exit_code == 0, ran.output
    assert {"best.safetensors", "last.safetensors", "run.json"} <= {p.name for p in out.iterdir()}
    run = json.loads((out / "run.json").read_text())
    assert run["evaluation"]["prompts"] == [f"{run['trigger']}, a square on a beach"]
    assert list((out / "checkpoints").glob("step-*/adapter.safetensors"))

    missing = await cli(
        "lora", "pull", "nope", "--project", PROJECT, "--tenant", TENANT, "--out", str(out)
    )
    assert missing.exit_code == 2 and "no run.json" in missing.output
