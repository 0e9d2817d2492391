"""Result types of the ingest media core.

Plain frozen dataclasses with ``to_dict`` so the service layer can turn them into protobuf
or JSON events without this package knowing either.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


class _Dictable:
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (paths as strings, tuples as lists)."""
        plain: dict[str, Any] = _plain(self)
        return plain


@dataclass(frozen=True)
class ProbeResult(_Dictable):
    path: Path
    container: str  # demuxer name, e.g. "mov,mp4,m4a,3gp,3g2,mj2" or "matroska,webm"
    codec: str  # video codec, e.g. "h264"
    width: int  # as displayed, i.e. after rotation and pixel aspect
    height: int
    coded_width: int  # as stored in the stream
    coded_height: int
    rotation: int  # clockwise degrees the player turns the picture: 0, 90, 180, 270
    fps: float  # average frame rate
    variable_frame_rate: bool
    duration: float  # seconds
    frame_count: int  # exact when the container or a decode pass says so, else estimated
    frame_count_exact: bool
    bitrate: int | None  # bits per second, whole file
    has_audio: bool
    pixel_format: str | None = None
    sample_aspect_ratio: float = 1.0
    source: str = "ffprobe"  # "ffprobe" or "ffmpeg" (fallback parser)
    # the stream's transfer function as ffmpeg names it (bt709, smpte2084 = PQ, arib-std-b67 =
    # HLG, ...); None when the file does not say
    color_transfer: str | None = None


@dataclass(frozen=True)
class Shot(_Dictable):
    index: int
    start_frame: int  # inclusive, in decoded source frames
    end_frame: int  # exclusive
    start: float  # seconds
    end: float
    # Why this shot ends: "cut", "fade" (black span follows) or "end" (end of video).
    ends_with: str = "cut"
    starts_with: str = "start"


@dataclass(frozen=True)
class ClipPlan(_Dictable):
    shot_index: int
    start_frame: int
    end_frame: int  # exclusive
    start: float  # seconds in the source: cut window [start, end)
    end: float
    out_frames: int  # frames the encoded clip will have
    # Output rate of this clip: the target rate, or the source's own rate where the source is
    # slower (frames are dropped to reach a lower rate, never duplicated to reach a higher one).
    fps: float = 0.0
    # the picture inside black mattes (matte.matte_crop): width, height, x, y of the frames the
    # filter graph sees; None: the whole frame
    crop: tuple[int, int, int, int] | None = None

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class SkippedSegment(_Dictable):
    shot_index: int | None
    start: float
    end: float
    reason: str


@dataclass(frozen=True)
class Clip(_Dictable):
    path: Path
    shot_index: int
    source_start: float  # seconds
    source_end: float
    source_start_frame: int
    source_end_frame: int  # exclusive
    frames: int
    fps: float
    width: int
    height: int
    keyframes: tuple[Path, ...]  # first, middle, last frame
    sha256: str = ""
    analysis: Path | None = None  # the analysis proxy curation reads instead of the clip (proxy.py)
    crop: tuple[int, int, int, int] | None = None  # the plan's: mattes cut away (matte.py)

    @property
    def duration(self) -> float:
        return self.frames / self.fps if self.fps else 0.0


@dataclass(frozen=True)
class SourceResult(_Dictable):
    source: Path
    sha256: str
    kind: str  # "video" or "photo"
    format: str  # sniffed container/image format
    probe: ProbeResult | None
    shots: tuple[Shot, ...] = ()
    clips: tuple[Clip, ...] = ()
    skipped: tuple[SkippedSegment, ...] = ()
    timings: dict[str, float] = field(default_factory=dict)
    # Videos: the source's measured rate against the training rate asked for (see
    # ``plan.frame_rate_report``); None for photos.
    frame_rate: dict[str, Any] | None = None


@dataclass(frozen=True)
class FileOutcome(_Dictable):
    """One input of a batch: either ``result`` or ``error`` is set."""

    source: Path
    result: SourceResult | None = None
    archive: Path | None = None  # the zip this file came out of, if any
    error: str | None = None
    error_type: str | None = None  # class name, e.g. "EmptyFile"; "internal" for bugs

    @property
    def ok(self) -> bool:
        return self.error is None
