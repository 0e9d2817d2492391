"""The per-source ingest manifest, `manifest-<options_hash>.json` (key: `layout.manifest_key`).

Ingest writes one per source file and options hash, LAST (it is the commit marker: every object
it names exists before it), through `SourceManifest.dump`; curation (`curation/worker.py:
discover_clips`) and ingest's own reuse check read it with `SourceManifest.model_validate`.
A manifest of a file ingest could not use is written too (`error` set, no clips) so that a
re-ingest of the same bytes reports the same error without decoding them again.

Every key a manifest names is absolute in the clips bucket, under the source's
`clips_prefix`.

Kept free of the media stack (no OpenCV, numpy) so curation's job side and the CLI can import it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, SerializerFunctionWrapHandler, field_serializer, model_serializer

from loraforge.ingest.models import Shot, SkippedSegment

# Bump when the manifest's shape or the meaning of the core's output changes: it is part of the
# options hash (worker.py: options_hash), so old manifests are then not reused.
# 2: clips of sources slower than the target rate keep the source's rate (1 padded them with
#    duplicated frames); each clip has an analysis proxy; the manifest reports the frame rate.
MANIFEST_VERSION = 2


class _OmitNone(BaseModel):
    """Fields in `_omit_when_none` are left out of the JSON while unset (None), as ingest wrote
    them before these models existed: the stored shape, and so the options hash, stay the same."""

    _omit_when_none: ClassVar[tuple[str, ...]] = ()

    @model_serializer(mode="wrap")
    def _drop_none(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        for name in self._omit_when_none:
            if data.get(name, 0) is None:
                del data[name]
        return data


class ClipEntry(_OmitNone):
    """One training item cut from the source: a clip (video) or the normalised photo. The
    fields from `shot_index` on are the core's `models.Clip`, less its local paths."""

    _omit_when_none: ClassVar[tuple[str, ...]] = ("analysis_key", "crop")

    clip_id: str  # `layout.clip_id`: unique per source and options hash
    kind: Literal["clip", "photo"]
    key: str  # the clip (.mp4) or photo (.png/.jpg)
    size: int
    keyframes: dict[str, str]  # first/middle/last -> key (a photo: image -> its own key)
    keyframe_keys: list[str]  # the same keys in that order
    duration: float  # seconds (0 for a photo)
    shot_index: int
    source_start: float
    source_end: float
    source_start_frame: int
    source_end_frame: int
    frames: int
    fps: float  # the clip's own rate (0 for a photo)
    width: int
    height: int
    sha256: str = ""
    # the analysis proxy (`layout.analysis_key`, proxy.py) curation reads instead of the clip;
    # None when the clip has none (photos)
    analysis_key: str | None = None
    # black mattes cut away (ingest/matte.py): the picture's width, height, x, y in the source
    # frame; None when the whole frame was kept
    crop: list[int] | None = None


class SourceRef(BaseModel):
    key: str  # the original in raw, content-addressed (`layout.original_key`)
    name: str  # the file's name as submitted (a zip member: its path in the zip)
    submitted_as: str  # the job's source string: a raw key or a URL
    archive: str | None = None  # the zip it came out of, if any


class SourceProbe(BaseModel):
    """`models.ProbeResult` less its local path."""

    container: str
    codec: str
    width: int
    height: int
    coded_width: int
    coded_height: int
    rotation: int
    fps: float
    variable_frame_rate: bool
    duration: float
    frame_count: int
    frame_count_exact: bool
    bitrate: int | None
    has_audio: bool
    pixel_format: str | None = None
    sample_aspect_ratio: float = 1.0
    source: str = "ffprobe"
    color_transfer: str | None = None


class FrameRate(BaseModel):
    """`plan.frame_rate_report`: the source's measured rate against the training rate."""

    source_fps: float
    target_fps: float | None  # the rate clips are cut at (None: the source's own)
    variable: bool
    below_target: bool
    clips_below_target: int
    clip_fps: list[float]


class IngestFailure(_OmitNone):
    type: str | None  # the error's class name, e.g. "UnsupportedFormat"
    message: str | None
    # an UnsupportedFormat's: the formats ingest took when it refused the file (sniff.ACCEPTED_
    # FORMATS). A refusal is a fact about the bytes only while that list stays the same: a later
    # ingest that takes more formats looks at the file again (worker._reuse)
    accepted: list[str] | None = None

    _omit_when_none: ClassVar[tuple[str, ...]] = ("accepted",)


class SourceManifest(_OmitNone):
    _omit_when_none: ClassVar[tuple[str, ...]] = ("timings",)

    manifest_version: int
    tenant: str
    project: str
    source_sha256: str
    source: SourceRef
    options_hash: str
    # `dataclasses.asdict(IngestOptions)`: what the options hash was made of, for people
    options: dict[str, Any]
    clips_prefix: str  # `layout.clips_prefix`: every key below is under it
    job_id: str
    created_at: datetime
    kind: Literal["video", "photo"] | None = None  # None when the file failed
    format: str | None = None  # the sniffed container or image format
    probe: SourceProbe | None = None  # videos only
    shots: list[Shot] = []
    clips: list[ClipEntry] = []
    skipped: list[SkippedSegment] = []
    frame_rate: FrameRate | None = None  # videos only
    error: IngestFailure | None = None  # set when the file could not be ingested
    timings: dict[str, float] | None = None  # seconds per stage; absent when the file failed

    @field_serializer("created_at")
    def _iso(self, value: datetime) -> str:
        return value.isoformat()  # "+00:00", as before (pydantic would write "Z")

    def dump(self) -> dict[str, Any]:
        """The JSON object stored under `layout.manifest_key`."""
        return self.model_dump(mode="json")


class SkippedSpan(BaseModel):
    start: float
    end: float
    reason: str


class FileReport(BaseModel):
    """One file of an ingest job in the job's result (`sources`): what its manifest says, or
    why it has none. Light, like the manifest, so a client can read the result with it."""

    source: str  # the job's source string it came from (a zip's members share it)
    file: str  # its name (a zip member: its path in the zip)
    archive: str | None = None
    sha256: str | None = None
    raw_key: str | None = None  # the original in raw
    manifest_key: str | None = None  # None when nothing was remembered (an internal error)
    clips: int = 0
    skipped: list[SkippedSpan] = []
    frame_rate: FrameRate | None = None
    error: str | None = None
    error_type: str | None = None  # the error's class name; "internal" for a bug
    reused: bool = False  # an earlier job's manifest was found: nothing was done again

    @classmethod
    def from_manifest(
        cls, manifest: SourceManifest, source: str, name: str, mkey: str, *, reused: bool
    ) -> FileReport:
        error = manifest.error or IngestFailure(type=None, message=None)
        return cls(
            source=source,
            file=name,
            archive=manifest.source.archive,
            sha256=manifest.source_sha256,
            raw_key=manifest.source.key,
            manifest_key=mkey,
            clips=len(manifest.clips),
            skipped=[
                SkippedSpan(start=s.start, end=s.end, reason=s.reason) for s in manifest.skipped
            ],
            frame_rate=manifest.frame_rate,
            error=error.message,
            error_type=error.type,
            reused=reused,
        )
