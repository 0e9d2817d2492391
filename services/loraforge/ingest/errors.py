"""Errors the ingest media core raises.

Every one is an ``InvalidInput`` so the service layer maps them to a single wire status
(INVALID_ARGUMENT) without knowing this module. Messages always start with the file name,
say what is wrong and end with what the caller can do about it, because they are shown to
end users as-is in per-file job reports.
"""

from __future__ import annotations

from loraforge.runtime.errors import InvalidInput


class IngestError(InvalidInput):
    """Base of every ingest input error (lets callers catch just ours)."""


class InvalidOptions(IngestError):
    """Options that cannot work together (min > max seconds, fps <= 0, ...)."""


class MissingFile(IngestError):
    """A listed input that does not exist or is not a regular file."""


class FileTooLarge(IngestError):
    """An upload above the configured size limit."""


class EmptyFile(IngestError):
    """A zero-byte upload."""


class UnsupportedFormat(IngestError):
    """Content is not one of the accepted video or photo formats (whatever its extension)."""


class AudioOnly(IngestError):
    """The file has sound but no picture."""


class CorruptMedia(IngestError):
    """The container or stream cannot be read (truncated upload, damaged file)."""


class VideoTooSmall(IngestError):
    """Dimensions below what a LoRA can learn anything from."""


class VideoTooLarge(IngestError):
    """Dimensions (or pixel count) above what the workers can decode safely."""


class VideoTooShort(IngestError):
    """No usable segment: the video is shorter than the minimum clip length."""


class NoUsableClips(IngestError):
    """The video decoded fine but every shot was too short or dark to make a clip."""


class UnsafeArchive(IngestError):
    """A zip entry that would escape the extraction folder (../, absolute path, symlink)."""


class ArchiveTooLarge(IngestError):
    """A zip with too many entries or that expands past the configured size limit."""


class CorruptArchive(IngestError):
    """A zip that cannot be read."""


class UrlSourceUnavailable(IngestError):
    """URL sources need the optional yt-dlp package, which is not installed here."""


class UrlFetchFailed(IngestError):
    """yt-dlp could not fetch the URL (no network, private video, bad URL)."""


class ForeignSource(IngestError):
    """A source key outside the job's own `<tenant>/<project>/` prefix (or not a key at all)."""


class NoSourceUsable(IngestError):
    """Every source of a job failed; the message lists each file's error."""
