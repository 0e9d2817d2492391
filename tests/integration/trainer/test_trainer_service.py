"""The trainer service end to end on a tiny preset: a captioned dataset in the real object
store -> StartTraining -> a LoRA (last/best), checkpoints and run.json in `loras/`."""

from __future__ import annotations

import asyncio

import grpc
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from loraforge.captioning.review import CaptionReviewStore
from loraforge.runtime.events import Delivery, Event
from loraforge.runtime.host import ServiceProcess
from loraforge.runtime.jobs import JobState
from loraforge.runtime.keys import ProjectRef
from loraforge.runtime.storage import Bucket
from loraforge.trainer.main import mount
from loraforge.trainer.synthetic import TRIGGER, write_video_dataset
from loraforge.v1 import common_pb2, trainer_pb2, trainer_pb2_grpc

pytestmark = pytest.mark.timeout(240)

TENANT, PROJECT = "acme", "jane"
DS = "ds-train0000000000000001"


def seed_captioned_dataset(store, tmp_path, dataset_id: str = DS, clips: int = 2) -> None:
    """Clips in `clips/`, dataset.json (curation's commit marker) and one caption record per
    clip plus the captioning run record (trigger) in `datasets/`."""
    local = write_video_dataset(tmp_path / "local", clips=clips, frames=9, size=(64, 48))
    ref = ProjectRef(TENANT, PROJECT)
    review = CaptionReviewStore(store, ref, dataset_id)
    selected = []
    for video in sorted((local / "videos").glob("*.mp4")):
        cid = video.stem.replace("_", "-")
        key = f"{TENANT}/{PROJECT}/clips/src0/{cid}.mp4"
        store.put_file(Bucket.CLIPS, key, video, content_type="video/mp4")
        selected.append({"clip_id": cid, "key": key})
        text = (local / "captions" / f"{video.stem}.txt").read_text()
        review.save_generated(cid, text, author="machine:attributes")
    review.save_run({"trigger": TRIGGER, "lora_type": "effect"})
    store.put_json(
        Bucket.DATASETS,
        f"{TENANT}/{PROJECT}/datasets/{dataset_id}/dataset.json",
        {"id": dataset_id, "lora_type": "effect", "selected": selected},
    )


@pytest.fixture
async def trainer_service(settings):
    proc = ServiceProcess("trainer", settings, mount, drain_delay_s=0)
    await proc.start()
    try:
        yield proc
    finally:
        await proc.stop()


async def _wait_terminal(jobs, job_id, timeout=180):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        job = await jobs.get(TENANT, PROJECT, job_id)
        if job.state.terminal:
            return job
        assert asyncio.get_running_loop().time() < deadline, f"stuck in {job.state}: {job.message}"
        await asyncio.sleep(0.3)


def _struct(values: dict):
    from loraforge.runtime.servicers import struct_from_dict

    return struct_from_dict(values)


def _request(request_id: str, **run):
    values = {"dataset_id": DS, "base_preset": "tiny-wan2.1-t2v", "steps": 4, "rank": 4, "seed": 1}
    values.update(run)
    return trainer_pb2.StartTrainingRequest(
        scope=common_pb2.ProjectScope(tenant=TENANT, project=PROJECT),
        request_id=request_id,
        run=common_pb2.TrainingRun(**values),
    )


