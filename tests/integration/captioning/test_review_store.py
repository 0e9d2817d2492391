"""Captions in the real object store: versions, approval, and re-runs that never overwrite a
person's work."""

from __future__ import annotations

import pytest

from loraforge.captioning.captioner import CaptionOptions, caption_clips
from loraforge.captioning.dataset import read_dataset
from loraforge.captioning.review import CaptionReviewStore
from loraforge.captioning.sources import AttributeSource, ClipInput
from loraforge.runtime.keys import ProjectRef
from loraforge.runtime.storage import Bucket

PROJECT = ProjectRef("acme", "jane")
DS = "ds-0123456789abcdef0123"


def _run(metrics: list[dict], trigger: str = "ohwx_woman"):
    clips = [ClipInput(m["clip_id"], metrics=m) for m in metrics]
    return caption_clips(clips, [AttributeSource()], CaptionOptions(trigger, class_noun="woman"))


def _store_run(review: CaptionReviewStore, run) -> int:
    written = 0
    for c in run.captions:
        written += review.save_generated(
            c.clip_id, c.text, author="machine:attributes", slots=c.slots
        )[1]
    return written


def test_edited_and_approved_captions_survive_a_rerun(store) -> None:
    metrics = [
        {"clip_id": f"c{i}", "angle_bucket": "frontal", "expression": "smiling"} for i in range(3)
    ]
    review = CaptionReviewStore(store, PROJECT, DS)
    assert _store_run(review, _run(metrics)) == 3
    assert store.exists(Bucket.DATASETS, f"acme/jane/datasets/{DS}/captions/c0.json")

    edited = review.edit("c0", "ohwx_woman, woman, laughing, red scarf", user="ann")
    review.approve("c1", user="bob")
    assert [v.author for v in edited.versions] == ["machine:attributes", "user:ann"]

    # a re-run with different measurements: only the untouched caption changes
    metrics2 = [{**m, "expression": "neutral"} for m in metrics]
    assert _store_run(review, _run(metrics2)) == 1
    texts = review.texts()
    assert texts["c0"] == "ohwx_woman, woman, laughing, red scarf"
    assert texts["c1"] == "ohwx_woman, woman, smiling, front view"
    assert texts["c2"] == "ohwx_woman, woman, neutral expression, front view"
    c2 = review.get("c2")
    assert [v.text for v in c2.versions] == [
        "ohwx_woman, woman, smiling, front view",
        "ohwx_woman, woman, neutral expression, front view",
    ]
    # the same run again (a redelivered job) writes nothing
    assert _store_run(review, _run(metrics2)) == 0
    # every version is kept; reverting is a new version
    back = review.revert("c0", 0, user="ann")
    assert back.text == "ohwx_woman, woman, smiling, front view" and len(back.versions) == 3
    assert review.get("c1").approved and review.get("c1").approved_by == "bob"


def test_read_dataset_from_curation_layout(store) -> None:
    prefix = f"acme/jane/datasets/{DS}"
    store.put_json(
        Bucket.DATASETS,
        f"{prefix}/manifest.json",
        {
            "clips": [
                {
                    "clip_id": "a",
                    "angle_bucket": "profile_left",
                    "largest_face_ratio": 0.5,
                    "decision": "keep",
                },
                {"clip_id": "b", "angle_bucket": "frontal", "decision": "keep"},
                {"clip_id": "z", "decision": "reject"},
            ]
        },
    )
    store.put_json(
        Bucket.DATASETS,
        f"{prefix}/dataset.json",
        {
            "id": DS,
            "lora_type": "character",
            "manifest": "manifest.json",
            "selected": [
                {
                    "clip_id": "a",
                    "key": "acme/jane/clips/s1/a.mp4",
                    "keyframe_keys": ["acme/jane/clips/s1/a_0.jpg"],
                },
                {"clip_id": "b", "key": "acme/jane/clips/s1/b.mp4"},
            ],
        },
    )
    ds = read_dataset(store, PROJECT, DS)
    assert [c.clip_id for c in ds.clips] == ["a", "b"]
    assert ds.clips[0].metrics["angle_bucket"] == "profile_left" and ds.clips[0].keyframe_keys
    run = _run([c.metrics | {"clip_id": c.clip_id} for c in ds.clips])
    assert run.captions[0].text == "ohwx_woman, woman, profile view, close-up"


class _Ctx:
    def __init__(self):
        self.reports: list[float] = []

    async def progress(self, fraction: float, message: str = "", **_) -> None:
        self.reports.append(fraction)


