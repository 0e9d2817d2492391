"""The curation job: a project's ingested clips in, a committed dataset out.

    clips bucket   <tenant>/<project>/clips/<source_sha16>/<clip_id>.mp4 (+ keyframes, + the
                   analysis proxy curation reads instead of the clip) and one manifest per
                   source and option set (ingest/manifest.py, keys in ingest/layout.py; read
                   by `discover_clips`)
    raw bucket     reference photos, keys under <tenant>/<project>/ (`reference_keys`)
 -> datasets bucket <tenant>/<project>/datasets/<dataset_id>/ (keys in layout.py)
                   manifest.parquet, manifest.json, report.html, *.png, thumbs/*.jpg, and
                   dataset.json (record.py: DatasetRecord) LAST: the commit marker. A dataset
                   without dataset.json is unfinished and is simply written again.

`dataset_id` is a hash of what decides the outcome (clip set with content hashes, policy,
references, LoRA type), so a redelivered or repeated job finds its committed dataset and does no
work twice; a different input never overwrites an existing dataset. While a dataset is computed
its job claims it (`_job.json`): a start for it returns that job, a job for it follows it.

Clips are measured through the `curation.measure` work queue (one task per clip, any curation
process) into `datasets/_measures/<measure_key>/`; the job then decides and selects in one place.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import hashlib
import json
import logging
import mimetypes
import os
import pickle
import socket
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from pydantic import ValidationError

from loraforge.captioning.auto import load_defaults
from loraforge.curation import identity, layout
from loraforge.curation.builders import apply_to_record, build_dataset, check_options
from loraforge.curation.faces import DetectedFace, FaceBackend, make_backend
from loraforge.curation.layout import CLAIM, MEASURED
from loraforge.curation.metrics import MeasuredClip
from loraforge.curation.people import PeopleDetector
from loraforge.curation.pipeline import CurationResult, MediaItem, curate, measure_all
from loraforge.curation.policy import CurationPolicy
from loraforge.curation.record import DatasetRecord, selection_hash
from loraforge.curation.text import default_reader
from loraforge.curation.threads import measuring_pool, measuring_threads
from loraforge.ingest import layout as ingest_layout
from loraforge.ingest.manifest import SourceManifest
from loraforge.ingest.proxy import proxy_covers
from loraforge.runtime.errors import Cancelled, InvalidInput, LoraforgeError, NotFound
from loraforge.runtime.events import Delivery, Event, EventBus
from loraforge.runtime.job_service import JobContext, JobOutcome, JobService, follow_up_request_id
from loraforge.runtime.jobs import ArtifactRef, Job, JobState, JobStore, new_job_id
from loraforge.runtime.keys import ProjectRef, validate_key_part
from loraforge.runtime.params import CurationParams
from loraforge.runtime.storage import Bucket, ObjectStore

log = logging.getLogger(__name__)

DATASET_VERSION = 1
REFERENCE_EXTS = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}
INGESTED_EVENT = "clips.ingested"
CURATED_EVENT = "dataset.curated"

# progress bands of the job: discover/download, measure (curate), upload
_DOWNLOAD = (0.02, 0.20)
_MEASURE = (0.20, 0.85)
_UPLOAD = (0.85, 0.99)
_DOWNLOAD_AND_MEASURE = (_DOWNLOAD[0], _MEASURE[1])  # measure tasks download their own clip

# Beside a dataset while it is computed, deleted after its commit: layout.CLAIM (the job
# computing it: another job for the same dataset follows that one) and layout.MEASURED.
# Policy fields that only steer the selection among kept clips: changing them (a user's
# `--target 40` after the automatic curation) reuses the clips' measurements.
SELECTION_ONLY = frozenset(
    {
        "target_size",
        "video_target_min",
        "video_target_max",
        "photo_target_min",
        "photo_target_max",
        "angle_mix",
        "max_smiling_fraction",
        "max_per_source_fraction",
        "identity_cluster",
        "build_options",
    }
)
MEASURE_EVENT = "curation.measure"  # one task per clip; a work queue shared by every process
MEASURE_DURABLE = "curation-measure"
# A job whose clips stop getting measured for this long fails (and is retried): every worker
# died or none consumes the queue. A clip takes seconds; a stuck redelivery up to max_deliver
# x ack_wait.
MEASURE_STALL_S = 600.0
# The computing worker rewrites its claim this often; a claim older than CLAIM_STALE_S is a dead
# worker's (its job request comes back after the bus's ack_wait, 60 s by default), a fresher one
# a live worker's, whose result a redelivered run of the same job waits for instead of redoing.
CLAIM_BEAT_S = 5.0
CLAIM_STALE_S = 30.0
# `_measures/` lifecycle (sweep_measures, run after every job's commit): each measure_key folder
# holds a marker (MEASURES_MARKER: the code fingerprint that wrote it, when a job last used it).
# A folder of other code, unused for MEASURES_GRACE_S, is never read again (code_fingerprint is
# part of the key) and is removed; the grace lets jobs of the previous release finish during a
# rolling upgrade. Entries of clips the project no longer has are removed at once. At most
# MEASURES_SWEEP_BATCH deletions a sweep (the next job's sweep goes on), so a sweep stays a
# fraction of a second beside the job.
MEASURES_MARKER = "_key.json"
MEASURES_GRACE_S = 86_400.0
MEASURES_SWEEP_BATCH = 500


# -- inputs ---------------------------------------------------------------------------------


def build_policy(params: CurationParams) -> CurationPolicy:
    """The LoRA type's defaults + the job's overrides; `target_size` of the request wins over
    an override. The type is part of the policy, so it is in the policy hash and dataset id.

    Raises InvalidPolicy (an InvalidInput) naming the fields to fix.
    """
    overrides = dict(params.policy_overrides)
    if params.target_size is not None:
        overrides["target_size"] = params.target_size
    policy = CurationPolicy.for_type(params.lora_type.value, overrides)
    check_options(policy)  # the type's dataset builder refuses bad build_options now, not late
    return policy


def check_reference_keys(project: ProjectRef, keys: list[str]) -> list[str]:
    """Reference photos are raw-bucket keys of this tenant and project, and photos."""
    out = []
    for key in keys:
        parts = key.split("/")
        if not key.startswith(project.prefix) or any(p in {"", ".", ".."} for p in parts):
            raise InvalidInput(
                f"reference {key!r} is not a raw key of {project.tenant}/{project.project}: "
                f"give keys that start with {project.prefix!r} (upload the photo to raw first)"
            )
        for p in parts:
            validate_key_part(p)
        if PurePosixPath(key).suffix.lower() not in REFERENCE_EXTS:
            raise InvalidInput(
                f"reference {key!r} is not a photo; use one of {', '.join(sorted(REFERENCE_EXTS))}"
            )
        out.append(key)
    return sorted(set(out))


@dataclass(frozen=True)
class IngestedClip:
    clip_id: str  # unique within the project (qualified with the source when ids collide)
    key: str  # clips-bucket key of the clip (video) or normalized photo
    source_id: str  # the source it was cut from (ingest's source sha256)
    sha256: str = ""
    keyframe_keys: tuple[str, ...] = ()
    # the rate ingest cut the clip for (its manifest's `frame_rate.target_fps`), None if unknown
    training_fps: float | None = field(default=None, compare=False, hash=False)
    # ingest's analysis proxy of the clip (sampled frames; ingest/proxy.py), "" when it has none
    analysis_key: str = field(default="", compare=False, hash=False)


def discover_clips(store: ObjectStore, project: ProjectRef) -> list[IngestedClip]:
    """Every ingested clip of the project, read from ingest's per-source manifests
    (`ingest/manifest.py: SourceManifest`, keys in `ingest/layout.py`).

    A manifest that does not validate is skipped with a warning naming it and the reason; so is
    a clip entry whose object is not stored, or whose key is not under the project's clips
    (`layout.is_clip_key`). Keyframes outside it are dropped; an analysis proxy not stored is
    not used (the clip is measured by decoding it). Clip ids that collide across sources (or
    option sets) are qualified as `<source16>-<id>`; sorted by id.
    """
    objects = {o.key for o in store.list(Bucket.CLIPS, ingest_layout.clips_root(project))}
    found: list[IngestedClip] = []
    for mkey in sorted(k for k in objects if ingest_layout.is_manifest_key(project, k)):
        try:
            manifest = SourceManifest.model_validate(store.get_json(Bucket.CLIPS, mkey))
        except (LoraforgeError, ValueError) as exc:  # pydantic's ValidationError included
            log.warning(
                "skipping ingest manifest %s (%s); ingest its source again to rewrite it", mkey, exc
            )
            continue
        rate = manifest.frame_rate.target_fps if manifest.frame_rate else None
        for entry in manifest.clips:
            if not ingest_layout.is_clip_key(project, entry.key) or entry.key not in objects:
                log.warning(
                    "manifest %s: skipping clip %s: %s is not a stored object of %s "
                    "(ingest its source again)",
                    mkey,
                    entry.clip_id,
                    entry.key,
                    project.prefix,
                )
                continue
            analysis = entry.analysis_key or ""
            found.append(
                IngestedClip(
                    entry.clip_id,
                    entry.key,
                    manifest.source_sha256,
                    entry.sha256,
                    tuple(k for k in entry.keyframe_keys if ingest_layout.is_clip_key(project, k)),
                    training_fps=rate,
                    analysis_key=analysis if analysis in objects else "",
                )
            )
    # one entry per object; ids unique
    by_key: dict[str, IngestedClip] = {}
    for c in found:
        by_key.setdefault(c.key, c)
    clips = list(by_key.values())
    counts = Counter(c.clip_id for c in clips)
    clips = [
        c
        if counts[c.clip_id] == 1
        else dataclasses.replace(c, clip_id=f"{c.source_id[:16]}-{c.clip_id}")
        for c in clips
    ]
    return sorted(clips, key=lambda c: c.clip_id)


def dataset_id_for(
    clips: list[IngestedClip], policy: CurationPolicy, references: list[str], lora_type: str
) -> str:
    """Stable id of a dataset: the same clips (content), policy, references and type -> same id."""
    doc = {
        "v": DATASET_VERSION,
        "clips": sorted([c.clip_id, c.key, c.sha256] for c in clips),
        "policy": policy.model_dump(mode="json"),
        "references": sorted(references),
        "lora_type": lora_type,
    }
    blob = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    return "ds-" + hashlib.sha256(blob).hexdigest()[:20]


@functools.cache
def code_fingerprint() -> str:
    """Hash of the code and data files that measure a clip (this package and the proxy
    reader): measurements pickled by other code are never reused."""
    h = hashlib.sha256()
    roots = [Path(__file__).parent, Path(__file__).parent.parent / "ingest"]
    for root in roots:
        for path in sorted(root.rglob("*")):
            if "__pycache__" in path.parts:
                continue
            if path.is_file() and (path.suffix == ".py" or root.name == "curation"):
                h.update(path.relative_to(root.parent).as_posix().encode())
                h.update(
                    path.read_bytes() if path.suffix == ".py" else str(path.stat().st_size).encode()
                )
    return h.hexdigest()[:16]


def measure_key(policy: CurationPolicy, lora_type: str) -> str:
    """Which measurements a job can reuse: same code, same policy apart from SELECTION_ONLY."""
    doc = {
        "code": code_fingerprint(),
        "lora_type": lora_type,
        "policy": {
            k: v for k, v in policy.model_dump(mode="json").items() if k not in SELECTION_ONLY
        },
    }
    return hashlib.sha256(
        json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()[:20]


@dataclass(frozen=True)
class MeasuresSweep:
    removed: int  # entries and markers deleted
    stamped: int  # folders without a marker (older code) given one: removed a grace later
    more: bool  # the batch ran out before the sweep did


def touch_measures(
    store: ObjectStore, cache: str, lora_type: str, now: float | None = None
) -> None:
    """Mark a measure_key folder as used by this code now (before its tasks are published)."""
    store.put_json(
        Bucket.DATASETS,
        f"{cache}/{MEASURES_MARKER}",
        {"code": code_fingerprint(), "lora_type": lora_type, "used_at": now or time.time()},
    )


def sweep_measures(
    store: ObjectStore,
    project: ProjectRef,
    clips: list[IngestedClip],
    *,
    now: float | None = None,
    grace_s: float = MEASURES_GRACE_S,
    batch: int = MEASURES_SWEEP_BATCH,
) -> MeasuresSweep:
    """Remove what no job will read again from `datasets/_measures/` (see MEASURES_GRACE_S):
    folders of other code unused for `grace_s`, and entries of clips not in `clips` (the
    project's clips now). A folder without a marker (written before markers existed) is
    stamped as other code seen now, and removed a grace later. Safe on every replica at once:
    deleting twice is not an error."""
    now = time.time() if now is None else now
    root = layout.measures_root(project)
    folders: dict[str, list[str]] = {}
    for obj in store.list(Bucket.DATASETS, root):
        folder, _, name = obj.key[len(root) :].partition("/")
        if name:
            folders.setdefault(folder, []).append(name)
    referenced = {measured_name(c) for c in clips}
    mine = code_fingerprint()
    removed = stamped = 0
    for folder, names in sorted(folders.items()):
        prefix = f"{root}{folder}"
        marker: dict[str, Any] = {}
        if MEASURES_MARKER in names:
            try:
                marker = store.get_json(Bucket.DATASETS, f"{prefix}/{MEASURES_MARKER}")
            except (LoraforgeError, ValueError):
                marker = {}
        if not isinstance(marker, dict) or "code" not in marker:
            store.put_json(
                Bucket.DATASETS,
                f"{prefix}/{MEASURES_MARKER}",
                {"code": "unknown", "lora_type": None, "used_at": now},
            )
            stamped += 1
            continue
        stale = marker["code"] != mine and now - float(marker.get("used_at", 0.0)) > grace_s
        # the marker last, so that a folder is never left unmarked while entries remain
        doomed = (
            sorted(n for n in names if n != MEASURES_MARKER) + [MEASURES_MARKER]
            if stale
            else [n for n in names if n != MEASURES_MARKER and n not in referenced]
        )
        for name in doomed:
            if removed >= batch:
                return MeasuresSweep(removed, stamped, more=True)
            store.delete(Bucket.DATASETS, f"{prefix}/{name}")
            removed += 1
    return MeasuresSweep(removed, stamped, more=False)


def measured_name(clip: IngestedClip) -> str:
    """A clip's measurement file: by its object and content, not its id (ids are qualified
    differently as a project's clip set grows)."""
    return hashlib.sha256(f"{clip.key}\0{clip.sha256}".encode()).hexdigest()[:24] + ".pkl"


def fetch_clip(
    store: ObjectStore, clip: IngestedClip, folder: Path, n_frames: int
) -> tuple[Path, Path | None]:
    """What measuring a clip needs, downloaded to `folder`: its analysis proxy when it has one
    holding the policy's n_frames sampled frames (the clip itself is then not downloaded:
    curation does not decode it), else the clip. Returns (clip path, proxy path or None)."""
    path = folder / f"{clip.clip_id}{PurePosixPath(clip.key).suffix.lower()}"
    if clip.analysis_key:
        analysis = folder / f"{clip.clip_id}_analysis.zip"
        store.download(Bucket.CLIPS, clip.analysis_key, analysis)
        if proxy_covers(analysis, n_frames):
            return path, analysis
        analysis.unlink(missing_ok=True)
    store.download(Bucket.CLIPS, clip.key, path)
    return path, None


# -- the work -------------------------------------------------------------------------------


class _CountingBackend:
    """Wraps the face backend: counts frames for progress and stops the thread on cancel."""

    def __init__(self, inner: FaceBackend, cancelled: threading.Event):
        self._inner = inner
        self._cancelled = cancelled
        self.calls = 0
        self.name = inner.name
        self.same_person_distance = inner.same_person_distance
        self.duplicate_distance = inner.duplicate_distance

    def detect(self, image_bgr: np.ndarray, embed_largest: bool = True) -> list[DetectedFace]:
        if self._cancelled.is_set():
            raise Cancelled("curation was cancelled")
        self.calls += 1
        return self._inner.detect(image_bgr, embed_largest)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class CurationWorker:
    """`work(job, ctx)` for `JobWorker("curation", ...)`."""

    def __init__(
        self,
        store: ObjectStore,
        *,
        jobs: JobStore | None = None,
        bus: EventBus | None = None,
        backend_factory: Callable[[], FaceBackend] = make_backend,
        people: PeopleDetector | None = None,
        poll_s: float = 0.5,
        measure_stall_s: float = MEASURE_STALL_S,
        models_dir: Path | None = None,
    ):
        """With `jobs`, a job that finds another one computing the same dataset follows it.
        With `bus` too, clips are measured through the `curation.measure` work queue, shared by
        every curation process (`start_measuring`); without, in this process."""
        self._store = store
        self._jobs = jobs
        self._bus = bus if jobs is not None else None
        self._backend_factory = backend_factory
        self._backend: FaceBackend | None = None
        self._backend_lock = threading.Lock()
        self._people = people
        self._poll_s = poll_s
        self._measure_stall_s = measure_stall_s
        self._models_dir = models_dir  # provisioned models of dataset builders (LaMa, ...)
        # jobs of this process waiting for measurements (_measure_on_queue)
        self._measure_waiters: set[asyncio.Event] = set()
        # where this process's `curation.measure` tasks run (start_measuring sizes it)
        self._measure_threads: ThreadPoolExecutor | None = None
        self.worker_id = f"{socket.gethostname()}-{os.getpid()}-{id(self):x}"

    async def __call__(self, job: Job, ctx: JobContext) -> JobOutcome:
        try:
            params = CurationParams.model_validate(job.params)
        except ValidationError as exc:
            raise InvalidInput(f"invalid curation parameters: {exc}") from None
        project = ProjectRef(job.tenant, job.project)
        policy = build_policy(params)
        references = check_reference_keys(project, params.reference_keys)

        await ctx.progress(_DOWNLOAD[0], "listing ingested clips")
        clips = await asyncio.to_thread(discover_clips, self._store, project)
        if not clips:
            raise InvalidInput(
                f"{project.tenant}/{project.project} has no ingested clips; run ingest first "
                "(`loraforge ingest`), then curate"
            )
        for ref in references:
            if await asyncio.to_thread(self._store.stat, Bucket.RAW, ref) is None:
                raise InvalidInput(f"reference photo raw/{ref} does not exist; upload it first")
        dataset_id = dataset_id_for(clips, policy, references, params.lora_type.value)
        prefix = layout.dataset_prefix(project, dataset_id)

        committed = await self._committed(prefix)
        if committed is not None:
            log.info("dataset %s already committed; job %s reuses it", dataset_id, job.id)
            await asyncio.to_thread(self._drop_claim, prefix, job.id)
            return self._outcome(job, committed, prefix)
        # one curation per dataset: a job that finds another one computing it follows that one
        followed = await self._follow_other(job, ctx, prefix)
        if followed is not None:
            return self._outcome(job, followed, prefix)
        done = asyncio.Event()
        beat = asyncio.ensure_future(self._beat_claim(job, prefix, done))
        try:
            record = await self._compute(
                job, ctx, params, policy, clips, references, dataset_id, prefix
            )
        finally:
            done.set()
            await beat  # its last write lands before the clean-up below
        await asyncio.to_thread(self._clean_up, prefix)
        try:  # housekeeping: never fails the job it follows
            # the project's clips listed again now, not this job's list: a job started after
            # a newer ingest measures clips this one never saw, and their entries must stay
            swept = await asyncio.to_thread(
                lambda: sweep_measures(self._store, project, discover_clips(self._store, project))
            )
            if swept.removed or swept.stamped:
                log.info(
                    "swept %s/_measures: %d removed, %d stamped%s",
                    project.prefix,
                    swept.removed,
                    swept.stamped,
                    " (more left)" if swept.more else "",
                )
        except LoraforgeError as exc:
            log.warning("measures sweep of %s failed: %s", project.prefix, exc)
        return self._outcome(job, record, prefix)

    async def _compute(
        self,
        job: Job,
        ctx: JobContext,
        params: CurationParams,
        policy: CurationPolicy,
        clips: list[IngestedClip],
        references: list[str],
        dataset_id: str,
        prefix: str,
    ) -> dict[str, Any]:
        """Measure, decide, select, write and commit the dataset; returns its record."""
        with tempfile.TemporaryDirectory(prefix=f"curation-{job.id}-") as tmp:
            work = Path(tmp)
            refs = [work / "refs" / Path(r).name for r in references]
            measured_by: dict[str, int] = {}
            rates = {c.clip_id: c.training_fps for c in clips if c.training_fps is not None}
            if self._bus is not None:
                measured, measured_by = await self._measure_on_queue(
                    job, ctx, clips, policy, params, dataset_id, prefix
                )
                await self._download([], references, work, ctx, policy.frames_per_clip)
                result = await self._curate(
                    [], policy, refs, work / "out", ctx, 0, measured=measured, training_fps=rates
                )
            else:
                items = await self._download(clips, references, work, ctx, policy.frames_per_clip)
                result = await self._curate(
                    items, policy, refs, work / "out", ctx, len(clips), training_fps=rates
                )
            # the type's dataset builder: derived items (masked, filled, cropped frames) from
            # the selection, written beside the manifest (builders/__init__.py)
            await ctx.progress(_MEASURE[1], f"building the {policy.lora_type} dataset")
            build = await asyncio.to_thread(self._build, policy, result, clips, refs, work)
            await ctx.progress(_UPLOAD[0], "storing the dataset")
            record = self._record(job, params, policy, dataset_id, clips, result, references)
            if build is not None:
                entries = {
                    c.clip_id: {
                        "clip_id": c.clip_id,
                        "key": c.key,
                        "sha256": c.sha256,
                        "source_id": c.source_id,
                        "keyframe_keys": list(c.keyframe_keys),
                    }
                    for c in clips
                }
                apply_to_record(record, build, work / "out", prefix, entries)
            record["measured_by"] = measured_by  # worker -> clips it measured (queue mode)
            artifacts = await self._upload(work / "out", prefix, ctx)
            record["artifacts"] = [a.model_dump() for a in artifacts]
            # through the model: a record readers could not read is never committed
            stored = await asyncio.to_thread(
                self._store.put_json,
                Bucket.DATASETS,
                f"{prefix}/{layout.RECORD}",
                DatasetRecord.model_validate(record).dump(),
            )
            record["artifacts"].append(
                ArtifactRef(
                    bucket=stored.bucket,
                    key=stored.key,
                    kind="dataset",
                    size=stored.size,
                    sha256=stored.sha256 or "",
                ).model_dump()
            )
        return record

    def _build(
        self,
        policy: CurationPolicy,
        result: CurationResult,
        clips: list[IngestedClip],
        refs: list[Path],
        work: Path,
    ) -> Any:
        """Run the type's dataset builder on the selection (None: the type has none)."""
        by_id = {c.clip_id: c for c in clips}

        def clip_path(clip_id: str) -> Path:
            c = by_id[clip_id]
            path = work / "clips" / f"{clip_id}{PurePosixPath(c.key).suffix.lower()}"
            if not path.is_file():  # measured from its proxy (or on another worker)
                self._store.download(Bucket.CLIPS, c.key, path)
            return path

        return build_dataset(
            result,
            work / "out",
            self._people_detector(),
            self._face_backend(),
            clip_path,
            refs,
            self._models_dir,
        )

    # -- one curation per dataset ------------------------------------------------------------

    async def _follow_other(self, job: Job, ctx: JobContext, prefix: str) -> dict[str, Any] | None:
        """Another live job claims this dataset, or this very job runs on another worker (a
        request redelivered while its worker was busy, not dead): wait for the commit and
        return the record, mirroring the other job's progress. None when nobody live holds the
        dataset (or the holder ended without a commit): this job computes it."""
        while True:
            other = await self._claimant(job, prefix)
            if other is None:
                return None
            if other.id == job.id:
                await ctx.check_cancelled()
            else:
                await ctx.progress(
                    other.progress,
                    f"following job {other.id} (same clips and policy): {other.message}",
                )
            await asyncio.sleep(self._poll_s)
            committed = await self._committed(prefix)
            if committed is not None:
                return committed

    async def _claimant(self, job: Job, prefix: str) -> Job | None:
        """The live job computing the dataset that this run should follow, if any: another
        job that is running, or `job` itself when a live worker other than this one beats its
        claim. A claim of a job still PENDING (a start claims its dataset at once) is not
        followed: that job computes nothing yet, it may be queued behind this very run on this
        worker (which then waited for it forever), and when it runs it finds this run's claim
        and follows it."""
        try:
            claim = await asyncio.to_thread(
                self._store.get_json, Bucket.DATASETS, f"{prefix}/{CLAIM}"
            )
        except (NotFound, ValueError):
            return None
        if not isinstance(claim, dict) or not claim.get("job_id"):
            return None
        if claim["job_id"] == job.id:
            beat = claim.get("beat")
            live = (
                claim.get("worker") not in (None, self.worker_id)
                and isinstance(beat, int | float)
                and time.time() - beat < CLAIM_STALE_S
            )
            return job if live else None
        if self._jobs is None:
            return None
        try:
            other = await self._jobs.get(job.tenant, job.project, str(claim["job_id"]))
        except NotFound:
            return None
        return other if other.state is JobState.RUNNING else None

    async def _beat_claim(self, job: Job, prefix: str, done: asyncio.Event) -> None:
        """Rewrite this worker's claim every CLAIM_BEAT_S until `done`."""
        while not done.is_set():
            try:
                await asyncio.to_thread(
                    self._store.put_json,
                    Bucket.DATASETS,
                    f"{prefix}/{CLAIM}",
                    {"job_id": job.id, "worker": self.worker_id, "beat": time.time()},
                )
            except LoraforgeError as exc:  # a missed beat only risks a duplicate computation
                log.warning("could not renew the claim of %s: %s", prefix, exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), CLAIM_BEAT_S)

    def _drop_claim(self, prefix: str, job_id: str) -> None:
        """The claim a start wrote for this job, when the job found the dataset committed."""
        try:
            claim = self._store.get_json(Bucket.DATASETS, f"{prefix}/{CLAIM}")
            if isinstance(claim, dict) and claim.get("job_id") == job_id:
                self._store.delete(Bucket.DATASETS, f"{prefix}/{CLAIM}")
        except (LoraforgeError, ValueError) as exc:
            log.debug("claim of %s left in place: %s", prefix, exc)

    def _clean_up(self, prefix: str) -> None:
        """After the commit: the claim and the per-clip measurements are not part of the dataset."""
        for key in [
            f"{prefix}/{CLAIM}",
            *(o.key for o in self._store.list(Bucket.DATASETS, f"{prefix}/{MEASURED}/")),
        ]:
            try:
                self._store.delete(Bucket.DATASETS, key)
            except (
                LoraforgeError
            ) as exc:  # leftovers are harmless: nothing reads them after the commit
                log.warning("could not delete %s: %s", key, exc)

    # -- measuring through the work queue ----------------------------------------------------

    async def _measure_on_queue(
        self,
        job: Job,
        ctx: JobContext,
        clips: list[IngestedClip],
        policy: CurationPolicy,
        params: CurationParams,
        dataset_id: str,
        prefix: str,
    ) -> tuple[list[Any], dict[str, int]]:
        """One `curation.measure` task per clip not measured yet; any curation process measures
        it and stores the result under `datasets/_measures/<measure_key>/`; this job waits for
        all of them. Keyed by code, policy (less its selection-only fields), type and clip
        content, so a retried job, and a new curation that only asks another selection, reuse
        them."""
        assert self._bus is not None
        project = ProjectRef(job.tenant, job.project)
        cache = layout.measures_prefix(project, measure_key(policy, params.lora_type.value))
        await asyncio.to_thread(touch_measures, self._store, cache, params.lora_type.value)
        names = {c.clip_id: measured_name(c) for c in clips}
        stored = await asyncio.to_thread(
            lambda: {
                PurePosixPath(o.key).name for o in self._store.list(Bucket.DATASETS, f"{cache}/")
            }
        )
        policy_doc = policy.model_dump(mode="json")
        for c in clips:
            if names[c.clip_id] in stored:
                continue
            # The measure key is in the id: a retry on other code (a rolling upgrade) waits
            # under another key, and its tasks must not be dropped as duplicates of the first.
            await self._bus.publish(
                Event(
                    id=f"curation-measure-{job.id}-{c.clip_id}-{PurePosixPath(cache).name}",
                    type=MEASURE_EVENT,
                    tenant=job.tenant,
                    project=job.project,
                    data={
                        "job_id": job.id,
                        "dataset_id": dataset_id,
                        "result_key": f"{cache}/{names[c.clip_id]}",
                        "error_key": f"{prefix}/{MEASURED}/{c.clip_id}.error.json",
                        "policy": policy_doc,
                        "lora_type": params.lora_type.value,
                        "clip": {
                            "clip_id": c.clip_id,
                            "key": c.key,
                            "source_id": c.source_id,
                            "sha256": c.sha256,
                            "analysis_key": c.analysis_key,
                        },
                    },
                )
            )
        wanted = set(names.values())
        done: set[str] = set()
        last_change = asyncio.get_running_loop().time()
        # set when this process stores a measurement: the listing runs again at once instead
        # of up to poll_s later (other processes' results are polled)
        woken = asyncio.Event()
        self._measure_waiters.add(woken)
        try:
            while True:
                woken.clear()
                listed = await asyncio.to_thread(
                    lambda: {
                        PurePosixPath(o.key).name
                        for o in self._store.list(Bucket.DATASETS, f"{cache}/")
                    }
                )
                errors = await asyncio.to_thread(
                    lambda: [
                        o.key for o in self._store.list(Bucket.DATASETS, f"{prefix}/{MEASURED}/")
                    ]
                )
                for key in errors:
                    error = await asyncio.to_thread(self._store.get_json, Bucket.DATASETS, key)
                    if isinstance(error, dict) and error.get("job_id") == job.id:
                        if error.get("permanent"):
                            raise InvalidInput(error.get("message", "a clip could not be measured"))
                        raise LoraforgeError(error.get("message", "a clip could not be measured"))
                now_done = listed & wanted
                if now_done != done:
                    done, last_change = now_done, asyncio.get_running_loop().time()
                await ctx.progress(
                    _lerp(_DOWNLOAD_AND_MEASURE, len(done) / len(wanted)),
                    f"measured {len(done)}/{len(wanted)} clips",
                )
                if done == wanted:
                    break
                if asyncio.get_running_loop().time() - last_change > self._measure_stall_s:
                    raise LoraforgeError(
                        f"no clip measured for {self._measure_stall_s:.0f} s "
                        f"({len(done)}/{len(wanted)} done); is a curation worker running?"
                    )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(woken.wait(), self._poll_s)
        finally:
            self._measure_waiters.discard(woken)
        out: list[Any] = []
        by_worker: dict[str, int] = {}
        for c in clips:
            blob = await asyncio.to_thread(
                self._store.get_bytes, Bucket.DATASETS, f"{cache}/{names[c.clip_id]}"
            )
            # written by a curation worker of this deployment into the datasets bucket, which
            # only the services write, by the same code (code_fingerprint is in the key)
            doc = pickle.loads(blob)
            measured = doc["measured"]
            # the same clip may carry another id in another clip set
            measured.metrics.clip_id, measured.metrics.source_id = c.clip_id, c.source_id
            out.append(measured)
            by_worker[doc["worker"]] = by_worker.get(doc["worker"], 0) + 1
        return out, by_worker

    async def start_measuring(self, concurrency: int | None = None) -> None:
        """Take `curation.measure` tasks: `concurrency` clips at a time in this process
        (default `threads.measuring_threads`: one more than the cores, so that a core does
        not idle while a task fetches its proxy from the store)."""
        if self._bus is None:
            raise RuntimeError("measuring from the queue needs the worker built with jobs and bus")
        n = max(1, concurrency or measuring_threads())
        self._measure_threads = measuring_pool(n)
        for _ in range(n):
            await self._bus.subscribe(MEASURE_DURABLE, MEASURE_EVENT, self.measure_task)

    async def measure_task(self, event: Event, delivery: Delivery) -> None:
        data = event.data
        try:
            clip = IngestedClip(
                **{k: data["clip"][k] for k in ("clip_id", "key", "source_id", "sha256")},
                analysis_key=data["clip"].get("analysis_key", ""),
            )
            result_key, error_key = str(data["result_key"]), str(data["error_key"])
            job_id = str(data["job_id"])
            policy = CurationPolicy.model_validate(data["policy"])
            validate_key_part(clip.clip_id)
        except (KeyError, TypeError, ValidationError, InvalidInput) as exc:
            raise InvalidInput(f"malformed curation.measure task {event.id}: {exc}") from None
        project = ProjectRef(event.tenant, event.project)
        inside = project.key("datasets") + "/"
        if not (
            result_key.startswith(inside)
            and error_key.startswith(inside)
            and clip.key.startswith(project.prefix)
        ) or ".." in f"{result_key}/{error_key}".split("/"):
            raise InvalidInput(
                f"curation.measure task {event.id} names keys outside {project.prefix}"
            )
        if self._jobs is not None:
            try:
                owner = await self._jobs.get(event.tenant, event.project, job_id)
            except NotFound:
                return  # the job is gone: nobody waits for this clip
            if owner.state.terminal or owner.cancel_requested:
                return
        if await asyncio.to_thread(self._store.stat, Bucket.DATASETS, result_key) is not None:
            return  # measured before (a redelivery, or another job with the same measure_key)
        try:
            measured = await asyncio.get_running_loop().run_in_executor(
                self._measure_threads, self._measure_one, clip, policy
            )
        except Exception as exc:
            permanent = isinstance(exc, InvalidInput)  # e.g. an undecodable clip
            if permanent or delivery.attempt >= self._bus.settings.max_deliver:  # type: ignore[union-attr]
                await asyncio.to_thread(
                    self._store.put_json,
                    Bucket.DATASETS,
                    error_key,
                    {"job_id": job_id, "permanent": permanent, "message": f"{clip.clip_id}: {exc}"},
                )
                self._wake_measure_waiters()
            raise
        if await asyncio.to_thread(self._store.stat, Bucket.DATASETS, result_key) is not None:
            # Another delivery of this task (a redelivery while this one was measuring under
            # load) stored it first: entries are immutable, the job may already have read it.
            return
        blob = pickle.dumps(
            {"worker": self.worker_id, "measured": measured}, protocol=pickle.HIGHEST_PROTOCOL
        )
        await asyncio.to_thread(
            self._store.put_bytes,
            Bucket.DATASETS,
            result_key,
            blob,
            content_type="application/octet-stream",
        )
        self._wake_measure_waiters()

    def _wake_measure_waiters(self) -> None:
        for stored in self._measure_waiters:
            stored.set()

    def _measure_one(self, clip: IngestedClip, policy: CurationPolicy) -> Any:
        backend = self._face_backend()
        with tempfile.TemporaryDirectory(prefix="curation-measure-") as tmp:
            path, analysis = fetch_clip(self._store, clip, Path(tmp), policy.frames_per_clip)
            item = MediaItem(
                path, clip_id=clip.clip_id, source_id=clip.source_id, analysis=analysis
            )
            return measure_all([item], policy, backend, self._people_detector(), workers=1)[0]

    # -- steps -------------------------------------------------------------------------------

    async def _committed(self, prefix: str) -> dict[str, Any] | None:
        key = f"{prefix}/{layout.RECORD}"
        if await asyncio.to_thread(self._store.stat, Bucket.DATASETS, key) is None:
            return None
        try:
            doc = await asyncio.to_thread(self._store.get_json, Bucket.DATASETS, key)
        except NotFound:
            return None
        try:
            record = DatasetRecord.model_validate(doc).dump()
        except ValidationError as exc:
            log.warning("dataset record %s is not a dataset record (%s); curating again", key, exc)
            return None
        st = await asyncio.to_thread(self._store.stat, Bucket.DATASETS, key)
        record.setdefault("artifacts", [])
        if st is not None and not any(a.get("kind") == "dataset" for a in record["artifacts"]):
            record["artifacts"].append(
                ArtifactRef(bucket=st.bucket, key=key, kind="dataset", size=st.size).model_dump()
            )
        return record

    async def _download(
        self,
        clips: list[IngestedClip],
        references: list[str],
        work: Path,
        ctx: JobContext,
        n_frames: int,
    ) -> list[Any]:
        total = len(clips) + len(references)
        done = 0
        items = []
        for c in clips:
            path, analysis = await asyncio.to_thread(
                fetch_clip, self._store, c, work / "clips", n_frames
            )
            items.append(
                MediaItem(path, clip_id=c.clip_id, source_id=c.source_id, analysis=analysis)
            )
            done += 1
            await ctx.progress(_lerp(_DOWNLOAD, done / total), f"downloaded {done}/{total} files")
        for ref in references:
            await asyncio.to_thread(
                self._store.download, Bucket.RAW, ref, work / "refs" / PurePosixPath(ref).name
            )
            done += 1
            await ctx.progress(_lerp(_DOWNLOAD, done / total), f"downloaded {done}/{total} files")
        return items

    def preload(self) -> threading.Thread:
        """Load what measuring and deciding need (the face backend, the person detector, the
        text reader, scikit-learn for identity clusters: ~2.5 s of CPU here) on a thread of
        its own, so that the service's first job does not wait for it. A job that needs a
        model before the thread loaded it waits on the same lock; a model that cannot load is
        logged here and fails that job with its own message."""

        def load() -> None:
            try:
                self._face_backend()
                self._people_detector()
                default_reader()
                identity.hdbscan_class()
            except Exception as exc:  # the job reports it where it matters
                log.warning("curation models not preloaded: %s", exc)

        thread = threading.Thread(target=load, name="curation-preload", daemon=True)
        thread.start()
        return thread

    def _face_backend(self) -> FaceBackend:
        with self._backend_lock:
            if self._backend is None:
                self._backend = self._backend_factory()
            return self._backend

    def _people_detector(self) -> PeopleDetector:
        """One for the worker's life, as the face backend: its TFLite interpreters load once per
        thread that uses them. Made per clip, it loaded both models again for every clip."""
        with self._backend_lock:
            if self._people is None:
                self._people = PeopleDetector()
            return self._people

    async def _curate(
        self,
        items: list[MediaItem],
        policy: CurationPolicy,
        refs: list[Path],
        out: Path,
        ctx: JobContext,
        n_clips: int,
        measured: list[MeasuredClip] | None = None,
        training_fps: dict[str, float] | None = None,
    ) -> CurationResult:
        cancelled = threading.Event()
        backend = _CountingBackend(await asyncio.to_thread(self._face_backend), cancelled)
        people = await asyncio.to_thread(self._people_detector)  # loads models: off the loop
        expected = max(1, n_clips * policy.frames_per_clip + len(refs))
        task = asyncio.ensure_future(
            asyncio.to_thread(
                curate,
                items,
                policy,
                references=refs,
                backend=backend,
                people=people,
                out_dir=out,
                measured=measured,
                training_fps=training_fps,
            )
        )
        try:
            while not task.done():
                await asyncio.wait({task}, timeout=self._poll_s)
                if task.done():
                    break
                frac = min(backend.calls / expected, 1.0)
                await ctx.progress(
                    _lerp(_MEASURE, frac),
                    f"measuring clips ({min(backend.calls, expected)}/{expected} frames)",
                )
        except Cancelled:
            cancelled.set()
            try:
                await task  # the thread stops at its next frame
            except Exception as exc:
                log.debug("curation thread ended with %s after cancel", exc)
            raise
        result = task.result()
        await ctx.progress(_MEASURE[1], "measured every clip")
        return result

    async def _upload(self, out: Path, prefix: str, ctx: JobContext) -> list[ArtifactRef]:
        """The dataset's files (not yet its record), UPLOADS_IN_FLIGHT at a time: each is a
        few small requests (staging, verify, commit) that mostly wait on the store."""
        files = await asyncio.to_thread(lambda: sorted(p for p in out.rglob("*") if p.is_file()))
        slots = asyncio.Semaphore(UPLOADS_IN_FLIGHT)

        async def one(path: Path) -> ArtifactRef:
            rel = path.relative_to(out).as_posix()
            ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            async with slots:
                st = await asyncio.to_thread(
                    self._store.put_file,
                    Bucket.DATASETS,
                    f"{prefix}/{rel}",
                    path,
                    content_type=ctype,
                )
            return ArtifactRef(
                bucket=st.bucket,
                key=st.key,
                kind=_artifact_kind(rel),
                size=st.size,
                sha256=st.sha256 or "",
            )

        tasks = [asyncio.create_task(one(p)) for p in files]
        try:
            for i, finished in enumerate(asyncio.as_completed(tasks)):
                await finished
                if i % 5 == 4 or i == len(files) - 1:
                    await ctx.progress(
                        _lerp(_UPLOAD, (i + 1) / len(files)), f"stored {i + 1}/{len(files)} files"
                    )
        except BaseException:
            # a failed upload (or a cancel): the files not started are not started, those in
            # flight (a thread each) end before the job reports it, and their errors are read
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        return [t.result() for t in tasks]

    def _record(
        self,
        job: Job,
        params: CurationParams,
        policy: CurationPolicy,
        dataset_id: str,
        clips: list[IngestedClip],
        result: CurationResult,
        references: list[str],
    ) -> dict[str, Any]:
        by_id = {c.clip_id: c for c in clips}
        selected = [
            {
                "clip_id": cid,
                "key": by_id[cid].key,
                "sha256": by_id[cid].sha256,
                "source_id": by_id[cid].source_id,
                "keyframe_keys": list(by_id[cid].keyframe_keys),
            }
            for cid in result.selection.selected
        ]
        kept = sum(c.decision.keep for c in result.clips)
        return {
            "version": DATASET_VERSION,
            "id": dataset_id,
            "tenant": job.tenant,
            "project": job.project,
            "job_id": job.id,
            "lora_type": params.lora_type.value,
            "policy_hash": policy.policy_hash,  # which policy ran (the type's defaults + overrides)
            "policy": policy.model_dump(mode="json"),
            "reference_keys": references,
            "backend": result.backend,
            "counts": {
                "clips": len(result.clips),
                "kept": kept,
                "rejected": len(result.clips) - kept,
                "selected": len(selected),
            },
            "rejection_counts": result.rejection_counts(),
            # flags do not reject: e.g. low_frame_rate, a source slower than the training rate
            "flag_counts": dict(
                sorted(Counter(f for c in result.clips for f in c.decision.flag_codes).items())
            ),
            "missing": [m.message for m in result.selection.missing],
            "target_size": result.selection.target_size,
            "selected": selected,
            "content_hash": selection_hash(selected),
            "inputs": [{"clip_id": c.clip_id, "key": c.key, "sha256": c.sha256} for c in clips],
            "manifest": layout.MANIFEST,
            "report": layout.REPORT,
        }

    def _outcome(self, job: Job, record: dict[str, Any], prefix: str) -> JobOutcome:
        counts = record["counts"]
        data = {
            "job_id": job.id,
            "dataset_id": record["id"],
            "kept": counts["kept"],
            "rejected": counts["rejected"],
            "selected": counts["selected"],
            "missing": record["missing"],
            "lora_type": record["lora_type"],
            "prefix": prefix,
        }
        event = Event(
            id=f"curation-curated-{job.id}",
            type=CURATED_EVENT,
            tenant=job.tenant,
            project=job.project,
            data=data,
        )
        return JobOutcome(
            message=(
                f"dataset {record['id']}: {counts['selected']} selected, {counts['kept']} kept, "
                f"{counts['rejected']} rejected"
            ),
            artifacts=[ArtifactRef(**a) for a in record.get("artifacts", [])],
            result={
                **data,
                "rejection_counts": record.get("rejection_counts", {}),
                "flag_counts": record.get("flag_counts", {}),
                "report_key": f"{prefix}/{layout.REPORT}",
                "manifest_key": f"{prefix}/{layout.MANIFEST}",
                "dataset_key": f"{prefix}/{layout.RECORD}",
            },
            events=[event],
        )


