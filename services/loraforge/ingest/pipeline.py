"""Orchestration: one source file in, clips (or a normalised photo) out.

Pure: local paths in, local files and typed results out. Storage, events and job state belong
to the service around this; ``progress_cb``/``cancel_check`` are how it looks inside.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from loraforge.ingest.archive import extract_zip
from loraforge.ingest.cut import cut_clips
from loraforge.ingest.errors import (
    FileTooLarge,
    IngestError,
    MissingFile,
    NoUsableClips,
    UnsupportedFormat,
    VideoTooShort,
)
from loraforge.ingest.hashing import sha256_file
from loraforge.ingest.matte import frame_size, matte_crop
from loraforge.ingest.models import Clip, FileOutcome, SourceResult
from loraforge.ingest.options import IngestOptions
from loraforge.ingest.photo import normalize_photo
from loraforge.ingest.plan import frame_rate_report, plan_clips
from loraforge.ingest.probe import probe as probe_video
from loraforge.ingest.remux import seekable
from loraforge.ingest.shots import analyse, build_shots
from loraforge.ingest.sniff import MediaKind, sniff
from loraforge.ingest.tools import MediaTools
from loraforge.runtime.errors import Cancelled

log = logging.getLogger(__name__)

# progress_cb(stage, fraction of the whole file in [0, 1]); stages: probe, detect, cut, done.
ProgressCb = Callable[[str, float], None]
CancelCheck = Callable[[], bool]

# Share of the per-file progress bar given to each stage (detect decodes the whole video,
# cut re-encodes only the kept parts: roughly equal on typical footage).
_DETECT_SPAN = (0.05, 0.5)
_CUT_SPAN = (0.5, 1.0)


def process_source(
    path: Path | str,
    options: IngestOptions | None = None,
    workdir: Path | str = ".",
    progress_cb: ProgressCb | None = None,
    cancel_check: CancelCheck | None = None,
    tools: MediaTools | None = None,
) -> SourceResult:
    """Turn one video or photo into training items under ``workdir``.

    Raises an ``IngestError`` (an ``InvalidInput``) for unusable input and ``Cancelled`` when
    ``cancel_check`` returns true. Zips are expanded by ``process_many``, not here.
    """
    path, workdir = Path(path), Path(workdir)
    options = options or IngestOptions()
    tools = tools or MediaTools.discover()
    report = progress_cb or (lambda stage, fraction: None)
    _check_cancel(cancel_check, path)
    timings: dict[str, float] = {}
    t = time.perf_counter()

    sniffed = sniff(path)
    if sniffed.kind is MediaKind.ARCHIVE:
        raise UnsupportedFormat(
            f"{path.name}: a zip archive cannot be processed as one source; "
            f"submit it as a batch so each file inside is processed"
        )
    if path.stat().st_size > options.limits.max_file_bytes:
        raise FileTooLarge(
            f"{path.name}: the file is larger than {options.limits.max_file_bytes / 1e9:.0f} GB; "
            f"upload a shorter or more compressed version"
        )
    digest = sha256_file(path)
    workdir.mkdir(parents=True, exist_ok=True)

    if sniffed.kind is MediaKind.PHOTO:
        photo = normalize_photo(
            path,
            workdir / "photo",
            options.photo_format,
            options.photo_max_long_side,
            options.limits,
        )
        item = Clip(
            path=photo.path,
            shot_index=0,
            source_start=0.0,
            source_end=0.0,
            source_start_frame=0,
            source_end_frame=1,
            frames=1,
            fps=0.0,
            width=photo.width,
            height=photo.height,
            keyframes=(photo.path,),
            sha256=sha256_file(photo.path),
        )
        timings["total"] = time.perf_counter() - t
        report("done", 1.0)
        return SourceResult(
            source=path,
            sha256=digest,
            kind="photo",
            format=sniffed.format,
            probe=None,
            clips=(item,),
            timings=timings,
        )

    # MPEG streams have no keyframe index: probe, analyse and cut a seekable copy
    with seekable(path, sniffed.format, workdir, tools) as media:
        report("probe", 0.0)
        info = probe_video(media, tools, options.limits)
        timings["probe"] = time.perf_counter() - t
        clip_opts = options.clips
        if info.duration + 1e-6 < clip_opts.min_seconds:
            raise VideoTooShort(
                f"{path.name}: the video lasts {info.duration:.2f} s, shorter than the minimum "
                f"clip length of {clip_opts.min_seconds:g} s; upload a longer video"
            )
        report("probe", _DETECT_SPAN[0])

        t = time.perf_counter()
        analysis = analyse(
            media,
            info,
            options.shots,
            tools,
            progress=lambda f: report("detect", _lerp(_DETECT_SPAN, f)),
            cancel_check=cancel_check,
        )
        # The decode pass measured what probing estimated.
        info = dataclasses.replace(
            info,
            frame_count=analysis.frame_count,
            frame_count_exact=True,
            variable_frame_rate=analysis.variable_frame_rate or info.variable_frame_rate,
        )
        shots = build_shots(analysis, options.shots)
        out_fps = options.cut.fps or analysis.fps
        plans, skipped = plan_clips(shots, analysis, clip_opts, out_fps)
        if analysis.bars:  # black mattes cut away, per clip (matte.py)
            frame = frame_size(info)
            plans = [
                dataclasses.replace(
                    p, crop=matte_crop(analysis.bars[p.start_frame : p.end_frame], frame)
                )
                for p in plans
            ]
        timings["detect"] = time.perf_counter() - t
        report("detect", _DETECT_SPAN[1])

        if not plans:
            reasons = (
                "; ".join(sorted({s.reason.split(":")[0] for s in skipped}))
                or "no bright, steady shot found"
            )
            raise NoUsableClips(
                f"{path.name}: no segment of at least {clip_opts.min_seconds:g} s without a cut "
                f"or fade was found ({len(shots)} shots; {reasons}); upload footage with "
                f"longer continuous shots"
            )
        _check_cancel(cancel_check, path)

        t = time.perf_counter()
        clips, failed = cut_clips(
            media,
            info,
            plans,
            workdir,
            options.cut,
            tools,
            progress=lambda f: report("cut", _lerp(_CUT_SPAN, f)),
            cancel_check=cancel_check,
        )
        timings["cut"] = time.perf_counter() - t
        if not clips:
            raise NoUsableClips(
                f"{path.name}: every clip failed to encode ({failed[0].reason}); "
                f"the file is probably damaged, upload the original again"
            )
        report("done", 1.0)
        return SourceResult(
            source=path,
            sha256=digest,
            kind="video",
            format=sniffed.format,
            probe=info,
            shots=tuple(shots),
            clips=tuple(clips),
            skipped=tuple(skipped) + tuple(failed),
            timings=timings,
            frame_rate=frame_rate_report(analysis, options.cut.fps, plans),
        )


def process_many(
    paths: Iterable[Path | str],
    options: IngestOptions | None = None,
    workdir: Path | str = ".",
    progress_cb: Callable[[int, int, str, float], None] | None = None,
    cancel_check: CancelCheck | None = None,
    tools: MediaTools | None = None,
) -> list[FileOutcome]:
    """Process every file (zips expanded) independently; one file's error never stops the rest.

    ``progress_cb(file_index, file_count, stage, fraction)``. Returns one ``FileOutcome`` per
    processed file, in input order (a zip's members in archive order; a zip that cannot be
    expanded yields one failed outcome). ``Cancelled`` propagates: it stops the whole batch.
    """
    options = options or IngestOptions()
    workdir = Path(workdir)
    tools = tools or MediaTools.discover()
    items: list[tuple[Path, Path | None] | FileOutcome] = []
    for i, p in enumerate(Path(x) for x in paths):
        try:
            if p.is_file() and p.stat().st_size > 0 and sniff(p).kind is MediaKind.ARCHIVE:
                members = extract_zip(
                    p, workdir / "_unzipped" / f"{i:03d}-{_slug(p.stem)}", options.archive
                )
                items.extend((m, p) for m in members)
                continue
        except IngestError as exc:
            items.append(FileOutcome(source=p, error=str(exc), error_type=type(exc).__name__))
            continue
        except OSError as exc:
            items.append(
                FileOutcome(
                    source=p,
                    error=f"{p.name}: cannot be read ({exc.strerror}); upload it again",
                    error_type="Unreadable",
                )
            )
            continue
        items.append((p, None))

    outcomes: list[FileOutcome] = []
    total = len(items)
    for n, item in enumerate(items):
        if isinstance(item, FileOutcome):
            outcomes.append(item)
            continue
        src, archive = item
        cb = (lambda stage, f, n=n: progress_cb(n, total, stage, f)) if progress_cb else None
        try:
            if not src.is_file():
                raise MissingFile(
                    f"{src.name}: the file does not exist or is not a regular file; upload it again"
                )
            result = process_source(
                src, options, workdir / f"{n:03d}-{_slug(src.stem)}", cb, cancel_check, tools
            )
            outcomes.append(FileOutcome(source=src, result=result, archive=archive))
        except Cancelled:
            raise
        except IngestError as exc:
            outcomes.append(
                FileOutcome(
                    source=src, error=str(exc), error_type=type(exc).__name__, archive=archive
                )
            )
        except Exception as exc:  # a bug or an environment problem: report it, keep the batch going
            log.exception("ingest failed unexpectedly on %s", src)
            outcomes.append(
                FileOutcome(
                    source=src,
                    archive=archive,
                    error_type="internal",
                    error=f"{src.name}: internal error while processing ({type(exc).__name__}: "
                    f"{exc}); retry later, and report it if it persists",
                )
            )
    return outcomes


def _check_cancel(cancel_check: CancelCheck | None, path: Path) -> None:
    if cancel_check is not None and cancel_check():
        raise Cancelled(f"{path.name}: ingest cancelled")


def _lerp(span: tuple[float, float], f: float) -> float:
    return span[0] + (span[1] - span[0]) * max(0.0, min(1.0, f))


def _slug(stem: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", stem)[:40] or "file"
