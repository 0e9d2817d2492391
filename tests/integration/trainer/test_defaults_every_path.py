"""One source of training defaults: the same tiny SDXL run, with nothing set but a short
length (2 steps, each path's own way of saying it, to keep the test fast), started through
every path a user has (`loraforge train`'s gRPC request, the gateway's API client, a sweep
trial that searches nothing under --max-steps, `loraforge-train` on a local folder) resolves
to the same config, the SDXL family's (rank 32, alpha 16, cosine), as each run's record says."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import grpc
import pytest
from safetensors import safe_open

from loraforge.cli import sweep_cmd, train_cmd
from loraforge.gateway.clients import BackendClients
from loraforge.gateway.models import TrainingStart
from loraforge.runtime.host import ServiceProcess
from loraforge.runtime.keys import ProjectRef
from loraforge.runtime.storage import Bucket
from loraforge.trainer import cli
from loraforge.trainer.config import LOCATION_FIELDS
from loraforge.trainer.main import mount
from loraforge.trainer.synthetic import write_image_dataset
from loraforge.v1 import common_pb2, trainer_pb2, trainer_pb2_grpc

from .test_trainer_service import DS, PROJECT, TENANT, _wait_terminal, seed_captioned_dataset

pytestmark = pytest.mark.timeout(300)

BASE = "tiny-sdxl"
STEPS = 2
NO_PREVIEWS = {"evaluate": False}  # an evaluation setting, not a training one: time only


@pytest.fixture
async def trainer_service(settings):
    proc = ServiceProcess("trainer", settings, mount, drain_delay_s=0)
    await proc.start()
    try:
        yield proc
    finally:
        await proc.stop()


def _comparable(args: dict) -> dict:
    return {k: v for k, v in args.items() if k not in LOCATION_FIELDS}


async def _service_args(trainer_service, store, job_id: str) -> dict:
    job = await _wait_terminal(trainer_service.clients.jobs, job_id)
    assert job.state.name == "SUCCEEDED", job.message
    run = store.get_json(Bucket.LORAS, f"{TENANT}/{PROJECT}/runs/{job_id}/run.json")
    return run["training_args"]


async def test_a_run_with_nothing_set_resolves_the_same_through_every_path(
    trainer_service, settings, store, tmp_path: Path
) -> None:
    seed_captioned_dataset(store, tmp_path)  # two clips: one trains, one validates
    target = f"127.0.0.1:{trainer_service.port}"
    resolved: dict[str, dict] = {}

    # `loraforge train --base tiny-sdxl` (its request, as the command builds it)
    run = train_cmd.training_run(
        DS,
        BASE,
        extra=NO_PREVIEWS,
        rank=None,
        alpha=None,
        learning_rate=None,
        steps=STEPS,
        resolution=None,
        frames=None,
        seed=None,
    )
    async with grpc.aio.insecure_channel(target) as channel:
        job = await trainer_pb2_grpc.TrainerServiceStub(channel).StartTraining(
            trainer_pb2.StartTrainingRequest(
                scope=common_pb2.ProjectScope(tenant=TENANT, project=PROJECT),
                request_id="cli",
                run=run,
            ),
            timeout=10,
        )
    resolved["loraforge train"] = await _service_args(trainer_service, store, job.id)

    # POST /v1/projects/{p}/training-runs {"dataset_id", "preset"}: the gateway's client
    backends = BackendClients({"trainer": target}, timeout_s=10)
    try:
        job = await backends.start_training(
            TENANT,
            PROJECT,
            TrainingStart(dataset_id=DS, preset=BASE, steps=STEPS, extra=NO_PREVIEWS),
        )
    finally:
        await backends.close()
    resolved["api"] = await _service_args(trainer_service, store, job.id)

    # a sweep trial whose search space holds nothing: every field stays the family's
    endpoints = settings.endpoints.model_copy(update={"trainer": target})
    cli_settings = settings.model_copy(update={"endpoints": endpoints})
    runner = sweep_cmd.make_trial_runner(
        cli_settings,
        ProjectRef(TENANT, PROJECT),
        BASE,
        DS,
        max_steps=STEPS,
        timeout_s=120,
        study="defaults",
        trial_extra=NO_PREVIEWS,
        objective="validation_loss",
    )
    reports: list[tuple[int, float]] = []
    score = await asyncio.to_thread(runner, {}, lambda s, v: reports.append((s, v)))
    resolved["sweep"] = await _service_args(trainer_service, store, score.details["job"])
    # the trial was scored by its validation loss, each evaluation reported on the way
    assert reports and score.value == pytest.approx(min(v for _, v in reports))
    assert score.details["objective"] == "validation_loss"

    # loraforge-train on a local folder of the same shape (two 64x48 stills)
    local = write_image_dataset(tmp_path / "stills", images=2, size=(64, 48))
    assert (
        cli.main(
            [
                "--preset",
                BASE,
                "--dataset",
                str(local),
                "--output",
                str(tmp_path / "out"),
                "--device",
                "cpu",
                "--steps",
                str(STEPS),
            ]
        )
        == 0
    )
    with safe_open(str(tmp_path / "out" / "lora.safetensors"), "pt") as f:
        resolved["loraforge-train"] = json.loads(f.metadata()["loraforge.training_args"])

    want = _comparable(resolved["loraforge-train"])
    for path, args in resolved.items():
        assert _comparable(args) == want, path
    # ... and what they agree on is the SDXL family's defaults
    assert (want["rank"], want["alpha"], want["learning_rate"], want["lr_scheduler"]) == (
        32,
        16.0,
        1e-4,
        "cosine",
    )
    assert (want["steps"], want["validation_split"], want["steps_per_epoch"]) == (STEPS, 0.9, 1)
    assert want["checkpoint_every"] == want["eval_every"] == 1  # about four per run
