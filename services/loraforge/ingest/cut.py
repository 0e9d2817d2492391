"""Encoding planned clips (plus first/middle/last keyframes) with ffmpeg.

One ffmpeg process per clip, run a few at a time: each seeks straight to its window
(input ``-ss`` is frame-accurate when re-encoding: ffmpeg decodes from the previous keyframe
and drops frames before the target), so the source is decoded about once in total. The
keyframes come out of the same process through a ``split``/``select`` branch, which avoids a
second decode per clip and guarantees they are frames of the encoded clip.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from loraforge.ingest import proxy
from loraforge.ingest.hashing import sha256_file
from loraforge.ingest.models import Clip, ClipPlan, ProbeResult, SkippedSegment
from loraforge.ingest.options import CutOptions
from loraforge.ingest.tools import MediaTools, run, tail
from loraforge.runtime.errors import Cancelled

log = logging.getLogger(__name__)

_ENCODE_TIMEOUT = 600.0


def output_size(
    probe: ProbeResult, max_long_side: int | None, crop: tuple[int, int, int, int] | None = None
) -> tuple[int, int]:
    """Display size (of the picture inside ``crop``, when mattes are cut away) capped to
    ``max_long_side``; both sides even, as yuv420p/H.264 require."""
    w, h = probe.width, probe.height
    if crop is not None:
        # crop is in the graph's frame (stored pixels, turned): the pixel aspect stretches x,
        # or y when the picture was turned a quarter
        cw, ch = crop[0], crop[1]
        sar = probe.sample_aspect_ratio or 1.0
        w, h = (round(cw * sar), ch) if probe.rotation not in (90, 270) else (cw, round(ch * sar))
    scale = 1.0
    if max_long_side and max(w, h) > max_long_side:
        scale = max_long_side / max(w, h)
    if scale == 1.0:
        return max(2, w // 2 * 2), max(2, h // 2 * 2)
    # Round down so the long side never exceeds the cap.
    return max(2, int(w * scale / 2.0) * 2), max(2, int(h * scale / 2.0) * 2)


@dataclass(frozen=True)
class _Job:
    index: int
    plan: ClipPlan
    out: Path


def keyframe_indices(frames: int) -> list[int]:
    return sorted({0, frames // 2, frames - 1})


def proxy_frames(frames: int) -> list[int]:
    """Frame numbers of a clip the analysis proxy needs (sampled frames and the ones after)."""
    samples, nexts = proxy.wanted(frames)
    return sorted(set(samples) | set(nexts))


# Broadcast recordings, DV/SD tapes and 1080i camcorders store interlaced frames: two fields
# 1/50 s apart woven together. Resampled to the clip rate and scaled as they are, anything that
# moves gets comb teeth, which a LoRA learns as texture. bwdif rebuilds each frame from its
# fields; `deint=interlaced` touches only frames the decoder flags as interlaced, so
# progressive footage passes through unchanged (the same clips, bit for bit). One frame out per
# frame in: the clip rate comes from the fps filter after it.
DEINTERLACE = "bwdif=mode=send_frame:parity=auto:deint=interlaced"
# HDR video (phones record HLG by default; HDR10 and Dolby Vision profile 8 are PQ) read as if it
# were SDR comes out dim and washed out: BT.2020 colours shown as BT.709, the HDR curve as a
# gamma. Clips are SDR BT.709, what the models were trained on, so HDR frames are tone-mapped:
# to linear light with BT.2408's reference white (203 cd/m2) as 1.0, BT.2020 -> BT.709
# primaries, mobius keeping light up to 0.6 of white as it is and rolling off what lies above
# (HDR highlights, up to ~5x white) instead of clipping it, back to BT.709. Set on a real photo
# graded to HLG and to PQ as 10-bit HEVC: mean error against the SDR original 4.2 grey levels
# (a plain clip at white 4.0, the HEVC round trip; mobius' default 0.3 darkened the picture by
# 6 levels, 8.8 error; hable 41), where reading it as SDR is off by 20 (HLG) to 34 (PQ). Run
# after scaling, on the output size.
HDR_TRANSFERS = frozenset({"smpte2084", "arib-std-b67"})
TONEMAP = (
    "zscale=t=linear:npl=203,format=gbrpf32le,zscale=p=bt709,"
    "tonemap=tonemap=mobius:param=0.6:desat=0,zscale=t=bt709:m=bt709:r=tv,format=yuv420p"
)


def _crop(crop: tuple[int, int, int, int] | None) -> str:
    return "" if crop is None else "crop={}:{}:{}:{}:exact=1,".format(*crop)


def _command(
    src: Path,
    job: _Job,
    size: tuple[int, int],
    fps: float,
    opts: CutOptions,
    tools: MediaTools,
    keyframe_pattern: str,
    raw_out: Path | None = None,
    hdr: bool = False,
) -> list[str]:
    plan = job.plan
    w, h = size
    picks = "+".join(f"eq(n\\,{i})" for i in keyframe_indices(plan.out_frames))
    # ffmpeg rotates by the display matrix itself (autorotate) before our filters, so W x H
    # here are display dimensions and the output carries no rotation flag.
    # Formats are set per branch after the split: a shared format would let the JPEG branch
    # negotiate full-range (yuvj420p) for the video branch too.
    # With the analysis proxy, the source's own frames are split off for the motion signature
    # before the clip rate is set: two uploads of the same footage cut at other moments keep
    # the same source frames, where the 16 fps clips would sample it at other instants (a copy
    # trimmed by a source frame correlated at 0.79 at the clip rate, 0.99 here).
    head = f"[0:v:0]{DEINTERLACE},{_crop(plan.crop)}"
    if raw_out is not None:
        head += "split=2[pic][sg];[pic]"
    graph = (
        f"{head}fps={fps:.6g},scale={w}:{h},"
        f"{TONEMAP + ',' if hdr else ''}setsar=1,"
        f"split={3 if raw_out else 2}[e][kf]"
        f"{'[an]' if raw_out else ''};"
        f"[e]scale=out_range=tv,format=yuv420p[enc];"
        f"[kf]select='{picks}',scale=out_range=pc,format=yuvj420p[kfo]"
    )
    if raw_out is not None:
        # The analysis proxy's frames, from the same graph: raw BGR at analysis size, packed by
        # proxy.write_proxy after the process ends (no image encoding inside ffmpeg).
        aw, ah = proxy.analysis_size(w, h)
        an_picks = "+".join(f"eq(n\\,{i})" for i in proxy_frames(plan.out_frames))
        # An explicit scale converts to BGR inside this branch: with only format=bgr24 here,
        # format negotiation would make the shared chain before the split BGR, and the clip
        # would then be encoded from a BGR->YUV round trip (a different clip).
        flags = ":flags=area" if (aw, ah) != (w, h) else ""
        graph += f";[an]select='{an_picks}',scale={aw}:{ah}{flags},format=bgr24[ano]"
        # every source frame of the clip, grey and tiny: its motion signature
        # (proxy.signature_rows), tone-mapped like the clip
        side = proxy.SIGNATURE_SIDE
        tone = TONEMAP + "," if hdr else ""
        graph += f";[sg]scale={side}:{side}:flags=area,{tone}format=gray[sgo]"
    args = [
        tools.ffmpeg,
        "-nostdin",
        "-hide_banner",
        "-loglevel",
        "error",
        "-y",
        "-progress",
        "pipe:1",
        "-ss",
        f"{plan.start:.6f}",
        "-t",
        f"{plan.end - plan.start:.6f}",
        "-i",
        str(src),
        "-filter_complex",
        graph,
        "-map",
        "[enc]",
        "-frames:v",
        str(plan.out_frames),
        "-c:v",
        "libx264",
        "-preset",
        opts.preset,
        "-crf",
        str(opts.crf),
        "-pix_fmt",
        "yuv420p",
        "-movflags",
        "+faststart",
    ]
    if opts.keep_audio:
        args += ["-map", "0:a:0?", "-c:a", "aac", "-b:a", "128k", "-shortest"]
    else:
        args += ["-an"]
    args += ["-sn", "-dn", "-map_metadata", "-1", str(job.out)]
    args += ["-map", "[kfo]", "-fps_mode", "passthrough", "-frames:v", "3"]
    args += ["-q:v", "2"] if opts.keyframe_format == "jpg" else []
    args += [keyframe_pattern]
    if raw_out is not None:
        args += [
            "-map",
            "[ano]",
            "-fps_mode",
            "passthrough",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "bgr24",
            str(raw_out),
            "-map",
            "[sgo]",
            "-fps_mode",
            "passthrough",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "gray",
            str(_signature_raw(raw_out)),
        ]
    return args


def cut_clips(
    src: Path,
    probe: ProbeResult,
    plans: Sequence[ClipPlan],
    outdir: Path,
    opts: CutOptions,
    tools: MediaTools,
    stem: str = "clip",
    progress: Callable[[float], None] | None = None,
    cancel_check: Callable[[], bool] | None = None,
) -> tuple[list[Clip], list[SkippedSegment]]:
    outdir.mkdir(parents=True, exist_ok=True)
    default_fps = opts.fps or probe.fps
    jobs = [_Job(i, p, outdir / f"{stem}_{i:04d}.mp4") for i, p in enumerate(plans)]
    workers = opts.workers or max(1, min(4, os.cpu_count() or 1))
    hdr = probe.color_transfer in HDR_TRANSFERS
    done = 0

    def one(job: _Job) -> Clip | SkippedSegment:
        nonlocal done
        if cancel_check is not None and cancel_check():
            raise Cancelled(f"{src.name}: ingest cancelled")
        ext = opts.keyframe_format
        pattern = str(outdir / f"{job.out.stem}_kf%d.{ext}")
        fps = job.plan.fps or default_fps  # plan_clips' rate: never above the source's own
        size = output_size(probe, opts.max_long_side, job.plan.crop)
        raw = outdir / f"{job.out.stem}_analysis.raw" if opts.analysis_proxy else None
        proc = run(
            _command(src, job, size, fps, opts, tools, pattern, raw, hdr),
            timeout=_ENCODE_TIMEOUT,
        )
        frames = _frames_written(proc.stdout)
        if proc.returncode != 0 or not job.out.is_file() or not frames:
            # ffmpeg can exit 0 having written no frame (a seek that lands where nothing
            # decodes): an empty file is not a clip
            job.out.unlink(missing_ok=True)
            if raw is not None:
                raw.unlink(missing_ok=True)
                _signature_raw(raw).unlink(missing_ok=True)
            why = tail(proc.stderr, 3)[:300] if proc.returncode else "no frame decoded there"
            return SkippedSegment(
                job.plan.shot_index, job.plan.start, job.plan.end, f"encode failed: {why}"
            )
        analysis = _pack_proxy(raw, job, size, frames, fps, probe.fps) if raw is not None else None
        keyframes = []
        # The image2 muxer numbers the selected frames 1..3 in order of keyframe_indices.
        for k, idx in enumerate(keyframe_indices(job.plan.out_frames)):
            produced = outdir / f"{job.out.stem}_kf{k + 1}.{ext}"
            label = _label(idx, job.plan.out_frames)
            final = outdir / f"{job.out.stem}_{label}.{ext}"
            if produced.is_file():
                produced.replace(final)
                keyframes.append(final)
        done += 1
        if progress is not None:
            progress(done / max(1, len(jobs)))
        return Clip(
            path=job.out,
            shot_index=job.plan.shot_index,
            source_start=job.plan.start,
            source_end=job.plan.end,
            source_start_frame=job.plan.start_frame,
            source_end_frame=job.plan.end_frame,
            frames=frames,
            fps=float(fps),
            width=size[0],
            height=size[1],
            keyframes=tuple(keyframes),
            sha256=sha256_file(job.out),
            analysis=analysis,
            crop=job.plan.crop,
        )

    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(one, jobs))
    clips = [r for r in results if isinstance(r, Clip)]
    failed = [r for r in results if isinstance(r, SkippedSegment)]
    return clips, failed


def _pack_proxy(
    raw: Path, job: _Job, size: tuple[int, int], frames: int, fps: float, source_fps: float
) -> Path | None:
    """The raw frames ffmpeg wrote -> the clip's analysis proxy; None (curation then decodes the
    clip) when they do not cover the clip as it came out, e.g. fewer frames than planned."""
    try:
        got = proxy.read_raw_frames(
            raw, proxy.analysis_size(*size), proxy_frames(job.plan.out_frames)
        )
        samples, _ = proxy.wanted(frames)
        if not set(samples) <= set(got):
            return None
        return proxy.write_proxy(
            job.out.with_name(f"{job.out.stem}_analysis.zip"),
            got,
            frame_count=frames,
            fps=float(fps),
            width=size[0],
            height=size[1],
            signature=_signature(_signature_raw(raw)),
            signature_fps=source_fps,
        )
    except (OSError, ValueError) as exc:
        log.warning("%s: no analysis proxy (%s); curation will decode the clip", job.out.name, exc)
        return None
    finally:
        raw.unlink(missing_ok=True)
        _signature_raw(raw).unlink(missing_ok=True)


def _signature_raw(raw: Path) -> Path:
    return raw.with_name(raw.name.replace("_analysis.raw", "_signature.raw"))


def _signature(path: Path) -> np.ndarray | None:
    """The grey source frames ffmpeg wrote for the motion signature -> its rows; None when
    there are fewer than two."""
    side = proxy.SIGNATURE_SIDE
    data = path.read_bytes() if path.is_file() else b""
    count = len(data) // (side * side)
    if count < 2:
        return None
    gray = np.frombuffer(data, np.uint8, count * side * side).reshape(count, side, side)
    return proxy.signature_rows(gray)


def _label(index: int, frames: int) -> str:
    if index == 0:
        return "first"
    if index == frames - 1:
        return "last"
    return "middle"


def _frames_written(progress_out: bytes) -> int | None:
    """Last ``frame=`` of ffmpeg's -progress report (the encoded clip is the first output)."""
    value = None
    for line in progress_out.decode("ascii", "replace").splitlines():
        if line.startswith("frame="):
            with contextlib.suppress(ValueError):
                value = int(line[6:])
    return value if value and value > 0 else None
