"""Typed, validated options for the ingest media core.

Frozen dataclasses rather than pydantic models: they are built once per job from the request,
never parsed from JSON here, and validation has to raise our ``InvalidOptions`` (an
``InvalidInput``) so a bad request parameter reaches the caller as such.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from loraforge.ingest.errors import InvalidOptions

Detector = Literal["adaptive", "content"]
ImageFormat = Literal["jpg", "png"]

GiB = 1024**3


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise InvalidOptions(message)


@dataclass(frozen=True)
class ShotOptions:
    """How shots are found (PySceneDetect detector + our own fade/black handling)."""

    detector: Detector = "adaptive"
    # AdaptiveDetector knobs (PySceneDetect defaults).
    adaptive_threshold: float = 3.0
    min_content_val: float = 15.0
    window_width: int = 2
    # ContentDetector knob (PySceneDetect default).
    content_threshold: float = 27.0
    # PySceneDetect suppresses a cut closer than this to the previous one. Kept tiny on purpose:
    # a suppressed cut would let a clip span two shots, while a spurious one only shortens a
    # shot, which clip planning then drops or splits.
    min_shot_frames: int = 3
    # Detection runs on a decode scaled to this width, like PySceneDetect's auto-downscale
    # (it targets 256 px as well), so thresholds mean the same as in its CLI.
    analysis_width: int = 256
    # Frames whose mean luma (0-255) is below this are "black": black spans separate shots,
    # so a clip never runs through a fade-to-black (PySceneDetect's ThresholdDetector default
    # is 12 too).
    fade_detection: bool = True
    black_threshold: float = 12.0
    # Fade ramps next to a black span are trimmed while a frame is darker than this fraction
    # of the shot's typical brightness: half-faded frames are poor training material.
    fade_ramp_ratio: float = 0.85

    def __post_init__(self) -> None:
        _check(
            self.detector in ("adaptive", "content"),
            f"shot detector {self.detector!r} is unknown; use 'adaptive' or 'content'",
        )
        _check(
            self.adaptive_threshold > 0,
            "adaptive_threshold must be > 0; PySceneDetect's default is 3.0",
        )
        _check(
            self.content_threshold > 0,
            "content_threshold must be > 0; PySceneDetect's default is 27.0",
        )
        _check(self.window_width >= 1, "window_width must be >= 1 frame; the default is 2")
        _check(self.min_shot_frames >= 1, "min_shot_frames must be >= 1")
        _check(
            32 <= self.analysis_width <= 1920,
            "analysis_width must be between 32 and 1920 px; 256 is the default",
        )
        _check(0 <= self.black_threshold < 255, "black_threshold must be a luma value in [0, 255)")
        _check(0 < self.fade_ramp_ratio <= 1, "fade_ramp_ratio must be in (0, 1]")


@dataclass(frozen=True)
class ClipOptions:
    """How shots are turned into training clips."""

    # what `loraforge ingest` and the API ask for when the user sets nothing (IngestParams.min_s;
    # tests/unit/ingest/test_manifest.py holds the two together)
    min_seconds: float = 2.0
    # Hosted Wan accepts <= 5 s for wan2.2 and <= 10 s for wan2.5 (see ``for_model``).
    max_seconds: float = 5.0
    # Long shots are split into clips of about this length.
    target_seconds: float = 4.0
    # Frames dropped at each shot boundary, so that detection being a frame or two off never
    # puts a frame of the neighbouring shot into a clip.
    trim_frames: int = 2

    def __post_init__(self) -> None:
        _check(self.min_seconds > 0, "min_seconds must be > 0")
        _check(
            self.max_seconds >= self.min_seconds,
            f"max_seconds ({self.max_seconds}) is below min_seconds ({self.min_seconds}); "
            "raise max or lower min",
        )
        _check(
            self.min_seconds <= self.target_seconds <= self.max_seconds,
            f"target_seconds ({self.target_seconds}) must lie between "
            f"min_seconds ({self.min_seconds}) "
            f"and max_seconds ({self.max_seconds})",
        )
        _check(0 <= self.trim_frames <= 30, "trim_frames must be between 0 and 30")

    @classmethod
    def for_model(cls, model: str, **overrides: float) -> ClipOptions:
        """Defaults matching a target model's clip length limit."""
        limits = {"wan2.2": (3.0, 4.0, 5.0), "wan2.5": (3.0, 5.0, 10.0)}
        if model not in limits:
            raise InvalidOptions(
                f"no clip preset for model {model!r}; known: {', '.join(sorted(limits))}"
            )
        lo, target, hi = limits[model]
        values = {"min_seconds": lo, "target_seconds": target, "max_seconds": hi, **overrides}
        return cls(**values)  # type: ignore[arg-type]