# dataset files stored at once (_upload): 27 files one at a time took 0.33 s on loopback
UPLOADS_IN_FLIGHT = 4


def _artifact_kind(rel: str) -> str:
    if rel.startswith("manifest."):
        return "manifest"
    if rel == layout.REPORT:
        return "report"
    if rel.startswith("thumbs/"):
        return "thumbnail"
    if rel.startswith("derived/"):
        return "derived"  # a builder's training item (builders/__init__.py)
    if rel.endswith(".png"):
        return "chart"
    return "file"


def _lerp(span: tuple[float, float], f: float) -> float:
    return span[0] + (span[1] - span[0]) * max(0.0, min(1.0, f))


# -- starts --------------------------------------------------------------------------------


class CurationJobs(JobService):
    """Curation's job calls. A start for a dataset that another live job is computing (same
    clips, policy, references and type: the same `dataset_id`) returns that job, so a user's
    `loraforge curate` during the automatic curation follows it instead of queueing a second
    one; a start after it committed gets a job of its own that finds the dataset at once."""

    def __init__(self, jobs: JobStore, bus: EventBus, store: ObjectStore):
        super().__init__("curation", jobs, bus)
        self._store = store

    async def start(
        self, tenant: str, project: str, params: dict[str, Any], request_id: str | None = None
    ) -> Job:
        if request_id is not None:
            try:  # the same request again: its own job, whatever it became (the base start
                # also re-publishes the request of a job still PENDING, healing a lost publish)
                await self._jobs.get(
                    tenant, project, new_job_id(request_id, scope=f"{tenant}/{project}/{self.kind}")
                )
                return await super().start(tenant, project, params, request_id)
            except NotFound:
                pass
        prefix, running = await self._live_job_for(tenant, project, params)
        if running is not None:
            log.info(
                "curation start for %s/%s: job %s is computing the same dataset; returning it",
                tenant,
                project,
                running.id,
            )
            return running
        job = await super().start(tenant, project, params, request_id)
        if prefix is not None and not job.state.terminal:
            # claimed from the start, so that a start while this one is still queued finds it
            await asyncio.to_thread(
                self._store.put_json, Bucket.DATASETS, f"{prefix}/{CLAIM}", {"job_id": job.id}
            )
        return job

    async def _live_job_for(
        self, tenant: str, project: str, params: dict[str, Any]
    ) -> tuple[str | None, Job | None]:
        """(the dataset's prefix, the live job claiming it); (None, None) when the dataset
        cannot be named yet (no clips, bad parameters: the job itself reports those)."""
        try:
            p = CurationParams.model_validate(params)
            policy = build_policy(p)
            ref = ProjectRef(tenant, project)
            references = check_reference_keys(ref, p.reference_keys)
            clips = await asyncio.to_thread(discover_clips, self._store, ref)
        except (LoraforgeError, ValidationError, ValueError):
            return None, None
        if not clips:
            return None, None
        prefix = layout.dataset_prefix(
            ref, dataset_id_for(clips, policy, references, p.lora_type.value)
        )
        try:
            claim = await asyncio.to_thread(
                self._store.get_json, Bucket.DATASETS, f"{prefix}/{CLAIM}"
            )
            job = await self._jobs.get(tenant, project, str(claim["job_id"]))
        except (LoraforgeError, ValueError, KeyError, TypeError):
            return prefix, None
        return prefix, None if job.state.terminal else job


