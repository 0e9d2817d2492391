"""The ingest job: raw objects (or URLs) in, clips + keyframes + per-source manifests out.

Used through `JobWorker("ingest", jobs, bus, IngestWork(store).run)`. For each source of the
job (see `IngestParams.sources`):

1. resolve it: an object key in `raw` under the job's own `<tenant>/<project>/` (anything else
   fails the whole job with `ForeignSource`), or an http(s) URL (fetched by the core's url
   module, which says clearly when yt-dlp is missing);
2. download it to a per-job temp folder; zips are expanded safely by the core's
   `extract_zip`, each member becoming a source of its own;
3. per file: hash it; when `manifest-<options_hash>.json` of that sha256 already exists the
   file is done (no decode, no upload); otherwise keep the original content-addressed in `raw`,
   run the media core (`process_many`), upload clips and keyframes, and write the manifest
   LAST (it is the commit marker: a crash before it leaves only objects a retry overwrites).

Per-file errors never stop the other files. Every file failed: `NoSourceUsable` (job FAILED,
each file's error in the message and in `result`). Some failed: SUCCEEDED, errors in `result`.
Blocking work runs in threads; while it runs, progress is reported and cancellation polled
every `tick_s`, and a cancellation reaches the core through its `cancel_check`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import hashlib
import json
import logging
import shutil
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any, Literal, TypeVar

from pydantic import ValidationError

from loraforge.ingest import layout
from loraforge.ingest.archive import extract_zip
from loraforge.ingest.errors import IngestError, MissingFile, NoSourceUsable, UnsupportedFormat
from loraforge.ingest.hashing import sha256_file
from loraforge.ingest.manifest import (
    MANIFEST_VERSION,
    ClipEntry,
    FileReport,
    FrameRate,
    IngestFailure,
    SourceManifest,
    SourceProbe,
    SourceRef,
)
from loraforge.ingest.models import FileOutcome, SourceResult
from loraforge.ingest.options import ClipOptions, CutOptions, IngestOptions
from loraforge.ingest.pipeline import process_many
from loraforge.ingest.sniff import ACCEPTED_FORMATS, MediaKind, sniff
from loraforge.ingest.tools import MediaTools
from loraforge.ingest.url import fetch_url
from loraforge.runtime.egress import EgressPolicy
from loraforge.runtime.errors import Cancelled, InvalidInput, LoraforgeError
from loraforge.runtime.events import Event
from loraforge.runtime.job_service import JobContext, JobOutcome
from loraforge.runtime.jobs import ArtifactRef, Job
from loraforge.runtime.keys import ProjectRef
from loraforge.runtime.params import IngestParams
from loraforge.runtime.storage import Bucket, ObjectStore

log = logging.getLogger(__name__)

INGESTED_EVENT = "clips.ingested"
_T = TypeVar("_T")
ProcessMany = Callable[..., list[FileOutcome]]


def ingest_options(params: IngestParams) -> IngestOptions:
    """The core's options for a job's parameters (the core's defaults for everything else)."""
    default_target = ClipOptions.target_seconds
    target = min(max(default_target, params.min_s), params.max_s)
    try:
        return IngestOptions(
            clips=ClipOptions(
                min_seconds=params.min_s, max_seconds=params.max_s, target_seconds=target
            ),
            cut=CutOptions(fps=params.fps, max_long_side=params.max_long_side),
            photo_max_long_side=params.max_long_side,
        )
    except IngestError:
        raise
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"ingest options do not fit together: {exc}") from exc


