"""Ingest then curate on the real stack: curation reads ingest's analysis proxies (never the
clips), two curation processes share one job's clips and agree with one in-process run, and a
second start for the same dataset follows the running job instead of curating twice."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import grpc
import pytest

from loraforge.curation.people import PeopleDetector
from loraforge.curation.pipeline import MediaItem, curate
from loraforge.curation.policy import CurationPolicy
from loraforge.curation.worker import discover_clips
from loraforge.ingest.main import mount as mount_ingest
from loraforge.runtime.host import ServiceProcess
from loraforge.runtime.keys import ProjectRef
from loraforge.runtime.servicers import struct_from_dict
from loraforge.runtime.storage import Bucket
from loraforge.v1 import common_pb2, curation_pb2, ingest_pb2, ingest_pb2_grpc

from .seed import PROJECT, TENANT, M
from .test_curation_service import SCOPE, collect, wait_job

sys.path.insert(0, str(Path(__file__).parents[2] / "unit" / "ingest"))
from footage import encode

OVERRIDES = {"min_short_side_px": 256}  # 480x360 footage; the default 8 frames: the proxy's
SHOT_FRAMES = 48  # 4 s at 12 fps: a street-camera rate, below the 16 fps training rate


def _source_frames():
    # three shots, hard cuts: the astronaut alone, two people, Grace Hopper alone
    for fn in (M.astronaut_frame, M.two_people_frame, M.hopper_frame):
        for t in range(SHOT_FRAMES):
            yield fn(t)[:, :, ::-1]  # encode() takes RGB


@pytest.fixture
async def ingested(settings, store, tmp_path):
    """The project after a real ingest job of one 12 s, 12 fps source (three shots)."""
    src = tmp_path / "street.mp4"
    encode(_source_frames(), src, (M.W, M.H), 12.0)
    key = f"{TENANT}/{PROJECT}/sources/street.mp4"
    await asyncio.to_thread(store.put_file, Bucket.RAW, key, src)
    proc = ServiceProcess("ingest", settings, mount_ingest, drain_delay_s=0.0)
    await proc.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{proc.port}") as channel:
            stub = ingest_pb2_grpc.IngestServiceStub(channel)
            job = await stub.StartIngest(
                ingest_pb2.StartIngestRequest(scope=SCOPE, request_id="i1", sources=[key]),
                timeout=10,
            )
            done = await wait_job(stub, job.id, timeout=60)
    finally:
        await proc.stop()
    assert done.state == common_pb2.JOB_STATE_SUCCEEDED, done.message
    clips = await asyncio.to_thread(discover_clips, store, ProjectRef(TENANT, PROJECT))
    assert len(clips) == 3 and all(c.analysis_key for c in clips)
    manifest = store.get_json(Bucket.CLIPS, done.result["manifests"][0])
    assert manifest["frame_rate"]["below_target"] and manifest["frame_rate"]["clip_fps"] == [12.0]
    # keep the clips and proxies locally, then break the stored clips: a curation that decoded
    # a clip instead of reading its proxy would now fail
    local = tmp_path / "local"
    items = []
    for c in clips:
        path, proxy = local / f"{c.clip_id}.mp4", local / f"{c.clip_id}_analysis.zip"
        store.download(Bucket.CLIPS, c.key, path)
        store.download(Bucket.CLIPS, c.analysis_key, proxy)
        store.put_bytes(Bucket.CLIPS, c.key, b"not a video any more", content_type="video/mp4")
        items.append((c, path, proxy))
    return items


def _start(request_id: str) -> curation_pb2.StartCurationRequest:
    return curation_pb2.StartCurationRequest(
        scope=SCOPE, request_id=request_id, policy_overrides=struct_from_dict(OVERRIDES)
    )


async def test_two_workers_share_the_clips_and_agree_with_one(
    curation_service, store, bus, ingested, monkeypatch
):
    made: list[PeopleDetector] = []
    real_init = PeopleDetector.__init__

    def counted(self: PeopleDetector, *args: object, **kwargs: object) -> None:
        made.append(self)
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(PeopleDetector, "__init__", counted)
    tasks = await collect(bus, "curation.measure", "test-measure-tasks")  # sees every task
    # two clips at a time each: the three clips cannot all go to one process
    procs = [await curation_service(auto_curate=False, measure_concurrency=2) for _ in range(2)]
    stub = procs[0][1]
    job = await stub.StartCuration(_start("user-1"), timeout=10)
    # a second start for the same clips and policy while the first runs: the same job
    again = await procs[1][1].StartCuration(_start("user-2"), timeout=10)
    assert again.id == job.id
    done = await wait_job(stub, job.id, timeout=90)
    assert done.state == common_pb2.JOB_STATE_SUCCEEDED, done.message
    listed = (await stub.ListJobs(common_pb2.ListJobsRequest(scope=SCOPE), timeout=5)).jobs
    assert {j.id for j in listed} == {job.id}

    prefix = f"{TENANT}/{PROJECT}/datasets/{done.result['dataset_id']}"
    record = store.get_json(Bucket.DATASETS, f"{prefix}/dataset.json")
    assert len(record["measured_by"]) == 2, record["measured_by"]  # both processes measured
    assert sum(record["measured_by"].values()) == 3
    # a worker loads its person detector's models once, not for every clip it measures
    assert 1 <= len(made) <= 2, len(made)
    stored = {o.key.removeprefix(prefix + "/") for o in store.list(Bucket.DATASETS, prefix + "/")}
    assert not {k for k in stored if k.startswith("_")}  # claim and per-clip results cleaned up
    rows = {
        r["clip_id"]: r for r in store.get_json(Bucket.DATASETS, f"{prefix}/manifest.json")["clips"]
    }

    # one process, in-process, on the same proxies: the same metrics and decisions, exactly
    policy = CurationPolicy(**OVERRIDES)
    one = curate([MediaItem(p, c.clip_id, c.source_id, analysis=a) for c, p, a in ingested], policy)
    for c in one.clips:
        row = rows[c.metrics.clip_id]
        assert (row["decision"] == "keep") == c.decision.keep
        assert row["reason_codes"] == c.decision.reason_codes and row["selected"] == c.selected
        for k in (
            "people_count",
            "sharpness",
            "mean_luma",
            "face_sharpness",
            "largest_face_ratio",
            "blockiness",
            "motion",
            "phashes",
            "embedding",
        ):
            assert row[k] == getattr(c.metrics, k), k
    by_shot = sorted(rows.values(), key=lambda r: r["clip_id"])
    assert "people_count" in by_shot[1]["reason_codes"], by_shot[1]["reason_codes"]
    # two people alone in their shots: a character dataset keeps one identity (the larger
    # cluster; here a tie, broken the same way in every run) and rejects the other
    assert sorted(r["reason_codes"] for r in (by_shot[0], by_shot[2])) == [
        [],
        ["identity_mismatch"],
    ]
    # the 12 fps source kept its rate and every clip says so (flagged, not rejected)
    assert all(r["fps"] == 12.0 and "low_frame_rate" in r["flag_codes"] for r in by_shot)
    assert record["flag_counts"]["low_frame_rate"] == 3

    # another selection of the same clips (a user's --target after the automatic curation):
    # a new dataset, decided from the stored measurements, nothing measured again
    other = await stub.StartCuration(
        curation_pb2.StartCurationRequest(
            scope=SCOPE,
            request_id="user-3",
            target_size=1,
            policy_overrides=struct_from_dict(OVERRIDES),
        ),
        timeout=10,
    )
    assert other.id != job.id
    redone = await wait_job(stub, other.id, timeout=30)
    assert redone.state == common_pb2.JOB_STATE_SUCCEEDED, redone.message
    assert redone.result["dataset_id"] != done.result["dataset_id"]
    record2 = store.get_json(
        Bucket.DATASETS, f"{TENANT}/{PROJECT}/datasets/{redone.result['dataset_id']}/dataset.json"
    )
    assert (
        record2["measured_by"] == record["measured_by"]
        and record2["counts"]["kept"] == record["counts"]["kept"]
    )
    assert sorted(t.data["job_id"] for t in tasks) == [job.id] * 3  # none for the second job

    # decoding the clips instead of reading the proxies decides the same
    decoded = curate([MediaItem(p, c.clip_id, c.source_id) for c, p, _ in ingested], policy)
    assert {
        c.metrics.clip_id: (c.decision.keep, c.decision.reason_codes) for c in decoded.clips
    } == {c.metrics.clip_id: (c.decision.keep, c.decision.reason_codes) for c in one.clips}
