"""The curation service end to end: real NATS + S3, the service in-process over real gRPC."""

from __future__ import annotations

import asyncio
import io
import time

import grpc
import pyarrow.parquet as pq
import pytest
from pydantic import SecretStr

from loraforge.curation import identity
from loraforge.curation import layout as curation_layout
from loraforge.curation.errors import BackendUnavailable
from loraforge.curation.faces import FaceBackend
from loraforge.curation.policy import CurationPolicy
from loraforge.curation.text import default_reader
from loraforge.curation.worker import (
    AutoCurator,
    CurationWorker,
    dataset_id_for,
    discover_clips,
)
from loraforge.ingest import layout
from loraforge.runtime.errors import LoraforgeError
from loraforge.runtime.events import Event
from loraforge.runtime.job_service import JobService
from loraforge.runtime.jobs import Job, JobStore, new_job_id
from loraforge.runtime.keys import ProjectRef
from loraforge.runtime.servicers import struct_from_dict
from loraforge.runtime.storage import Bucket, ObjectStore
from loraforge.v1 import common_pb2, curation_pb2

from .seed import OVERRIDES, PROJECT, TENANT, clip_entry, put_manifest, seed_project

SCOPE = common_pb2.ProjectScope(tenant=TENANT, project=PROJECT)
TERMINAL = {
    common_pb2.JOB_STATE_SUCCEEDED,
    common_pb2.JOB_STATE_FAILED,
    common_pb2.JOB_STATE_CANCELLED,
}


async def wait_job(stub, job_id: str, timeout: float = 45.0) -> common_pb2.Job:
    deadline = time.monotonic() + timeout
    seen_progress = set()
    while True:
        job = await stub.GetJob(common_pb2.GetJobRequest(scope=SCOPE, job_id=job_id), timeout=5)
        seen_progress.add(round(job.progress, 2))
        if job.state in TERMINAL:
            return job
        assert time.monotonic() < deadline, f"job {job_id} still {job.state} ({job.message})"
        await asyncio.sleep(0.2)


def start_request(request_id: str, **kw) -> curation_pb2.StartCurationRequest:
    overrides = kw.pop("overrides", OVERRIDES)
    return curation_pb2.StartCurationRequest(
        scope=SCOPE,
        request_id=request_id,
        target_size=kw.pop("target_size", 4),
        policy_overrides=struct_from_dict(overrides),
        **kw,
    )


async def collect(bus, event_type: str, durable: str) -> list[Event]:
    got: list[Event] = []

    async def handler(event, delivery):
        got.append(event)

    await bus.subscribe(durable, event_type, handler)
    return got