async def test_training_job_stores_a_loadable_lora_and_run_record(
    trainer_service, store, bus, tmp_path
) -> None:
    seed_captioned_dataset(store, tmp_path)
    completed: list[Event] = []

    async def record(event: Event, delivery: Delivery) -> None:
        completed.append(event)

    await bus.subscribe("test-training-completed", "training.completed", record)
    progress: list[Event] = []

    async def record_progress(event: Event, delivery: Delivery) -> None:
        progress.append(event)

    await bus.subscribe("test-training-progress", "training.progress", record_progress)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{trainer_service.port}")
    stub = trainer_pb2_grpc.TrainerServiceStub(channel)
    job = await stub.StartTraining(_request("train-1"), timeout=10)
    done = await _wait_terminal(trainer_service.clients.jobs, job.id)
    assert done.state is JobState.SUCCEEDED, done.message

    prefix = f"{TENANT}/{PROJECT}/runs/{job.id}"
    assert done.result["run_prefix"] == prefix
    assert done.result["last_key"] == f"{prefix}/last.safetensors"
    assert done.result["best_key"] == f"{prefix}/best.safetensors"
    for which in ("last", "best"):
        path = store.download(
            Bucket.LORAS, f"{prefix}/{which}.safetensors", tmp_path / f"{which}.safetensors"
        )
        with safe_open(str(path), "pt") as f:
            meta = f.metadata()
            assert meta["loraforge.base_preset"] == "tiny-wan2.1-t2v"
            assert meta["loraforge.trigger"] == TRIGGER
            assert meta["loraforge.dataset_id"] == DS
            assert len(list(f.keys())) > 0
    run = store.get_json(Bucket.LORAS, f"{prefix}/run.json")
    assert run["steps"] == 4 and len(run["loss_history"]) == 4
    assert run["trigger"] == TRIGGER and run["dataset_hash"]
    assert run["checkpoints"], "a 4-step run keeps at least one checkpoint"
    for key in run["checkpoints"].values():
        assert store.exists(Bucket.LORAS, key) and "/checkpoints/step-" in key
    kinds = {a.kind for a in done.artifacts}
    assert {"lora", "checkpoint", "manifest", "preview", "report"} <= kinds

    # likeness evaluation: the tiny random model renders no face, so the choice falls back to
    # the lowest held-out validation loss, which every checkpoint has (eval_every = interval)
    best_step, reason = done.result["best_step"], done.result["best_reason"]
    assert run["best_step"] == best_step and run["best_reason"] == reason
    assert "likeness is unmeasurable" in reason and "validation loss" in reason
    table = run["evaluation"]["checkpoints"]
    assert [r["step"] for r in table] == sorted(int(s) for s in run["checkpoints"]) + [4]
    assert all(r["val_loss"] is not None for r in table)
    assert [r["step"] for r in table if r["chosen"]] == [best_step]
    assert best_step == min(table, key=lambda r: (r["val_loss"], r["step"]))["step"]
    assert done.result["report_key"] == run["report_key"] == f"{prefix}/report/report.html"
    # strength: no face anywhere, so the documented default of an effect LoRA (1.0), said so
    weight, why = done.result["recommended_weight"], done.result["strength_reason"]
    assert weight == run["recommended_weight"] == run["evaluation"]["recommended_weight"] == 1.0
    assert why == run["strength_reason"] == run["evaluation"]["strength_reason"]
    assert "unmeasurable" in why and "effect" in why
    assert isinstance(run["evaluation"]["strengths"], list)
    for name in ("report.html", "report.md", "checkpoints.csv", "collapse.png"):
        assert store.exists(Bucket.LORAS, f"{prefix}/report/{name}"), name
    for r in table:  # each of the 4 previews of a video LoRA: still, clip, contact strip
        keys = run["evaluation"]["previews"][str(r["step"])]
        assert sorted(k.rsplit("/", 1)[1] for k in keys) == sorted(
            f"{i:02d}{suffix}" for i in range(4) for suffix in (".png", ".mp4", "_strip.png")
        )
        assert store.exists(Bucket.LORAS, f"{prefix}/previews/step-{r['step']}/00.mp4")
    # the validation loss was measured on a held-out clip (two clips: one trains)
    assert run["validation"]["source"] == "split" and len(run["validation"]["clips"]) == 1
    assert run["samples"] == 1 and set(run["metrics"]["eval_bands"]) == set(
        run["metrics"]["eval_losses"]
    )
    # previews were rendered while training, announced with their keys, and the evaluation
    # scored those very files (same keys, not uploaded again)
    announced = [e.data["result"] for e in progress if "preview_keys" in e.data.get("result", {})]
    assert announced, [e.data for e in progress]
    for step, keys in announced[-1]["previews"].items():
        assert keys == run["evaluation"]["previews"][step]
        assert all(store.exists(Bucket.LORAS, k) for k in keys)
    preview_artifacts = [a.key for a in done.artifacts if a.kind == "preview"]
    assert len(preview_artifacts) == len(set(preview_artifacts)) == 3 * 4 * len(table)
    best = load_file(str(tmp_path / "best.safetensors"))
    if best_step == run["steps"]:
        chosen = load_file(str(tmp_path / "last.safetensors"))
    else:  # the checkpoint's trainer tensors in the LoRA file layout (wan's to_comfy)
        from loraforge.trainer.wan import to_comfy

        raw = load_file(
            str(
                store.download(
                    Bucket.LORAS,
                    run["checkpoints"][str(best_step)],
                    tmp_path / "chosen.safetensors",
                )
            )
        )
        chosen = to_comfy(
            {k.split("/", 1)[1].replace(".default", ""): v for k, v in raw.items()}, run["alpha"]
        )
    assert set(best) == set(chosen)
    assert all(torch.equal(best[k], chosen[k]) for k in best)
    with safe_open(str(tmp_path / "best.safetensors"), "pt") as f:
        assert f.metadata()["loraforge.checkpoint_step"] == str(best_step)

    for _ in range(50):
        if completed:
            break
        await asyncio.sleep(0.1)
    assert [e.id for e in completed] == [f"training-completed-{job.id}"]
    assert completed[0].data["last_key"] == done.result["last_key"]

    # The same request id answers with the same job; nothing is trained again.
    again = await stub.StartTraining(_request("train-1"), timeout=10)
    assert again.id == job.id and again.state == common_pb2.JOB_STATE_SUCCEEDED
    await channel.close()