def options_hash(options: IngestOptions) -> str:
    """Stable over runs: every option (defaults included) plus the manifest version."""
    blob = json.dumps(
        {"manifest_version": MANIFEST_VERSION, "options": dataclasses.asdict(options)},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass
class _File:
    """One file to ingest (a zip member counts as one)."""

    name: str
    source: str  # the job's source string it came from
    path: Path
    archive: str | None = None


@dataclass
class _Tracker:
    """Shared between the event loop and a worker thread: progress in, cancellation out."""

    fraction: float = 0.0
    message: str = ""
    cancelled: threading.Event = field(default_factory=threading.Event)
    reported: tuple[float, str] = (-1.0, "")

    def set(self, fraction: float, message: str) -> None:
        self.fraction, self.message = fraction, message

    def cancel_check(self) -> bool:
        return self.cancelled.is_set()


@dataclass
class _JobRun:
    job: Job
    ctx: JobContext
    ref: ProjectRef
    options: IngestOptions
    options_hash: str
    workdir: Path
    reports: list[FileReport] = field(default_factory=list)
    artifacts: dict[tuple[str, str], ArtifactRef] = field(default_factory=dict)
    tracker: _Tracker = field(default_factory=_Tracker)

    def add_artifact(
        self, bucket: Bucket, key: str, kind: str, size: int = 0, sha256: str = ""
    ) -> None:
        self.artifacts.setdefault(
            (bucket.value, key),
            ArtifactRef(bucket=bucket.value, key=key, kind=kind, size=size, sha256=sha256),
        )


class IngestWork:
    """The work of an ingest job. Construct once per process with its clients."""

    def __init__(
        self,
        store: ObjectStore,
        *,
        workdir_root: Path | None = None,
        tools: MediaTools | None = None,
        process: ProcessMany = process_many,
        tick_s: float = 0.5,
        egress: EgressPolicy | None = None,
    ):
        self._store = store
        # URL sources: the egress guard from settings (main.py); the default refuses them.
        self._egress = egress or EgressPolicy()
        self._workdir_root = workdir_root
        self._tools = tools
        self._process = process
        self._tick_s = tick_s

    # -- the job -------------------------------------------------------------------------------

    async def run(self, job: Job, ctx: JobContext) -> JobOutcome:
        try:
            params = IngestParams.model_validate(job.params)
        except ValidationError as exc:
            raise InvalidInput(f"job {job.id} carries invalid ingest parameters: {exc}") from None
        ref = ProjectRef(job.tenant, job.project)
        sources = [layout.check_source(ref, s) for s in params.sources]
        options = ingest_options(params)
        tools = self._tools
        if tools is None:
            tools = await asyncio.to_thread(MediaTools.discover)
        root = self._workdir_root
        if root is not None:
            root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=f"ingest-{job.id}-", dir=root) as tmp:
            run = _JobRun(job, ctx, ref, options, options_hash(options), Path(tmp))
            total = len(sources)
            await ctx.progress(0.0, f"ingesting {total} source(s)")
            for i, source in enumerate(sources):
                span = (i / total, (i + 1) / total)
                await self._ingest_source(run, i, source, span, tools)
                await ctx.progress(span[1], f"{i + 1}/{total} source(s) done", **self._result(run))
        return self._outcome(run)

    def _outcome(self, run: _JobRun) -> JobOutcome:
        result = self._result(run)
        failed = [r for r in run.reports if r.error]
        if run.reports and len(failed) == len(run.reports):
            lines = "; ".join(r.error or "" for r in failed)
            if any(r.error_type == "internal" for r in failed):
                # Not the input's fault: let the job worker retry (and fail after the last try).
                raise LoraforgeError(f"every source failed, some for internal reasons: {lines}")
            raise NoSourceUsable(f"no source could be ingested ({len(failed)} failed): {lines}")
        manifests = [r.manifest_key for r in run.reports if r.manifest_key and not r.error]
        data = {"job_id": run.job.id, "clips": result["clips"], "manifests": manifests}
        lora_type = run.job.params.get("lora_type")
        if lora_type:  # the automatic curation (curation-auto) uses this type's policy
            data["curation"] = {"lora_type": lora_type}
        event = Event(
            id=layout.ingested_event_id(run.job.id),
            type=INGESTED_EVENT,
            tenant=run.job.tenant,
            project=run.job.project,
            data=data,
        )
        message = f"{result['clips']} clip(s) from {len(run.reports) - len(failed)} source(s)"
        if failed:
            message += f"; {len(failed)} file(s) failed"
        return JobOutcome(
            message=message, artifacts=list(run.artifacts.values()), result=result, events=[event]
        )

    @staticmethod
    def _result(run: _JobRun) -> dict[str, Any]:
        return {
            "sources": [r.model_dump(mode="json") for r in run.reports],
            "clips": sum(r.clips for r in run.reports),
            "errors": [
                r.model_dump(mode="json", include={"source", "file", "error", "error_type"})
                for r in run.reports
                if r.error
            ],
            "manifests": [r.manifest_key for r in run.reports if r.manifest_key],
            "options_hash": run.options_hash,
        }

    # -- sources -------------------------------------------------------------------------------

    async def _ingest_source(
        self, run: _JobRun, index: int, source: str, span: tuple[float, float], tools: MediaTools
    ) -> None:
        folder = run.workdir / f"{index:04d}"
        folder.mkdir()
        name = PurePosixPath(source).name or source
        try:
            if source.startswith(("http://", "https://")):
                path = await self._blocking(
                    run,
                    functools.partial(fetch_url, policy=self._egress),
                    source,
                    folder / "download",
                )
                name = path.name
            else:
                sha = layout.sha_of_original_key(run.ref, source)
                if sha is not None and await self._reuse(run, _File(name, source, Path(name)), sha):
                    return  # done before: not even downloaded
                if await asyncio.to_thread(self._store.stat, Bucket.RAW, source) is None:
                    raise MissingFile(f"{name}: raw/{source} does not exist; upload it again")
                path = folder / _safe_name(name)
                await self._blocking(run, self._store.download, Bucket.RAW, source, path)
            files = [_File(name, source, path)]
            if _is_zip(path):
                members = await self._blocking(
                    run, extract_zip, path, folder / "unzipped", run.options.archive
                )
                root = folder / "unzipped"
                files = [
                    _File(str(m.relative_to(root)), source, m, archive=source) for m in members
                ]
        except IngestError as exc:
            run.reports.append(
                FileReport(source=source, file=name, error=str(exc), error_type=type(exc).__name__)
            )
            return
        for k, f in enumerate(files):
            sub = (
                span[0] + (span[1] - span[0]) * k / len(files),
                span[0] + (span[1] - span[0]) * (k + 1) / len(files),
            )
            outdir = folder / f"out-{k:04d}"
            await self._ingest_file(run, f, outdir, sub, tools)
            f.path.unlink(missing_ok=True)  # keep the temp folder small on long batches
            shutil.rmtree(outdir, ignore_errors=True)

    async def _ingest_file(
        self, run: _JobRun, f: _File, outdir: Path, span: tuple[float, float], tools: MediaTools
    ) -> None:
        sha = await self._blocking(run, sha256_file, f.path)
        if await self._reuse(run, f, sha):
            return
        original = await self._keep_original(run, f, sha)

        def progress(_n: int, _total: int, stage: str, fraction: float) -> None:
            run.tracker.set(span[0] + (span[1] - span[0]) * 0.9 * fraction, f"{f.name}: {stage}")

        outcomes = await self._blocking(
            run,
            self._process,
            [f.path],
            run.options,
            outdir,
            progress,
            run.tracker.cancel_check,
            tools,
        )
        outcome = (
            outcomes[0]
            if outcomes
            else FileOutcome(
                source=f.path,
                error=f"{f.name}: the media core returned nothing",
                error_type="internal",
            )
        )
        mkey = layout.manifest_key(run.ref, sha, run.options_hash)
        if outcome.result is None:
            manifest = _manifest(
                run,
                f,
                sha,
                original,
                error=IngestFailure(
                    type=outcome.error_type,
                    message=outcome.error,
                    accepted=list(ACCEPTED_FORMATS)
                    if outcome.error_type == UnsupportedFormat.__name__
                    else None,
                ),
            )
            report = FileReport(
                source=f.source,
                file=f.name,
                archive=f.archive,
                sha256=sha,
                raw_key=original,
                error=outcome.error,
                error_type=outcome.error_type,
            )
            if outcome.error_type != "internal":
                # Input errors are facts about the bytes: remember them, a re-ingest reuses them.
                await asyncio.to_thread(self._store.put_json, Bucket.CLIPS, mkey, manifest.dump())
                report.manifest_key = mkey
            run.reports.append(report)
            return
        run.tracker.set(span[0] + (span[1] - span[0]) * 0.9, f"{f.name}: uploading")
        items = await self._blocking(run, self._upload_items, run, sha, outcome.result)
        result = outcome.result
        manifest = _manifest(
            run,
            f,
            sha,
            original,
            kind=result.kind,
            format=result.format,
            probe=SourceProbe.model_validate(_without_path(result.probe.to_dict()))
            if result.probe
            else None,
            shots=list(result.shots),
            clips=items,
            skipped=list(result.skipped),
            timings=result.timings,
            frame_rate=FrameRate.model_validate(result.frame_rate) if result.frame_rate else None,
        )
        stored = await asyncio.to_thread(self._store.put_json, Bucket.CLIPS, mkey, manifest.dump())
        run.add_artifact(Bucket.CLIPS, mkey, "manifest", stored.size)
        run.reports.append(FileReport.from_manifest(manifest, f.source, f.name, mkey, reused=False))

    async def _reuse(self, run: _JobRun, f: _File, sha: str) -> bool:
        """A manifest for this content and these options exists: report it, do nothing else."""
        mkey = layout.manifest_key(run.ref, sha, run.options_hash)
        if await asyncio.to_thread(self._store.stat, Bucket.CLIPS, mkey) is None:
            return False
        try:
            doc = await asyncio.to_thread(self._store.get_json, Bucket.CLIPS, mkey)
            manifest = SourceManifest.model_validate(doc)
        except (LoraforgeError, ValueError) as exc:  # pydantic's ValidationError included
            log.warning("unreadable manifest %s (%s); ingesting %s again", mkey, exc, f.name)
            return False
        if manifest.source_sha256 != sha:
            return False
        error = manifest.error
        if (
            error is not None
            and error.type == UnsupportedFormat.__name__
            and error.accepted != list(ACCEPTED_FORMATS)
        ):
            return False  # refused by an ingest that took fewer formats: look again
        report = FileReport.from_manifest(manifest, f.source, f.name, mkey, reused=True)
        report.archive = f.archive
        run.reports.append(report)
        if not report.error:
            run.add_artifact(Bucket.CLIPS, mkey, "manifest")
            for item in manifest.clips:
                run.add_artifact(Bucket.CLIPS, item.key, item.kind, item.size, item.sha256)
                for kf in item.keyframe_keys:
                    run.add_artifact(Bucket.CLIPS, kf, "keyframe")
                if item.analysis_key:
                    run.add_artifact(Bucket.CLIPS, item.analysis_key, "analysis")
        return True

    async def _keep_original(self, run: _JobRun, f: _File, sha: str) -> str:
        """The original, content-addressed in raw: one object per content, whatever its name."""
        existing = await asyncio.to_thread(layout.find_original, self._store, run.ref, sha)
        if existing is not None:
            return existing
        key = layout.original_key(run.ref, sha, layout.original_ext(f.name))
        stored, _ = await self._blocking(
            run, self._store.put_if_absent_file, Bucket.RAW, key, f.path
        )
        return stored.key

    def _upload_items(self, run: _JobRun, sha: str, result: SourceResult) -> list[ClipEntry]:
        """Clips (or the photo) and keyframes to the clips bucket; runs in a thread."""
        items = []
        for i, clip in enumerate(result.clips):
            if run.tracker.cancel_check():
                raise Cancelled(f"job {run.job.id} was cancelled")
            cid = layout.clip_id(run.options_hash, i)
            prefix = layout.clips_prefix(run.ref, sha)
            ext = clip.path.suffix.lower()
            kind: Literal["clip", "photo"] = "photo" if result.kind == "photo" else "clip"
            content_type = {".mp4": "video/mp4", ".png": "image/png", ".jpg": "image/jpeg"}.get(
                ext, ""
            )
            stored = self._store.put_file(
                Bucket.CLIPS,
                f"{prefix}{cid}{ext}",
                clip.path,
                content_type=content_type or "application/octet-stream",
            )
            run.add_artifact(Bucket.CLIPS, stored.key, kind, stored.size, clip.sha256)
            keyframes: dict[str, str] = {}
            if kind == "clip":
                for kf in clip.keyframes:
                    label = kf.stem.rsplit("_", 1)[-1]
                    kext = kf.suffix.lower()
                    st = self._store.put_file(
                        Bucket.CLIPS,
                        f"{prefix}{cid}_{label}{kext}",
                        kf,
                        content_type="image/jpeg" if kext == ".jpg" else "image/png",
                    )
                    run.add_artifact(Bucket.CLIPS, st.key, "keyframe", st.size)
                    keyframes[label] = st.key
            else:
                keyframes["image"] = stored.key
            analysis_key = None
            if clip.analysis is not None:
                # before the manifest (the commit marker), like every object it names
                st = self._store.put_file(
                    Bucket.CLIPS,
                    layout.analysis_key(run.ref, sha, cid),
                    clip.analysis,
                    content_type="application/zip",
                )
                run.add_artifact(Bucket.CLIPS, st.key, "analysis", st.size)
                analysis_key = st.key
            items.append(
                ClipEntry(
                    clip_id=cid,
                    kind=kind,
                    key=stored.key,
                    size=stored.size,
                    keyframes=keyframes,
                    keyframe_keys=list(keyframes.values()),
                    duration=round(clip.duration, 4),
                    shot_index=clip.shot_index,
                    source_start=clip.source_start,
                    source_end=clip.source_end,
                    source_start_frame=clip.source_start_frame,
                    source_end_frame=clip.source_end_frame,
                    frames=clip.frames,
                    fps=clip.fps,
                    width=clip.width,
                    height=clip.height,
                    sha256=clip.sha256,
                    analysis_key=analysis_key,
                    crop=list(clip.crop) if clip.crop else None,
                )
            )
        return items

    # -- threads, progress and cancellation ---------------------------------------------------

    async def _blocking(self, run: _JobRun, fn: Callable[..., _T], *args: Any) -> _T:
        """Run `fn` in a thread; meanwhile report progress and poll for cancellation.

        A cancellation sets the tracker's flag (the core's `cancel_check`), waits for the thread
        to stop, and raises `Cancelled`.
        """
        tracker = run.tracker
        task = asyncio.ensure_future(asyncio.to_thread(fn, *args))
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=self._tick_s)
                if done:
                    return task.result()
                await self._report(run)
        except BaseException:
            if not task.done():
                tracker.cancelled.set()  # the core's cancel_check now says yes
                # Wait for the thread to stop; how it ended does not matter any more.
                with contextlib.suppress(BaseException):
                    await task
            raise

    async def _report(self, run: _JobRun) -> None:
        t = run.tracker
        current = (round(t.fraction, 3), t.message)
        if current != t.reported:
            t.reported = current
            await run.ctx.progress(current[0], current[1])
        else:
            await run.ctx.check_cancelled()


def _is_zip(path: Path) -> bool:
    try:
        return path.is_file() and path.stat().st_size > 0 and sniff(path).kind is MediaKind.ARCHIVE
    except IngestError:
        return False  # the core will report what is wrong with it


def _safe_name(name: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "._-" else "_" for c in name)[:120].lstrip(".")
    return cleaned or "source"


def _without_path(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k != "path"}


def _manifest(run: _JobRun, f: _File, sha: str, original: str, **outcome: Any) -> SourceManifest:
    """The source's manifest; `outcome`: what the media core made of it (or its error)."""
    return SourceManifest(
        manifest_version=MANIFEST_VERSION,
        tenant=run.ref.tenant,
        project=run.ref.project,
        source_sha256=sha,
        source=SourceRef(key=original, name=f.name, submitted_as=f.source, archive=f.archive),
        options_hash=run.options_hash,
        options=dataclasses.asdict(run.options),
        clips_prefix=layout.clips_prefix(run.ref, sha),
        job_id=run.job.id,
        created_at=datetime.now(UTC),
        **outcome,
    )