@dataclass(frozen=True)
class CutOptions:
    """How clips are encoded."""

    # Output frame rate; None keeps the source's. Wan trains at 16 fps.
    fps: float | None = 16.0
    # Longest output side in pixels (rounded to even); None keeps the source size.
    max_long_side: int | None = None
    keep_audio: bool = False
    crf: int = 18
    # x264 preset: clips are short-lived training inputs, speed matters more than bytes.
    preset: str = "veryfast"
    keyframe_format: ImageFormat = "jpg"
    # Parallel ffmpeg encodes; 0 = one per CPU core (at most 4).
    workers: int = 0
    # Write each clip's analysis proxy (sampled frames for curation, see proxy.py) from the
    # same ffmpeg pass, so curation never decodes the clip again.
    analysis_proxy: bool = True

    def __post_init__(self) -> None:
        _check(
            self.fps is None or (0 < self.fps <= 120),
            "fps must be in (0, 120] or None to keep the source rate",
        )
        _check(
            self.max_long_side is None or self.max_long_side >= 16,
            "max_long_side must be >= 16 px or None",
        )
        _check(0 <= self.crf <= 51, "crf must be between 0 and 51")
        _check(self.preset in _X264_PRESETS, f"preset must be one of {', '.join(_X264_PRESETS)}")
        _check(self.keyframe_format in ("jpg", "png"), "keyframe_format must be 'jpg' or 'png'")
        _check(self.workers >= 0, "workers must be >= 0 (0 = automatic)")


_X264_PRESETS = (
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
)


@dataclass(frozen=True)
class ArchiveLimits:
    """Zip-bomb and zip-slip guards. Sizes are checked on the bytes actually written."""

    max_entries: int = 2000
    max_total_bytes: int = 20 * GiB
    # Compressed-to-expanded ratio above which an entry is treated as a bomb. Video and JPEG
    # barely compress, so honest uploads stay far below this.
    max_ratio: float = 200.0

    def __post_init__(self) -> None:
        _check(self.max_entries >= 1, "max_entries must be >= 1")
        _check(self.max_total_bytes >= 1, "max_total_bytes must be >= 1")
        _check(self.max_ratio >= 1, "max_ratio must be >= 1")


@dataclass(frozen=True)
class MediaLimits:
    """What we accept at all, checked at probe time before any heavy decode."""

    min_side: int = 64
    max_side: int = 8192
    max_pixels: int = 8192 * 4320
    max_duration_seconds: float = 4 * 3600.0
    max_file_bytes: int = 50 * GiB
    # Phone photos reach 50-200 MP; decoding one costs 3 bytes per pixel of memory.
    photo_max_pixels: int = 120_000_000

    def __post_init__(self) -> None:
        _check(1 <= self.min_side <= self.max_side, "min_side must be >= 1 and <= max_side")
        _check(self.max_pixels >= self.min_side**2, "max_pixels is below min_side squared")
        _check(
            self.max_duration_seconds > 0 and math.isfinite(self.max_duration_seconds),
            "max_duration_seconds must be a positive number",
        )


@dataclass(frozen=True)
class IngestOptions:
    shots: ShotOptions = field(default_factory=ShotOptions)
    clips: ClipOptions = field(default_factory=ClipOptions)
    cut: CutOptions = field(default_factory=CutOptions)
    archive: ArchiveLimits = field(default_factory=ArchiveLimits)
    limits: MediaLimits = field(default_factory=MediaLimits)
    # Photos are re-encoded (EXIF orientation applied) to this format and long side.
    photo_format: ImageFormat = "png"
    photo_max_long_side: int | None = None

    def __post_init__(self) -> None:
        _check(self.photo_format in ("jpg", "png"), "photo_format must be 'jpg' or 'png'")
        _check(
            self.photo_max_long_side is None or self.photo_max_long_side >= 16,
            "photo_max_long_side must be >= 16 px or None",
        )