# -- auto-curation on ingest ----------------------------------------------------------------


class AutoCurator:
    """`clips.ingested` -> a curation job for that project (durable consumer `curation-auto`).

    The job's request id derives from the event id, so a redelivered event finds the job it
    started the first time. Event data may carry `curation` params (reference_keys, ...).
    The LoRA type, and so the policy, is the project's when one is known (`lora_type`): the
    ingest request's (`loraforge ingest --type`, carried in the event's `curation`), else the
    type of the project's captioning defaults (`loraforge caption` / `run` record it), else
    character.
    """

    DURABLE = "curation-auto"

    def __init__(
        self,
        jobs: JobService,
        bus: EventBus,
        store: ObjectStore | None = None,
        *,
        enabled: bool = True,
    ):
        self._jobs = jobs
        self._bus = bus
        self._store = store
        self.enabled = enabled

    async def project_lora_type(self, ref: ProjectRef) -> str | None:
        """The type in the project's captioning defaults, if it has any."""
        if self._store is None:
            return None
        defaults = await asyncio.to_thread(load_defaults, self._store, ref)
        return (defaults or {}).get("lora_type") or None

    async def start(self) -> None:
        if self.enabled:
            await self._bus.subscribe(self.DURABLE, INGESTED_EVENT, self.handle)

    async def handle(self, event: Event, delivery: Delivery) -> None:
        if event.data.get("clips") == 0:
            log.info("clips.ingested %s brought no clips; nothing to curate", event.id)
            return
        given = event.data.get("curation")
        raw: dict[str, Any] = dict(given) if isinstance(given, dict) else {}
        if not raw.get("lora_type"):
            known = await self.project_lora_type(ProjectRef(event.tenant, event.project))
            if known:
                raw["lora_type"] = known
        params = CurationParams.parse(**raw)
        build_policy(params)
        check_reference_keys(ProjectRef(event.tenant, event.project), params.reference_keys)
        job = await self._jobs.start(
            event.tenant,
            event.project,
            params.model_dump(mode="json"),
            request_id=follow_up_request_id(event.id),
        )
        log.info(
            "clips.ingested %s -> %s curation job %s (%s)",
            event.id,
            params.lora_type.value,
            job.id,
            job.state,
        )
