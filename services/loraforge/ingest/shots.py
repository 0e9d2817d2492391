"""Shot detection: PySceneDetect's detectors on our low-res decode, plus black-span handling.

We drive the detectors frame by frame instead of using ``SceneManager``/``open_video`` so
that the frames come from the single ffmpeg decode in ``decode.py`` (cheap, scaled in
ffmpeg, exact timestamps) and so the same pass also measures brightness for fades.

PySceneDetect's content detectors do not reliably fire on fades (the change is spread over many
frames), and its ThresholdDetector only places one cut in the middle of the fade. A clip must
not run through a fade at all, so black frames are removed from shots outright and the ramp
into/out of black is trimmed too.
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scenedetect
from scenedetect.detectors import AdaptiveDetector, ContentDetector

from loraforge.ingest.decode import LowResDecode
from loraforge.ingest.errors import CorruptMedia
from loraforge.ingest.matte import Bars, flat_dark_runs, frame_bars, frame_size
from loraforge.ingest.models import ProbeResult, Shot
from loraforge.ingest.options import ShotOptions
from loraforge.ingest.probe import durations_vary
from loraforge.ingest.tools import MediaTools

ProgressFn = Callable[[float], None]


@dataclass(frozen=True)
class Analysis:
    """What the decode pass measured; frame indices are into ``pts``."""

    cuts: tuple[int, ...]  # frame indices that start a new shot (hard cuts)
    luma: np.ndarray  # mean luma per frame, 0-255
    pts: np.ndarray  # seconds per frame
    fps: float  # average measured rate
    variable_frame_rate: bool
    frame_count: int
    decode_errors: tuple[str, ...] = ()
    # per frame: its black mattes (matte.frame_bars; None for a black frame), or empty when
    # the decode did not report them
    bars: tuple[Bars | None, ...] = ()

    def time_at(self, frame: int) -> float:
        """Start time of ``frame``; one past the last frame maps to the end of the video."""
        if frame < len(self.pts):
            return float(self.pts[frame])
        return float(self.pts[-1]) + 1.0 / self.fps if len(self.pts) else 0.0


def _make_detector(opts: ShotOptions) -> scenedetect.SceneDetector:
    if opts.detector == "content":
        return ContentDetector(threshold=opts.content_threshold, min_scene_len=opts.min_shot_frames)
    return AdaptiveDetector(
        adaptive_threshold=opts.adaptive_threshold,
        min_scene_len=opts.min_shot_frames,
        window_width=opts.window_width,
        min_content_val=opts.min_content_val,
    )


# PySceneDetect 0.7 passes FrameTimecode objects to detectors, 0.6 passes plain frame numbers.
_TAKES_TIMECODE = (
    "timecode" in inspect.signature(scenedetect.SceneDetector.process_frame).parameters
)


def _as_frame(value: int | np.integer | scenedetect.FrameTimecode) -> int:
    return int(value) if isinstance(value, (int, np.integer)) else int(value.frame_num)


def analyse(
    path: Path,
    probe: ProbeResult,
    opts: ShotOptions,
    tools: MediaTools,
    progress: ProgressFn | None = None,
    cancel_check: Callable[[], bool] | None = None,
) -> Analysis:
    detector = _make_detector(opts)
    fps = probe.fps
    decode = LowResDecode(path, probe, opts.analysis_width, tools, cancel_check=cancel_check)
    luma: list[float] = []
    cuts: list[int] = []
    expected = max(1, probe.frame_count)

    def timecode(i: int) -> int | scenedetect.FrameTimecode:
        return scenedetect.FrameTimecode(i, fps) if _TAKES_TIMECODE else i

    runs: list[Bars] = []
    i = -1
    for i, frame in enumerate(decode):
        runs.append(flat_dark_runs(frame))
        # BT.601 luma from BGR; mean over a 256-px frame costs microseconds.
        luma.append(
            float(
                frame[..., 0].mean() * 0.114
                + frame[..., 1].mean() * 0.587
                + frame[..., 2].mean() * 0.299
            )
        )
        cuts.extend(_as_frame(c) for c in detector.process_frame(timecode(i), frame))
        if progress is not None and i % 64 == 0:
            progress(min(1.0, i / expected))
    if i >= 0:
        cuts.extend(_as_frame(c) for c in detector.post_process(timecode(i)))
    n = decode.frames
    if n == 0:
        detail = " | ".join(decode.errors[-3:]) or f"ffmpeg exit code {decode.returncode}"
        raise CorruptMedia(
            f"{path.name}: no video frame could be decoded [{detail[:300]}]; "
            f"the file is damaged or truncated, upload the complete original again"
        )
    # A container that promises far more frames than decode yields is cut short (for example an
    # upload that stopped mid-way in a file with its index at the front). The promise is exact
    # (ffprobe's count) or estimated from the container's duration (the ffmpeg-only probe); with
    # decoder errors, under half of either is a truncated file, not a rate estimate gone wrong.
    if n < 0.5 * probe.frame_count and decode.errors:
        raise CorruptMedia(
            f"{path.name}: only {n} of {probe.frame_count} frames could be decoded; the file is "
            f"truncated or damaged, upload the complete original again"
        )
    pts = np.asarray(decode.pts[:n], dtype=np.float64)
    if len(pts) != n:  # showinfo lines missing (should not happen): assume constant rate
        pts = np.arange(n, dtype=np.float64) / fps
    measured_fps = (n - 1) / (pts[-1] - pts[0]) if n > 1 and pts[-1] > pts[0] else fps
    vfr = durations_vary(sorted(pts.tolist()))
    bars: tuple[Bars | None, ...] = ()
    if len(decode.pictures) == n:  # else cropdetect lines went missing: crop nothing
        full = frame_size(probe)
        bars = tuple(
            frame_bars(pic, run, full, decode.size)
            for pic, run in zip(decode.pictures, runs, strict=True)
        )
    return Analysis(
        cuts=tuple(sorted({c for c in cuts if 0 < c < n})),
        luma=np.asarray(luma),
        pts=pts,
        fps=float(measured_fps),
        variable_frame_rate=vfr,
        frame_count=n,
        decode_errors=tuple(decode.errors),
        bars=bars,
    )


def build_shots(a: Analysis, opts: ShotOptions) -> list[Shot]:
    """Split the video at cuts and around black spans; return the non-black runs as shots."""
    n = a.frame_count
    dark = (a.luma < opts.black_threshold) if opts.fade_detection else np.zeros(n, dtype=bool)
    bounds = [0, *a.cuts, n]
    shots: list[Shot] = []
    for seg_start, seg_end in itertools.pairwise(bounds):
        start_kind = "start" if seg_start == 0 else "cut"
        end_kind = "end" if seg_end == n else "cut"
        for run_start, run_end in _bright_runs(dark, seg_start, seg_end):
            s_kind = start_kind if run_start == seg_start else "fade"
            e_kind = end_kind if run_end == seg_end else "fade"
            if opts.fade_detection:
                run_start, run_end = _trim_ramps(
                    a.luma,
                    run_start,
                    run_end,
                    s_kind == "fade",
                    e_kind == "fade",
                    opts.fade_ramp_ratio,
                    max_frames=int(round(_MAX_RAMP_SECONDS * a.fps)),
                )
            if run_end <= run_start:
                continue
            shots.append(
                Shot(
                    index=len(shots),
                    start_frame=run_start,
                    end_frame=run_end,
                    start=a.time_at(run_start),
                    end=a.time_at(run_end),
                    starts_with=s_kind,
                    ends_with=e_kind,
                )
            )
    return shots


def _bright_runs(dark: np.ndarray, start: int, end: int) -> list[tuple[int, int]]:
    runs, cur = [], None
    for i in range(start, end):
        if not dark[i] and cur is None:
            cur = i
        elif dark[i] and cur is not None:
            runs.append((cur, i))
            cur = None
    if cur is not None:
        runs.append((cur, end))
    return runs


# Fades in edited footage last well under this; the cap keeps a shot that is simply darker at
# one end (a pan into shadow) from being eaten.
_MAX_RAMP_SECONDS = 3.0
_MIN_FADE_STEP = 0.01


def _trim_ramps(
    luma: np.ndarray,
    start: int,
    end: int,
    from_black: bool,
    to_black: bool,
    ratio: float,
    max_frames: int,
) -> tuple[int, int]:
    """Drop the fade ramp: frames next to black that are still darker than the shot and brightening
    quickly towards it.

    Darkness alone is not enough (a pan can drift into a darker part of the scene); a fade also
    changes brightness fast and steadily, at least 1% of the shot level per frame even for a
    3-second fade, while camera moves rarely exceed a fraction of that.
    """
    if end - start < 3 or not (from_black or to_black):
        return start, end
    # The shot's own brightness: a high percentile so a long ramp does not drag it down.
    level = float(np.percentile(luma[start:end], 75))
    dark, step = level * ratio, level * _MIN_FADE_STEP
    if from_black:
        limit = min(end - 1, start + max_frames)
        while start < limit and luma[start] < dark and luma[start + 1] - luma[start] > step:
            start += 1
    if to_black:
        limit = max(start + 1, end - max_frames)
        while end > limit and luma[end - 1] < dark and luma[end - 2] - luma[end - 1] > step:
            end -= 1
    return start, end
