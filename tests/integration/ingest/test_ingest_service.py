"""The ingest service end to end: StartIngest over gRPC -> worker -> clips, keyframes and
manifests in S3, a `clips.ingested` event on NATS; idempotent re-ingest, cancellation and
tenant isolation."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time

import grpc
import pytest
from footage import ShotSpec, ffmpeg, make_footage

from loraforge.ingest import layout
from loraforge.ingest.manifest import SourceManifest
from loraforge.ingest.upload import upload_local
from loraforge.ingest.worker import ingest_options, options_hash
from loraforge.runtime.job_service import JobService
from loraforge.runtime.keys import ProjectRef
from loraforge.runtime.params import IngestParams
from loraforge.runtime.servicers import dict_from_struct
from loraforge.runtime.storage import Bucket
from loraforge.v1 import common_pb2, ingest_pb2

from .conftest import PROJECT, SCOPE, TENANT

REF = ProjectRef(TENANT, PROJECT)
URL = "https://example.invalid/watch?v=nothing"


def _listing(store, bucket: Bucket) -> dict[str, str | None]:
    return {o.key: o.etag for o in store.list(bucket, REF.prefix)}


def _start(sources: list[str], request_id: str, **kw) -> ingest_pb2.StartIngestRequest:
    return ingest_pb2.StartIngestRequest(
        scope=SCOPE, request_id=request_id, sources=sources, min_s=2, max_s=3, fps=16, **kw
    )


def _by_file(result: dict, uploads) -> dict[str, dict]:
    names = {u.key: u.path.name for u in uploads}
    return {names.get(r["source"], r["source"]): r for r in result["sources"]}


async def test_batch_with_a_bad_file_succeeds_and_reingest_does_no_work_twice(
    ingest, store, media, tmp_path
):
    uploads = await asyncio.to_thread(upload_local, store, REF, [media])
    assert sorted(u.path.name for u in uploads) == [
        "cat.jpg",
        "empty.mp4",
        "notes.mp4",
        "two_shots.mp4",
    ]
    assert all(u.key.startswith(f"{REF.prefix}sources/{u.sha256}.") for u in uploads)
    sources = [u.key for u in uploads] + [URL]

    started = time.monotonic()
    job = await ingest.stub.StartIngest(_start(sources, "first"), timeout=5)
    job = await ingest.wait(job.id)
    assert job.state == common_pb2.JOB_STATE_SUCCEEDED, job.message
    result = dict_from_struct(job.result)
    per_file = _by_file(result, uploads)

    # The good video: one clip per shot, with three keyframes each; the photo: one item.
    video, cat = per_file["two_shots.mp4"], per_file["cat.jpg"]
    assert video["error"] is None and video["clips"] == 2
    assert cat["error"] is None and cat["clips"] == 1
    assert result["clips"] == 3
    # The bad files and the URL fail on their own, with their reasons.
    errors = {e["source"]: e for e in result["errors"]}
    notes, empty = per_file["notes.mp4"], per_file["empty.mp4"]
    assert errors[notes["source"]]["error_type"] == "UnsupportedFormat"
    assert errors[empty["source"]]["error_type"] == "EmptyFile"
    assert "empty" in errors[empty["source"]]["error"]
    assert errors[URL]["error_type"] in {"UrlSourceUnavailable", "UrlFetchFailed"}
    assert URL in errors[URL]["error"]
    assert len(result["errors"]) == 3

    # In the clips bucket: clips, keyframes and a manifest per source (also per bad file).
    clips = _listing(store, Bucket.CLIPS)
    sha16 = video["sha256"][:16]
    video_keys = sorted(k for k in clips if k.startswith(f"{REF.prefix}clips/{sha16}/"))
    mp4s = [k for k in video_keys if k.endswith(".mp4")]
    kfs = [k for k in video_keys if k.endswith(".jpg")]
    assert len(mp4s) == 2 and len(kfs) == 6
    for clip in mp4s:
        stem = clip[: -len(".mp4")]
        assert {f"{stem}_{label}.jpg" for label in ("first", "middle", "last")} <= set(kfs)
    assert sum(k.endswith(".png") for k in clips) == 1  # the normalised photo
    manifests = sorted(k for k in clips if k.endswith(".json"))
    assert len(manifests) == 4
    assert sorted(result["manifests"]) == manifests

    manifest = store.get_json(Bucket.CLIPS, video["manifest_key"])
    assert manifest["source_sha256"] == video["sha256"] and manifest["error"] is None
    assert manifest["probe"]["width"] == 128 and manifest["probe"]["height"] == 96
    assert len(manifest["shots"]) == 2
    assert sorted(c["key"] for c in manifest["clips"]) == mp4s
    for c in manifest["clips"]:
        assert 2.0 <= c["duration"] <= 3.0 + 1e-6
        assert set(c["keyframes"]) == {"first", "middle", "last"}
        assert all(k in clips for k in c["keyframe_keys"])
    bad = store.get_json(Bucket.CLIPS, notes["manifest_key"])
    assert bad["clips"] == [] and bad["error"]["type"] == "UnsupportedFormat"

    # The originals stay where they were uploaded (content-addressed, one object each).
    raw = _listing(store, Bucket.RAW)
    assert sorted(raw) == sorted(u.key for u in uploads)

    # Artifacts name clips, keyframes and the manifests of the sources that worked.
    kinds = {}
    for a in job.artifacts:
        kinds.setdefault(a.kind, set()).add(a.key)
    assert kinds["clip"] == set(mp4s) and kinds["keyframe"] == set(kfs) and len(kinds["photo"]) == 1
    assert kinds["manifest"] == {video["manifest_key"], cat["manifest_key"]}

    events = await ingest.wait_events(1)
    assert len(events) == 1
    assert events[0].data["job_id"] == job.id and events[0].data["clips"] == 3
    assert sorted(events[0].data["manifests"]) == sorted(
        [video["manifest_key"], cat["manifest_key"]]
    )
    assert events[0].tenant == TENANT and events[0].project == PROJECT
    first_run = time.monotonic() - started

    # --- the same footage again (one file under a new name, the same bytes): no work twice.
    copy = tmp_path / "renamed copy.mp4"
    shutil.copy(media / "two_shots.mp4", copy)
    again = await asyncio.to_thread(upload_local, store, REF, [media, copy])
    assert not any(u.created for u in again)
    assert {u.key for u in again} == {u.key for u in uploads}  # the copy is the same object
    # (for a pose LoRA: the type changes what curation does with the clips, not the clips)
    job2 = await ingest.stub.StartIngest(
        _start([u.key for u in again], "second", lora_type="pose"), timeout=5
    )
    assert job2.id != job.id
    job2 = await ingest.wait(job2.id)
    assert job2.state == common_pb2.JOB_STATE_SUCCEEDED, job2.message
    result2 = dict_from_struct(job2.result)
    assert all(r["reused"] for r in result2["sources"]), result2["sources"]
    assert result2["clips"] == 2 * 2 + 1  # the video twice (same source), the photo once
    assert {r["manifest_key"] for r in result2["sources"]} == set(manifests)
    assert _listing(store, Bucket.CLIPS) == clips  # no new objects, nothing rewritten
    assert _listing(store, Bucket.RAW) == raw
    assert store.get_json(Bucket.CLIPS, video["manifest_key"]) == manifest
    events = await ingest.wait_events(2)
    assert [e.data["job_id"] for e in events] == [job.id, job2.id]
    # the automatic curation of the second ingest gets its type; the first names none
    assert "curation" not in events[0].data and events[1].data["curation"] == {"lora_type": "pose"}
    # A retried StartIngest returns the same job, and its event is not published twice.
    assert (
        await ingest.stub.StartIngest(
            _start([u.key for u in again], "second", lora_type="pose"), timeout=5
        )
    ).id == job2.id
    await asyncio.sleep(0.5)
    assert len(ingest.events) == 2
    assert first_run < 40


async def test_a_job_where_every_file_fails_is_failed_with_each_reason(ingest, store, media):
    uploads = await asyncio.to_thread(
        upload_local, store, REF, [media / "notes.mp4", media / "empty.mp4"]
    )
    job = await ingest.stub.StartIngest(_start([u.key for u in uploads], "bad"), timeout=5)
    job = await ingest.wait(job.id)
    assert job.state == common_pb2.JOB_STATE_FAILED
    assert "no source could be ingested" in job.message
    assert all(u.key.rsplit("/", 1)[1] in job.message for u in uploads)  # each file's error
    result = dict_from_struct(job.result)
    assert sorted(e["error_type"] for e in result["errors"]) == ["EmptyFile", "UnsupportedFormat"]
    assert ingest.events == []


async def test_cancel_a_running_job(ingest, store, long_video):
    (upload,) = await asyncio.to_thread(upload_local, store, REF, [long_video])
    job = await ingest.stub.StartIngest(_start([upload.key], "long"), timeout=5)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        got = await ingest.stub.GetJob(
            common_pb2.GetJobRequest(scope=SCOPE, job_id=job.id), timeout=5
        )
        if got.state == common_pb2.JOB_STATE_RUNNING and got.progress > 0:
            break
        await asyncio.sleep(0.1)
    assert got.state == common_pb2.JOB_STATE_RUNNING, got
    asked = time.monotonic()
    await ingest.stub.CancelJob(common_pb2.CancelJobRequest(scope=SCOPE, job_id=job.id), timeout=5)
    final = await ingest.wait(job.id, timeout=20)
    assert final.state == common_pb2.JOB_STATE_CANCELLED, final.message
    assert time.monotonic() - asked < 5
    # Nothing was committed: no manifest for the cancelled source, no event.
    assert not any(k.endswith(".json") for k in _listing(store, Bucket.CLIPS))
    await asyncio.sleep(0.3)
    assert ingest.events == []


async def test_keys_of_another_tenant_or_project_are_refused(ingest, store, media):
    (upload,) = await asyncio.to_thread(
        upload_local, store, ProjectRef("other", PROJECT), [media / "two_shots.mp4"]
    )
    for source in (
        upload.key,
        f"raw/{upload.key}",
        "acme/other-project/sources/x.mp4",
        f"{REF.prefix}../../other/jane/x.mp4",
        "/etc/passwd",
    ):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await ingest.stub.StartIngest(_start([source], f"foreign-{source}"), timeout=5)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "is not an object key of acme/jane" in info.value.details()
    # A job that reaches the worker by another path is refused there too.
    clients = ingest.process.clients
    jobs = JobService("ingest", clients.jobs, clients.bus)
    params = {"sources": [upload.key], "min_s": 2, "max_s": 3, "fps": 16, "max_long_side": None}
    job = await jobs.start(TENANT, PROJECT, params)
    final = await ingest.wait(job.id)
    assert final.state == common_pb2.JOB_STATE_FAILED
    assert "is not an object key of acme/jane" in final.message
    assert not any(True for _ in store.list(Bucket.CLIPS, ""))


async def test_a_format_an_older_ingest_refused_is_looked_at_again(ingest, store, tmp_path):
    """Refusals are remembered per content (a re-ingest reuses them), but "unsupported format"
    is a fact about the ingest that said it too: an MPEG-TS recording refused before ingest
    took transport streams is ingested now, and the refusal this ingest stores is reused."""
    src = make_footage(
        tmp_path / "src.mp4", [ShotSpec("astronaut", 75, "pan"), ShotSpec("coffee", 75, "zoom")]
    )
    ts = tmp_path / "recording.ts"
    await asyncio.to_thread(
        subprocess.run,
        [
            ffmpeg(),
            "-loglevel",
            "error",
            "-i",
            str(src.path),
            "-c",
            "copy",
            "-f",
            "mpegts",
            str(ts),
        ],
        check=True,
    )
    (up,) = await asyncio.to_thread(upload_local, store, REF, [ts])
    params = IngestParams(sources=[up.key], min_s=2, max_s=3, fps=16)  # as _start asks
    opts_hash = options_hash(ingest_options(params))
    mkey = layout.manifest_key(REF, up.sha256, opts_hash)
    # as the ingest before MPEG-TS support stored its refusal (no `accepted` list)
    old = {
        "manifest_version": 2,
        "tenant": TENANT,
        "project": PROJECT,
        "source_sha256": up.sha256,
        "source": {"key": up.key, "name": "recording.ts", "submitted_as": up.key},
        "options_hash": opts_hash,
        "options": {},
        "clips_prefix": layout.clips_prefix(REF, up.sha256),
        "job_id": "an-older-job",
        "created_at": "2026-12-01T00:00:00+00:00",
        "error": {
            "type": "UnsupportedFormat",
            "message": "recording.ts: MPEG-TS streams are not supported (remux to mp4)",
        },
    }
    store.put_json(Bucket.CLIPS, mkey, SourceManifest.model_validate(old).dump())

    job = await ingest.wait((await ingest.stub.StartIngest(_start([up.key], "ts"), timeout=5)).id)
    assert job.state == common_pb2.JOB_STATE_SUCCEEDED, job.message
    (report,) = dict_from_struct(job.result)["sources"]
    assert not report["reused"] and report["clips"] == 2
    assert store.get_json(Bucket.CLIPS, mkey)["format"] == "ts"

    # a refusal made by this ingest is remembered: the text file is not looked at twice
    notes = tmp_path / "notes.ts"
    notes.write_text("not a video\n" * 50)
    (bad,) = await asyncio.to_thread(upload_local, store, REF, [notes])
    for rid, reused in (("bad-1", False), ("bad-2", True)):
        job = await ingest.wait(
            (await ingest.stub.StartIngest(_start([bad.key], rid), timeout=5)).id
        )
        (report,) = dict_from_struct(job.result)["sources"]
        assert report["error_type"] == "UnsupportedFormat" and report["reused"] is reused