async def test_unknown_preset_and_kubernetes_are_refused_at_start(trainer_service, store) -> None:
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{trainer_service.port}")
    stub = trainer_pb2_grpc.TrainerServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.StartTraining(_request("bad-1", base_preset="not-a-model"), timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "unknown base preset 'not-a-model'" in err.value.details()
    request = _request("k8s-1")
    request.on_kubernetes = True
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.StartTraining(request, timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "on_kubernetes" in err.value.details()
    # a typo or a wrong value in extra is refused before a job exists, naming the option
    from google.protobuf import struct_pb2

    for extra, says in (
        ({"blok_swap": 20}, "unknown training option(s) blok_swap"),
        ({"block_swap": -1}, "block_swap=-1"),
        ({"eval_prompts": [""]}, "eval_prompts: a prompt is empty"),
    ):
        request = _request("extra-1")
        struct = struct_pb2.Struct()
        struct.update(extra)
        request.run.extra.CopyFrom(struct)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.StartTraining(request, timeout=10)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert says in err.value.details()
    assert await trainer_service.clients.jobs.list(TENANT, PROJECT) == []
    await channel.close()


async def test_named_validation_clips_are_the_validation_set(
    trainer_service, store, tmp_path
) -> None:
    """extra.validation_clips: those clips validate (seed 004's explicit validation set) and
    are not trained on; a clip that is not in the dataset is refused with its name."""
    seed_captioned_dataset(store, tmp_path, clips=3)
    jobs = trainer_service.clients.jobs
    async with grpc.aio.insecure_channel(f"127.0.0.1:{trainer_service.port}") as channel:
        stub = trainer_pb2_grpc.TrainerServiceStub(channel)
        req = _request(
            "val-1", steps=2, extra=_struct({"validation_clips": ["clip-002"], "evaluate": False})
        )
        job = await stub.StartTraining(req, timeout=10)
        bad = await stub.StartTraining(
            _request("val-2", steps=2, extra=_struct({"validation_clips": ["clip-009"]})),
            timeout=10,
        )
    done = await _wait_terminal(jobs, job.id)
    assert done.state is JobState.SUCCEEDED, done.message
    run = store.get_json(Bucket.LORAS, f"{TENANT}/{PROJECT}/runs/{job.id}/run.json")
    assert run["validation"]["source"] == "validation_dataset"
    assert run["validation"]["clips"] == ["videos/clip-002.mp4"]
    assert run["samples"] == 2 and run["validation"]["training_clips"] == 2
    failed = await _wait_terminal(jobs, bad.id)
    assert failed.state is JobState.FAILED and "clip-009" in failed.message
