"""A redelivered training job resumes from the checkpoint its earlier delivery uploaded, and
the latent / text cache lives in the object store, shared by the tenant's runs."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
import torch
from google.protobuf import struct_pb2
from safetensors.torch import load_file

from loraforge.runtime.jobs import JobState, new_job_id
from loraforge.runtime.keys import ProjectRef
from loraforge.runtime.params import TrainingParams
from loraforge.runtime.storage import Bucket
from loraforge.trainer.cache import ObjectStoreCacheStore
from loraforge.trainer.run.context import Workspace, run_config
from loraforge.trainer.run.fetch import fetch_dataset
from loraforge.trainer.run.layout import run_prefix
from loraforge.trainer.run.sync import CheckpointSync
from loraforge.trainer.train import STATE_FILE, Trainer
from loraforge.v1 import common_pb2, trainer_pb2, trainer_pb2_grpc

from .test_trainer_service import (  # noqa: F401 (fixture)
    DS,
    PROJECT,
    TENANT,
    _wait_terminal,
    seed_captioned_dataset,
    trainer_service,
)

pytestmark = pytest.mark.timeout(300)

RUN = {"dataset_id": DS, "base_preset": "tiny-wan2.1-t2v", "steps": 4, "rank": 4, "seed": 3}


def _request(request_id: str) -> trainer_pb2.StartTrainingRequest:
    extra = struct_pb2.Struct()
    extra.update({"evaluate": False})
    return trainer_pb2.StartTrainingRequest(
        scope=common_pb2.ProjectScope(tenant=TENANT, project=PROJECT),
        request_id=request_id,
        run=common_pb2.TrainingRun(extra=extra, **RUN),
    )


async def _train(stub, request_id: str, jobs):
    job = await stub.StartTraining(_request(request_id), timeout=10)
    done = await _wait_terminal(jobs, job.id)
    assert done.state is JobState.SUCCEEDED, done.message
    return done


async def test_redelivered_job_resumes_from_its_uploaded_checkpoint(
    trainer_service,  # noqa: F811 (the fixture imported above)
    store,
    tmp_path: Path,
) -> None:
    seed_captioned_dataset(store, tmp_path)
    ref = ProjectRef(TENANT, PROJECT)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{trainer_service.port}")
    stub = trainer_pb2_grpc.TrainerServiceStub(channel)
    jobs = trainer_service.clients.jobs

    # The uninterrupted run.
    whole = await _train(stub, "resume-reference", jobs)
    whole_run = store.get_json(Bucket.LORAS, f"{whole.result['run_prefix']}/run.json")
    assert whole_run["resumed_from_step"] == 0
    # The loss curve is stored even with evaluation off.
    assert whole_run["loss_curve_key"] == f"{whole.result['run_prefix']}/report/loss.png"
    assert store.get_bytes(Bucket.LORAS, whole_run["loss_curve_key"])[:4] == b"\x89PNG"
    # Only the newest checkpoint keeps its (large) resume state in the object store.
    steps = sorted(int(s) for s in whole_run["checkpoints"])
    prefix = whole.result["run_prefix"]
    assert store.exists(Bucket.LORAS, f"{prefix}/checkpoints/step-{steps[-1]}/{STATE_FILE}")
    assert all(
        not store.exists(Bucket.LORAS, f"{prefix}/checkpoints/step-{s}/{STATE_FILE}")
        for s in steps[:-1]
    )

    # An earlier delivery of another job crashed after uploading its step-2 checkpoint: made
    # here with the worker's own parts: dataset fetch, run config and checkpoint sync.
    job_id = new_job_id("resume-crashed", scope=f"{TENANT}/{PROJECT}/trainer")
    params = TrainingParams.model_validate({**RUN, "extra": {}})
    dataset = fetch_dataset(store, ref, params, tmp_path / "crashed" / "dataset")
    workspace = Workspace(tmp_path / "crashed")
    config = run_config(params, dataset, tmp_path / "crashed", workspace)
    result = Trainer(config, should_cancel=lambda step: step >= 2).run()
    assert result.status == "cancelled" and result.step == 2
    sync = CheckpointSync(store, run_prefix(ref, job_id), Path(config.output_dir) / "checkpoints")
    sync.upload_new()

    resumed = await _train(stub, "resume-crashed", jobs)
    assert resumed.id == job_id
    run = store.get_json(Bucket.LORAS, f"{resumed.result['run_prefix']}/run.json")
    assert run["resumed_from_step"] == 2 and run["steps"] == 4
    assert len(run["loss_history"]) == 2
    assert run["loss_history"] == pytest.approx(whole_run["loss_history"][2:], rel=1e-6)
    got = load_file(str(store.download(Bucket.LORAS, resumed.result["last_key"], tmp_path / "a")))
    ref_lora = load_file(
        str(store.download(Bucket.LORAS, whole.result["last_key"], tmp_path / "b"))
    )
    assert got.keys() == ref_lora.keys()
    for k in got:  # bit-identical on CPU, as the local resume is
        assert torch.equal(got[k], ref_lora[k]), k
    await channel.close()


async def test_cache_entries_are_shared_through_the_object_store(
    trainer_service,  # noqa: F811 (the fixture imported above)
    store,
    tmp_path: Path,
) -> None:
    seed_captioned_dataset(store, tmp_path)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{trainer_service.port}")
    stub = trainer_pb2_grpc.TrainerServiceStub(channel)
    first = await _train(stub, "cache-first", trainer_service.clients.jobs)
    run1 = store.get_json(Bucket.LORAS, f"{first.result['run_prefix']}/run.json")
    entries = list(store.list(Bucket.MODELS, f"{TENANT}/cache/"))
    kinds = {e.key.split("/")[2] for e in entries}
    assert kinds == {"latents", "text"}
    # 2 clips + their captions, encoded (or found in the replica's local copy) and published;
    # another replica (empty local dir) reads them from the object store instead.
    assert run1["cache"]["uploads"] == len(entries)
    assert run1["cache"]["misses"] + run1["cache"]["local_hits"] == len(entries)
    fresh = ObjectStoreCacheStore(store, f"{TENANT}/cache", tmp_path / "replica")
    for e in entries:
        kind, key = e.key.split("/")[2], Path(e.key).stem
        assert fresh.get(kind, key) is not None
    assert fresh.hits == len(entries) and fresh.misses == 0
    assert fresh.get("latents", "0" * 64) is None and fresh.misses == 1
    # Another tenant does not see them.
    other = ObjectStoreCacheStore(store, "other-tenant/cache", tmp_path / "other")
    e = entries[0]
    assert other.get(e.key.split("/")[2], Path(e.key).stem) is None

    second = await _train(stub, "cache-second", trainer_service.clients.jobs)
    run2 = store.get_json(Bucket.LORAS, f"{second.result['run_prefix']}/run.json")
    assert run2["cache"]["misses"] == 0 and run2["cache"]["uploads"] == 0
    assert run2["cache"]["hits"] + run2["cache"]["local_hits"] == len(entries)
    await channel.close()