async def test_worker_captions_a_dataset_and_keeps_edits(store, tmp_path) -> None:
    from PIL import Image

    from loraforge.captioning.worker import CAPTIONED_EVENT, CaptioningWorker
    from loraforge.runtime.jobs import Job
    from loraforge.runtime.params import CaptioningParams

    prefix = f"acme/jane/datasets/{DS}"
    Image.new("RGB", (64, 64), (20, 40, 200)).save(tmp_path / "kf.jpg")
    store.put_file(Bucket.CLIPS, "acme/jane/clips/s1/a_0.jpg", tmp_path / "kf.jpg")
    store.put_json(
        Bucket.DATASETS,
        f"{prefix}/manifest.json",
        {
            "clips": [
                {
                    "clip_id": "a",
                    "angle_bucket": "frontal",
                    "largest_face_ratio": 0.3,
                    "lighting": "studio",
                }
            ]
        },
    )
    store.put_json(
        Bucket.DATASETS,
        f"{prefix}/dataset.json",
        {
            "id": DS,
            "lora_type": "character",
            "selected": [
                {
                    "clip_id": "a",
                    "key": "acme/jane/clips/s1/a.mp4",
                    "keyframe_keys": ["acme/jane/clips/s1/a_0.jpg"],
                }
            ],
        },
    )
    params = CaptioningParams(dataset_id=DS, trigger="ohwx_woman").model_dump(mode="json")
    job = Job(id="j1", kind="captioning", tenant="acme", project="jane", params=params)
    worker = CaptioningWorker(store)
    outcome = await worker(job, _Ctx())
    assert outcome.events[0].type == CAPTIONED_EVENT and outcome.result["written"] == 1
    review = CaptionReviewStore(store, PROJECT, DS)
    assert review.texts()["a"] == (
        "ohwx_woman, person, front view, medium close-up, soft studio lighting, blue tones"
    )
    assert review.load_run()["trigger"] == "ohwx_woman"
    review.edit("a", "ohwx_woman, woman, blue backdrop")
    again = await worker(job, _Ctx())
    assert (
        again.result["written"] == 0 and review.texts()["a"] == "ohwx_woman, woman, blue backdrop"
    )
    bad = Job(
        id="j2",
        kind="captioning",
        tenant="acme",
        project="jane",
        params={**params, "trigger": "fire"},
    )
    import pytest

    from loraforge.runtime.errors import InvalidInput

    with pytest.raises(InvalidInput, match="not a rare token"):
        await worker(bad, _Ctx())


async def test_review_through_grpc(store, settings) -> None:
    """List, edit and approve over real gRPC; an edit without the trigger is refused."""
    import grpc

    from loraforge.captioning.main import mount
    from loraforge.runtime.host import ServiceProcess
    from loraforge.v1 import captioning_pb2, captioning_pb2_grpc, common_pb2

    review = CaptionReviewStore(store, PROJECT, DS)
    metrics = [
        {"clip_id": f"c{i}", "angle_bucket": "frontal", "expression": "smiling"} for i in range(2)
    ]
    run = _run(metrics)
    _store_run(review, run)
    review.save_run(
        {
            "trigger": run.trigger,
            "lora_type": run.lora_type,
            "template": run.template,
            "shared": run.shared,
        }
    )
    proc = ServiceProcess("captioning", settings, mount, drain_delay_s=0)
    await proc.start()
    try:
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{proc.port}")
        stub = captioning_pb2_grpc.CaptioningServiceStub(channel)
        scope = common_pb2.ProjectScope(tenant="acme", project="jane")
        listed = await stub.ListCaptions(
            captioning_pb2.ListCaptionsRequest(scope=scope, dataset_id=DS), timeout=10
        )
        assert [c.clip_id for c in listed.captions] == ["c0", "c1"]
        edited = await stub.EditCaption(
            captioning_pb2.EditCaptionRequest(
                scope=scope,
                dataset_id=DS,
                clip_id="c0",
                text="ohwx_woman, woman, laughing, red scarf",
                user="ann",
                approve=True,
            ),
            timeout=10,
        )
        assert edited.approved and edited.approved_by == "ann" and len(edited.versions) == 2
        assert edited.versions[0].author.startswith("machine")
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.EditCaption(
                captioning_pb2.EditCaptionRequest(
                    scope=scope, dataset_id=DS, clip_id="c1", text="a woman laughing"
                ),
                timeout=10,
            )
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "ohwx_woman" in info.value.details()
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.ApproveCaption(
                captioning_pb2.ApproveCaptionRequest(scope=scope, dataset_id=DS, clip_id="nope"),
                timeout=10,
            )
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
        approved = await stub.ApproveCaption(
            captioning_pb2.ApproveCaptionRequest(
                scope=scope, dataset_id=DS, clip_id="c1", user="bob"
            ),
            timeout=10,
        )
        assert approved.approved
        assert review.get("c0").text == "ohwx_woman, woman, laughing, red scarf"
        await channel.close()
    finally:
        await proc.stop()


async def test_dataset_curated_starts_captioning_only_with_project_defaults(
    store, settings, bus
) -> None:
    import asyncio

    from loraforge.captioning.auto import save_defaults
    from loraforge.captioning.main import mount
    from loraforge.runtime.events import Event
    from loraforge.runtime.host import ServiceProcess

    proc = ServiceProcess("captioning", settings, mount, drain_delay_s=0)
    await proc.start()
    try:
        other = ProjectRef("acme", "nodefaults")
        await bus.publish(
            Event(
                type="dataset.curated",
                tenant="acme",
                project="nodefaults",
                data={"dataset_id": DS, "selected": 3},
            )
        )
        save_defaults(store, PROJECT, trigger="ohwx_woman", class_noun="woman")
        event = Event(
            type="dataset.curated",
            tenant="acme",
            project="jane",
            data={"dataset_id": DS, "selected": 3},
        )
        await bus.publish(event)
        await bus.publish(event)  # a duplicate publish, and later a redelivery, start one job
        jobs = proc.clients.jobs
        for _ in range(100):
            started = await jobs.list("acme", "jane", kind="captioning")
            if started:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)
        started = await jobs.list("acme", "jane", kind="captioning")
        assert len(started) == 1
        assert (
            started[0].params["trigger"] == "ohwx_woman" and started[0].params["dataset_id"] == DS
        )
        assert await jobs.list(other.tenant, other.project, kind="captioning") == []
    finally:
        await proc.stop()


def test_defaults_are_validated(store) -> None:
    from loraforge.captioning.auto import load_defaults, save_defaults
    from loraforge.runtime.errors import InvalidInput

    with pytest.raises(InvalidInput, match="source"):
        save_defaults(store, PROJECT, trigger="ohwx_woman", source="telepathy")
    assert load_defaults(store, PROJECT) is None