async def test_curation_job_stores_a_committed_dataset(curation_service, store, bus, local_clips):
    keys = await asyncio.to_thread(seed_project, store, local_clips)
    curated = await collect(bus, "dataset.curated", "test-curated")
    progress = await collect(bus, "curation.progress", "test-progress")
    _, stub = await curation_service(auto_curate=False)

    job = await stub.StartCuration(start_request("run-1"), timeout=10)
    again = await stub.StartCuration(start_request("run-1"), timeout=10)
    assert again.id == job.id
    done = await wait_job(stub, job.id)
    assert done.state == common_pb2.JOB_STATE_SUCCEEDED, done.message

    result = dict(done.result)
    ds = result["dataset_id"]
    prefix = f"{TENANT}/{PROJECT}/datasets/{ds}"
    record = store.get_json(Bucket.DATASETS, f"{prefix}/dataset.json")
    assert record["id"] == ds and record["lora_type"] == "character"
    assert record["policy"]["min_short_side_px"] == 256 and record["policy"]["target_size"] == 4
    selected = {c["clip_id"]: c["key"] for c in record["selected"]}
    assert "ast-000" in selected and selected["ast-000"] == keys["ast-000"]
    assert "two-000" not in selected and "dark-001" not in selected
    assert len(record["content_hash"]) == 64
    assert record["counts"]["selected"] == len(selected)
    assert record["counts"]["kept"] + record["counts"]["rejected"] == len(local_clips)

    manifest = store.get_json(Bucket.DATASETS, f"{prefix}/manifest.json")
    rows = {c["clip_id"]: c for c in manifest["clips"]}
    assert set(rows) == set(keys)
    assert rows["two-000"]["decision"] == "reject"
    assert "people_count" in rows["two-000"]["reason_codes"]
    assert rows["two-000"]["people_count"] == 2
    assert "too_dark" in rows["dark-001"]["reason_codes"]
    assert rows["ast-000"]["decision"] == "keep" and rows["ast-000"]["selected"]
    table = pq.read_table(
        io.BytesIO(store.get_bytes(Bucket.DATASETS, f"{prefix}/manifest.parquet"))
    )
    assert sorted(table.column("clip_id").to_pylist()) == sorted(keys)
    html = store.get_bytes(Bucket.DATASETS, f"{prefix}/report.html").decode()
    assert "people_count" in html and "two-000" in html
    stored = {o.key.removeprefix(prefix + "/") for o in store.list(Bucket.DATASETS, prefix + "/")}
    assert {"angles.png", "identity.png", "thumbs/ast-000.jpg", "dataset.json"} <= stored
    kinds = {a.kind for a in done.artifacts}
    assert {"manifest", "report", "chart", "thumbnail", "dataset"} <= kinds

    for _ in range(50):
        if curated:
            break
        await asyncio.sleep(0.1)
    assert len(curated) == 1
    ev = curated[0]
    assert ev.tenant == TENANT and ev.project == PROJECT
    assert ev.data["job_id"] == job.id and ev.data["dataset_id"] == ds
    assert ev.data["kept"] == record["counts"]["kept"]
    assert ev.data["rejected"] == record["counts"]["rejected"] >= 2
    assert ev.data["selected"] == len(selected)
    assert ev.data["missing"] == record["missing"] and ev.data["missing"]  # 4 clips < target mix
    assert any(0 < e.data["progress"] < 1 for e in progress)

    # the same inputs again (a new request): same dataset id, nothing recomputed or rewritten
    before = store.stat(Bucket.DATASETS, f"{prefix}/dataset.json").etag
    t = time.monotonic()
    second = await wait_job(stub, (await stub.StartCuration(start_request("run-2"), timeout=10)).id)
    assert second.state == common_pb2.JOB_STATE_SUCCEEDED and second.id != job.id
    assert dict(second.result)["dataset_id"] == ds
    assert store.stat(Bucket.DATASETS, f"{prefix}/dataset.json").etag == before
    assert time.monotonic() - t < 5
    # another policy, reference set or clip set gives another dataset id
    clips = discover_clips(store, ProjectRef(TENANT, PROJECT))
    policy = CurationPolicy(**OVERRIDES, target_size=4)
    assert dataset_id_for(clips, policy, [], "character") == ds
    assert (
        len(
            {
                ds,
                dataset_id_for(
                    clips, policy.model_copy(update={"target_size": 2}), [], "character"
                ),
                dataset_id_for(clips, policy, ["acme/jane/references/a.jpg"], "character"),
                dataset_id_for(clips[1:], policy, [], "character"),
                dataset_id_for(clips, policy, [], "style"),
            }
        )
        == 5
    )


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"overrides": {"max_people": 0}}, "max_people"),
        ({"overrides": {"no_such_threshold": 3}}, "no_such_threshold"),
        ({"overrides": {"min_duration_s": 9, "max_duration_s": 3}}, "min_duration_s"),
        ({"reference_keys": ["other/jane/references/a.jpg"]}, "acme/jane/"),
        ({"reference_keys": ["acme/jane/references/../x.jpg"]}, "reference"),
        ({"lora_type": "cartoon"}, "lora_type"),
    ],
)
async def test_bad_requests_are_refused_with_a_reason(curation_service, kwargs, fragment):
    _, stub = await curation_service(auto_curate=False)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.StartCuration(start_request("bad", **kwargs), timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert fragment in info.value.details()
    listed = await stub.ListJobs(common_pb2.ListJobsRequest(scope=SCOPE), timeout=5)
    assert list(listed.jobs) == []


async def test_a_job_with_a_bad_policy_fails_with_the_reason(curation_service, store, local_clips):
    # a job that reached the queue without the servicer's check (e.g. an older gateway)
    proc, stub = await curation_service(auto_curate=False)
    await asyncio.to_thread(seed_project, store, local_clips[:1])
    jobs = JobService("curation", proc.clients.jobs, proc.clients.bus)
    job = await jobs.start(TENANT, PROJECT, {"policy_overrides": {"max_people": -1}})
    done = await wait_job(stub, job.id, timeout=15)
    assert done.state == common_pb2.JOB_STATE_FAILED
    assert "max_people" in done.message and "invalid curation policy" in done.message


async def test_a_project_without_clips_fails_clearly(curation_service):
    _proc, stub = await curation_service(auto_curate=False)
    job = await stub.StartCuration(start_request("empty"), timeout=10)
    done = await wait_job(stub, job.id, timeout=15)
    assert done.state == common_pb2.JOB_STATE_FAILED
    assert "no ingested clips" in done.message and "ingest" in done.message


async def test_clips_ingested_starts_a_curation_job(curation_service, store, bus, local_clips):
    await asyncio.to_thread(seed_project, store, local_clips[:2])
    curated = await collect(bus, "dataset.curated", "test-curated-auto")
    proc, stub = await curation_service(auto_curate=True)
    event = Event(
        id="ingest-done-1",
        type="clips.ingested",
        tenant=TENANT,
        project=PROJECT,
        data={"job_id": "ingest-job", "clips": 2, "curation": {"policy_overrides": OVERRIDES}},
    )
    await bus.publish(event)
    deadline = time.monotonic() + 10
    jobs = []
    while not jobs and time.monotonic() < deadline:
        jobs = list((await stub.ListJobs(common_pb2.ListJobsRequest(scope=SCOPE), timeout=5)).jobs)
        await asyncio.sleep(0.1)
    # (distinct ids: JobStore.list can return a job twice when it changes during the listing)
    assert len({j.id for j in jobs}) == 1, [(j.id, j.state, j.message) for j in jobs]
    # a redelivered event (new stream message, same event id) starts no second job
    await AutoCurator(
        JobService("curation", proc.clients.jobs, proc.clients.bus), proc.clients.bus
    ).handle(event, None)
    done = await wait_job(stub, jobs[0].id)
    assert done.state == common_pb2.JOB_STATE_SUCCEEDED, done.message
    listed = (await stub.ListJobs(common_pb2.ListJobsRequest(scope=SCOPE), timeout=5)).jobs
    assert {j.id for j in listed} == {jobs[0].id}
    for _ in range(50):
        if curated:
            break
        await asyncio.sleep(0.1)
    assert [e.data["job_id"] for e in curated] == [jobs[0].id]


async def test_auto_curation_can_be_turned_off(curation_service, store, bus, local_clips):
    _proc, stub = await curation_service(auto_curate=False)
    await bus.publish(Event(type="clips.ingested", tenant=TENANT, project=PROJECT, data={}))
    await asyncio.sleep(1.0)
    listed = await stub.ListJobs(common_pb2.ListJobsRequest(scope=SCOPE), timeout=5)
    assert list(listed.jobs) == []
    names = [c.name async for c in _consumers(bus)]
    assert "curation-auto" not in names and "curation-workers" in names


async def _consumers(bus):
    for info in await bus.jetstream.consumers_info(bus.settings.stream):
        yield info


async def test_discovery_reads_ingest_manifests(store, local_clips, caplog):
    """Clips come from ingest's manifests only: entries whose object is missing or outside the
    project are skipped, manifests that do not validate are skipped with a warning naming them,
    colliding ids are qualified with the source, the proxy is used when stored, and the rate
    ingest cut for is the clip's training rate."""
    project = ProjectRef(TENANT, PROJECT)
    clip = local_clips[0]
    a, b = "abcdef0123456789" * 4, "1111111111111111" * 4
    a_base, b_base = layout.clips_prefix(project, a), layout.clips_prefix(project, b)
    store.put_file(Bucket.CLIPS, f"{a_base}shot-000.mp4", clip.path)
    store.put_bytes(Bucket.CLIPS, f"{a_base}shot-000_analysis.zip", b"proxy")
    store.put_file(Bucket.CLIPS, f"{b_base}shot-000.mp4", clip.path)
    shot_a = clip_entry("shot-000", f"{a_base}shot-000.mp4", clip.path, [f"{a_base}shot-000.jpg"])
    put_manifest(
        store,
        TENANT,
        PROJECT,
        a,
        "video",
        [shot_a.model_copy(update={"analysis_key": f"{a_base}shot-000_analysis.zip"})],
    )
    mkey = put_manifest(
        store,
        TENANT,
        PROJECT,
        b,
        "video",
        [
            clip_entry(
                "shot-000",
                f"{b_base}shot-000.mp4",
                clip.path,
                [f"{b_base}shot-000.jpg", f"other/{PROJECT}/clips/x/evil.jpg"],
            ).model_copy(update={"analysis_key": f"{b_base}shot-000_analysis.zip"}),  # not stored
            clip_entry("evil", f"other/{PROJECT}/clips/x/evil.mp4", clip.path, []),
            clip_entry("gone", f"{b_base}gone.mp4", clip.path, []),
        ],
    )
    doc = store.get_json(Bucket.CLIPS, mkey)
    doc["frame_rate"] = {
        "source_fps": 10.0,
        "target_fps": 16.0,
        "variable": False,
        "below_target": True,
        "clips_below_target": 1,
        "clip_fps": [10.0],
    }
    store.put_json(Bucket.CLIPS, mkey, doc)
    # a manifest in a shape ingest never wrote, and one that is not JSON
    c_base = layout.clips_prefix(project, "2" * 64)
    guessed = layout.manifest_key(project, "2" * 64, "0" * 16)
    store.put_file(Bucket.CLIPS, f"{c_base}shot-000.mp4", clip.path)
    store.put_json(Bucket.CLIPS, guessed, {"clips": [{"path": "/work/tmp/shot-000.mp4"}]})
    broken = layout.manifest_key(project, "3" * 64, "0" * 16)
    store.put_bytes(Bucket.CLIPS, broken, b"{not json")

    with caplog.at_level("WARNING", logger="loraforge.curation.worker"):
        found = discover_clips(store, project)
    assert [(c.clip_id, c.key) for c in found] == [
        ("1111111111111111-shot-000", f"{b_base}shot-000.mp4"),
        ("abcdef0123456789-shot-000", f"{a_base}shot-000.mp4"),
    ]
    assert found[0].keyframe_keys == (f"{b_base}shot-000.jpg",)  # the foreign one dropped
    assert found[0].analysis_key == "" and found[1].analysis_key.endswith("_analysis.zip")
    assert found[0].training_fps == 16.0 and found[1].training_fps is None
    assert found[1].source_id == a and found[1].sha256 == shot_a.sha256
    warned = caplog.text
    assert guessed in warned and broken in warned
    assert f"other/{PROJECT}/clips/x/evil.mp4" in warned and f"{b_base}gone.mp4" in warned


async def test_auto_curation_uses_the_projects_lora_type(settings, store, bus):
    """clips.ingested -> a curation job with the type the ingest request named, else the type of
    the project's captioning defaults, else character (no curation worker runs: only the
    started jobs' parameters are looked at)."""
    from loraforge.captioning.auto import save_defaults
    from loraforge.runtime.job_service import follow_up_request_id
    from loraforge.runtime.jobs import JobStore, new_job_id

    job_store = await JobStore.open(bus.jetstream, settings.nats.jobs_bucket)
    auto = AutoCurator(JobService("curation", job_store, bus), bus, store)
    typed = ProjectRef(TENANT, PROJECT)
    await asyncio.to_thread(save_defaults, store, typed, trigger="j4ne", lora_type="background")

    async def ingested(project: str, n: int, **data) -> dict:
        event = Event(
            id=f"ingested-type-{project}-{n}",
            type="clips.ingested",
            tenant=TENANT,
            project=project,
            data={"job_id": f"ingest-{n}", "clips": 2, **data},
        )
        await auto.handle(event, None)
        job_id = new_job_id(follow_up_request_id(event.id), scope=f"{TENANT}/{project}/curation")
        return (await job_store.get(TENANT, project, job_id)).params

    assert (await ingested(PROJECT, 1))["lora_type"] == "background"  # the captioning defaults'
    # the ingest request's type (carried in the event's curation params) wins over the defaults
    assert (await ingested(PROJECT, 2, curation={"lora_type": "style"}))["lora_type"] == "style"
    assert (await ingested("no-defaults", 3))["lora_type"] == "character"


def test_measures_sweep_removes_other_code_and_unreferenced_clips(store, local_clips):
    """datasets/_measures/: a folder of other code goes a grace after its last use, a folder
    from before markers is stamped first, entries of clips the project lost go at once, the
    current code's entries of current clips stay; deletions are bounded per sweep."""
    from loraforge.curation import worker as w

    project = ProjectRef(TENANT, PROJECT)
    root = curation_layout.measures_root(project).rstrip("/")
    clips = [
        w.IngestedClip(
            clip_id=f"c{i}",
            key=f"{project.prefix}clips/x/c{i}.mp4",
            source_id="s",
            sha256=f"{i:064x}",
        )
        for i in range(2)
    ]
    gone = w.IngestedClip(
        clip_id="old", key=f"{project.prefix}clips/x/old.mp4", source_id="s", sha256="f" * 64
    )
    now = 1_000_000_000.0
    put = lambda key: store.put_bytes(Bucket.DATASETS, key, b"pickle")  # noqa: E731
    for folder in ("current", "other-old", "other-recent", "unmarked"):
        for c in [*clips, gone]:
            put(f"{root}/{folder}/{w.measured_name(c)}")
    w.touch_measures(store, f"{root}/current", "character", now=now - 10 * w.MEASURES_GRACE_S)
    for folder, used in (("other-old", now - 2 * w.MEASURES_GRACE_S), ("other-recent", now - 60)):
        store.put_json(
            Bucket.DATASETS,
            f"{root}/{folder}/{w.MEASURES_MARKER}",
            {"code": "0123456789abcdef", "lora_type": "character", "used_at": used},
        )

    def left() -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for o in store.list(Bucket.DATASETS, f"{root}/"):
            folder, name = o.key[len(root) + 1 :].split("/")
            out.setdefault(folder, set()).add(name)
        return out

    assert w.sweep_measures(store, project, clips, now=now, batch=2).more  # bounded
    first = w.sweep_measures(store, project, clips, now=now)
    assert not first.more and first.stamped == 1
    names = {w.measured_name(c) for c in clips}
    after = left()
    assert "other-old" not in after  # entries and marker gone
    assert after["current"] == names | {w.MEASURES_MARKER}  # the lost clip's entry went
    assert after["other-recent"] == names | {w.MEASURES_MARKER}  # within the grace
    assert after["unmarked"] == names | {w.measured_name(gone), w.MEASURES_MARKER}  # stamped
    later = w.sweep_measures(store, project, clips, now=now + 2 * w.MEASURES_GRACE_S)
    # unmarked: the entries, the lost clip's and the marker;
    # other-recent: the entries and the marker
    assert later.removed == (len(names) + 2) + (len(names) + 1) and set(left()) == {"current"}


def test_the_worker_loads_its_models_before_the_first_job(store, caplog):
    # mount() preloads on a thread: the first job finds the models loaded (the process-wide
    # ones emptied first, as in a process that has loaded nothing)
    identity.hdbscan_class.cache_clear()
    default_reader.cache_clear()
    worker = CurationWorker(store)
    worker.preload().join(timeout=120)
    assert worker._backend is not None and worker._people is not None
    assert identity.hdbscan_class.cache_info().currsize == 1
    assert default_reader.cache_info().currsize == 1

    # a model that cannot load: logged, and the job that needs it fails with the reason
    def missing() -> FaceBackend:
        raise BackendUnavailable("dlib is not installed; install loraforge[curation]")

    broken = CurationWorker(store, backend_factory=missing)
    with caplog.at_level("WARNING"):
        broken.preload().join(timeout=120)
    assert "not preloaded: dlib is not installed" in caplog.text
    with pytest.raises(BackendUnavailable, match="install loraforge"):
        broken._face_backend()


async def test_a_running_job_does_not_follow_a_queued_start_of_its_dataset(
    curation_service, store, bus, settings, local_clips
):
    # Two starts for one dataset raced (a user's curate as the automatic one began), and the
    # claim written last is that of a job still PENDING: queued, computing nothing, possibly
    # behind the running job on the same worker. Following it waited forever; the running
    # job computes the dataset, and the queued one finds it committed when it runs.
    await asyncio.to_thread(seed_project, store, local_clips)
    _, stub = await curation_service(auto_curate=False)
    first = await wait_job(stub, (await stub.StartCuration(start_request("run-1"), timeout=10)).id)
    assert first.state == common_pb2.JOB_STATE_SUCCEEDED, first.message
    prefix = f"{TENANT}/{PROJECT}/datasets/{first.result['dataset_id']}"
    for o in store.list(Bucket.DATASETS, prefix + "/"):  # as if it was never committed
        store.delete(Bucket.DATASETS, o.key)
    jobs = await JobStore.open(bus.jetstream, settings.nats.jobs_bucket)
    params = (await jobs.get(TENANT, PROJECT, first.id)).params
    queued = await jobs.create(
        Job(id=new_job_id(), kind="curation", tenant=TENANT, project=PROJECT, params=params)
    )
    store.put_json(Bucket.DATASETS, f"{prefix}/{curation_layout.CLAIM}", {"job_id": queued.id})
    running = await JobService("curation", jobs, bus).start(TENANT, PROJECT, params, "run-2")
    done = await wait_job(stub, running.id, timeout=30)
    assert done.state == common_pb2.JOB_STATE_SUCCEEDED, done.message
    assert done.result["dataset_id"] == first.result["dataset_id"]
    assert store.stat(Bucket.DATASETS, f"{prefix}/dataset.json") is not None


async def test_a_failed_dataset_upload_fails_with_the_stores_error_and_leaves_nothing_running(
    settings, tmp_path
):
    # the datasets are written 4 at a time; when the store refuses them (here: a wrong
    # secret key), the first error is the job's, no upload is left running behind it, and no
    # error goes unread
    out = tmp_path / "out"
    (out / "thumbs").mkdir(parents=True)
    for i in range(9):
        (out / "thumbs" / f"c{i}.jpg").write_bytes(b"x" * 100)
    refused = ObjectStore.connect(
        settings.s3.model_copy(update={"secret_key": SecretStr("not-the-key")})
    )
    before = asyncio.all_tasks()
    with pytest.raises(LoraforgeError) as err:
        await CurationWorker(refused)._upload(out, "t/p/datasets/ds-x", None)  # type: ignore[arg-type]
    assert asyncio.all_tasks() == before
    assert "refused our credentials" in str(err.value)  # the store's own message, with the fix
