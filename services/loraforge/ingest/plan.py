"""Clip planning: which source frame ranges become training clips.

Pure arithmetic on shots and timestamps, so it is unit-testable without any video. Time
boundaries are placed half-way between frames: a cut at ``-ss``/``-t`` then selects exactly the
intended frames whatever rounding ffmpeg applies to timestamps.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from loraforge.ingest.models import ClipPlan, Shot, SkippedSegment
from loraforge.ingest.options import ClipOptions
from loraforge.ingest.shots import Analysis

_EPS = 1e-6


def boundary_time(a: Analysis, frame: int) -> float:
    """Time between frame-1 and frame (start of the file / end of the last frame at the edges)."""
    n = a.frame_count
    if frame <= 0:
        return 0.0
    if frame >= n:
        return a.time_at(n - 1) + 1.0 / a.fps
    return 0.5 * (a.time_at(frame - 1) + a.time_at(frame))


# A window whose own rate is within 1 % of the target is encoded at the target: at most one
# frame in a hundred repeated or dropped, invisible, and it keeps a nominal 16 fps source (that
# measures 15.9x from its timestamps) at a clean 16. Below that the source's rate is kept.
_RATE_TOLERANCE = 0.01


def clip_rate(a: Analysis, start: int, end: int, target: float) -> float:
    """Output rate of source frames [start, end): the target, or the window's own rate where the
    source is slower, so no frame is ever duplicated to pad a slow source up to the training
    rate (a 10 fps street camera stays 10 fps; a 30 fps film drops to 16). The own rate is one
    over the median frame interval: exact for constant-rate footage, and for variable-rate
    footage the rate most of the window runs at."""
    steps = np.diff(a.pts[start:end]) if end - start > 1 else np.empty(0)
    steps = steps[steps > 0]
    own = 1.0 / float(np.median(steps)) if len(steps) else a.fps
    return target if own >= target * (1 - _RATE_TOLERANCE) else round(own, 3)


def frame_rate_report(
    a: Analysis, target: float | None, plans: Sequence[ClipPlan]
) -> dict[str, Any]:
    """What ingest tells the user about rate: the source's measured rate, the rate asked for, and
    whether (and in how many clips) the source was slower, which then is the clips' rate."""
    slow = [p for p in plans if target and p.fps < target]
    return {
        "source_fps": round(a.fps, 3),
        "target_fps": target,
        "variable": a.variable_frame_rate,
        "below_target": bool(target and a.fps < target * (1 - _RATE_TOLERANCE)),
        "clips_below_target": len(slow),
        "clip_fps": sorted({p.fps for p in plans}),
    }


def plan_clips(
    shots: Sequence[Shot], a: Analysis, opts: ClipOptions, out_fps: float
) -> tuple[list[ClipPlan], list[SkippedSegment]]:
    """``out_fps`` is the target rate; each clip gets ``clip_rate`` of its own window."""
    plans: list[ClipPlan] = []
    skipped: list[SkippedSegment] = []

    for shot in shots:
        s, e = shot.start_frame, shot.end_frame
        # Trim only where the shot meets another picture; the file's own start/end is safe.
        if shot.starts_with != "start":
            s += opts.trim_frames
        if shot.ends_with != "end":
            e -= opts.trim_frames
        if e - s <= 0:
            skipped.append(
                SkippedSegment(
                    shot.index,
                    shot.start,
                    shot.end,
                    f"shot too short: {shot.end - shot.start:.2f} s, nothing left after "
                    f"trimming {opts.trim_frames} frames at each cut",
                )
            )
            continue
        t0, t1 = boundary_time(a, s), boundary_time(a, e)
        length = t1 - t0
        if length + _EPS < opts.min_seconds:
            skipped.append(
                SkippedSegment(
                    shot.index,
                    t0,
                    t1,
                    f"shot too short: {length:.2f} s after trimming, minimum clip is "
                    f"{opts.min_seconds:g} s",
                )
            )
            continue

        pieces, leftovers = _split(s, e, length, opts)
        for ls, le in leftovers:
            skipped.append(
                SkippedSegment(
                    shot.index,
                    boundary_time(a, ls),
                    boundary_time(a, le),
                    f"remainder of a long shot: "
                    f"{boundary_time(a, le) - boundary_time(a, ls):.2f} s is below the "
                    f"minimum clip of {opts.min_seconds:g} s",
                )
            )
        for ps, pe in pieces:
            c0, c1 = boundary_time(a, ps), boundary_time(a, pe)
            fps = clip_rate(a, ps, pe, out_fps)
            max_out = int(math.floor(opts.max_seconds * fps + _EPS))
            min_out = int(math.ceil(opts.min_seconds * fps - _EPS))
            out_frames = min(max_out, pe - ps, int(math.floor((c1 - c0) * fps + _EPS)))
            if out_frames < min_out or out_frames < 1:
                skipped.append(
                    SkippedSegment(
                        shot.index,
                        c0,
                        c1,
                        f"too short at {fps:g} fps: {out_frames} frames, minimum {min_out}",
                    )
                )
                continue
            plans.append(
                ClipPlan(
                    shot_index=shot.index,
                    start_frame=ps,
                    end_frame=pe,
                    start=c0,
                    end=c1,
                    out_frames=out_frames,
                    fps=fps,
                )
            )
    return plans, skipped


def _split(
    s: int, e: int, length: float, opts: ClipOptions
) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Split frames [s, e) lasting ``length`` s into clips within [min, max] seconds.

    Equal pieces close to the target length when such a split exists; otherwise (e.g. 5.5 s with
    3-5 s clips) as many max-length pieces as fit, centred in the shot, the rest reported.
    """
    frames = e - s
    if length <= opts.max_seconds + _EPS:
        return [(s, e)], []
    k_lo = math.ceil(length / opts.max_seconds - _EPS)
    k_hi = math.floor(length / opts.min_seconds + _EPS)
    if k_lo <= k_hi:
        k = min(max(round(length / opts.target_seconds), k_lo), k_hi)
        edges = [s + round(j * frames / k) for j in range(k + 1)]
        return list(itertools.pairwise(edges)), []
    k = max(1, math.floor(length / opts.max_seconds))
    per = int(math.floor(frames * opts.max_seconds / length))  # frames in max_seconds
    used = per * k
    lead = (frames - used) // 2
    start = s + lead
    pieces = [(start + j * per, start + (j + 1) * per) for j in range(k)]
    leftovers = [(a, b) for a, b in ((s, start), (start + used, e)) if b > a]
    return pieces, leftovers
