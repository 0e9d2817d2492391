"""Media type detection from content, not from the file name.

Uploads arrive with whatever name the user's phone or browser gave them (``.MOV`` that is
really MP4, ``.jpg`` that is HEIC, text saved as ``.mp4``), so the first bytes decide. The
extension is only used to phrase a better error.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path

from loraforge.ingest.errors import AudioOnly, EmptyFile, UnsupportedFormat

# Besides phone and web containers, what cameras and recorders write: MPEG transport streams
# (broadcast and DVR recordings; AVCHD camcorders' .MTS/.M2TS, with a 4-byte timestamp before
# each packet), MPEG program streams (DVD .VOB, SD .MPG), MXF (broadcast and cinema cameras),
# FLV and ASF/WMV. ffmpeg decodes all of them; cut.py deinterlaces the interlaced ones.
VIDEO_FORMATS = (
    "mp4",
    "mov",
    "mkv",
    "webm",
    "avi",
    "ts",
    "m2ts",
    "mpg",
    "mxf",
    "flv",
    "wmv",
    "gif",
)
PHOTO_FORMATS = ("jpg", "png", "webp", "bmp", "heic", "avif", "tiff", "gif")
RAW_PHOTO = (
    "camera RAW files are not supported; export the photo as JPEG, PNG or TIFF from your raw "
    "converter (Lightroom, darktable, the camera's app) and upload that"
)
ACCEPTED_FORMATS = (*VIDEO_FORMATS, *PHOTO_FORMATS, "zip")
ACCEPTED = "videos (" + ", ".join(VIDEO_FORMATS) + ") or photos (" + ", ".join(PHOTO_FORMATS) + ")"

_HEAD = 4096


class MediaKind(enum.StrEnum):
    VIDEO = "video"
    PHOTO = "photo"
    ARCHIVE = "archive"


@dataclass(frozen=True)
class Sniffed:
    kind: MediaKind
    format: str  # one of VIDEO_FORMATS, PHOTO_FORMATS or "zip"


# ISO-BMFF brands that mean QuickTime rather than MP4; the difference only matters for labels.
_QT_BRANDS = {b"qt  "}
# Brands of audio-only ISO files: reject early with a clear message instead of at probe time.
_AUDIO_BRANDS = {b"M4A ", b"M4B ", b"M4P ", b"F4A ", b"F4B "}
# HEIF still images (iPhone photos: heic; a burst or Live Photo's still: msf1, hevc) and AVIF
_HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"}
_AVIF_BRANDS = {b"avif", b"avis"}
_ISO_BOXES = {b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"}
_ASF_GUID = bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c")
# SMPTE 377 partition pack key (the first 13 bytes; byte 13 says which kind of partition)
_MXF_PARTITION = bytes.fromhex("060e2b34020501010d01020101")
_TS_SYNC = 0x47
_TS_PACKETS = 6  # sync bytes in a row at the packet period before a stream counts as MPEG-TS


def _packet_stream(head: bytes, period: int) -> bool:
    """MPEG-TS: a sync byte every ``period`` bytes (188; 192 for M2TS, whose 4-byte timestamp
    comes before each packet), from any offset within the first packet (a recording cut from
    a live stream can start mid-packet)."""
    for offset in range(period):
        if offset + (_TS_PACKETS - 1) * period >= len(head):
            return False
        if all(head[offset + k * period] == _TS_SYNC for k in range(_TS_PACKETS)):
            return True
    return False


def sniff(path: Path) -> Sniffed:
    """Classify ``path`` by its first bytes; raise a helpful error for anything we don't take."""
    path = Path(path)
    size = path.stat().st_size
    if size == 0:
        raise EmptyFile(f"{path.name}: the file is empty (0 bytes); upload it again")
    with path.open("rb") as fh:
        head = fh.read(_HEAD)

    if head.startswith(b"\xff\xd8\xff"):
        return Sniffed(MediaKind.PHOTO, "jpg")
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return Sniffed(MediaKind.PHOTO, "png")
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return Sniffed(MediaKind.PHOTO, "webp")
    if head[:2] == b"BM" and len(head) >= 26 and int.from_bytes(head[2:6], "little") in (0, size):
        # The BMP header repeats the file size; checking it avoids taking any text starting
        # with "BM" for a bitmap.
        return Sniffed(MediaKind.PHOTO, "bmp")
    if head.startswith((b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")):
        if head[8:10] == b"CR":  # Canon's CR2 is a TIFF with its own marker
            raise UnsupportedFormat(f"{path.name}: {RAW_PHOTO}")
        return Sniffed(MediaKind.PHOTO, "tiff")  # DNG and other TIFF-based RAWs: photo.py
    if head.startswith((b"GIF87a", b"GIF89a")):
        # an animated GIF is a short video (effect and reaction loops), a still one a photo
        return Sniffed(MediaKind.VIDEO if _gif_frames(path) > 1 else MediaKind.PHOTO, "gif")
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return Sniffed(MediaKind.VIDEO, "avi")
    if head[:4] == b"\x1a\x45\xdf\xa3":
        # EBML: the DocType says whether this is WebM or generic Matroska.
        return Sniffed(MediaKind.VIDEO, "webm" if b"webm" in head[:64] else "mkv")
    if len(head) >= 12 and head[4:8] in _ISO_BOXES:
        brand = head[8:12] if head[4:8] == b"ftyp" else b""
        if brand in _AUDIO_BRANDS:
            raise AudioOnly(
                f"{path.name}: this is an audio file ({brand.decode().strip()}) with no video; "
                f"upload the video itself, not its sound track"
            )
        if brand in _AVIF_BRANDS:
            return Sniffed(MediaKind.PHOTO, "avif")
        if brand in _HEIF_BRANDS:
            return Sniffed(MediaKind.PHOTO, "heic")
        return Sniffed(
            MediaKind.VIDEO, "mov" if brand in _QT_BRANDS or head[4:8] != b"ftyp" else "mp4"
        )
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return Sniffed(MediaKind.ARCHIVE, "zip")
    if head.startswith(b"\x00\x00\x01\xba"):  # MPEG-PS pack header
        return Sniffed(MediaKind.VIDEO, "mpg")
    if head.startswith(_MXF_PARTITION):
        return Sniffed(MediaKind.VIDEO, "mxf")
    if head.startswith(b"FLV\x01"):
        return Sniffed(MediaKind.VIDEO, "flv")
    if head.startswith(_ASF_GUID):
        return Sniffed(MediaKind.VIDEO, "wmv")
    if _packet_stream(head, 192):
        return Sniffed(MediaKind.VIDEO, "m2ts")
    if _packet_stream(head, 188):
        return Sniffed(MediaKind.VIDEO, "ts")

    raise UnsupportedFormat(f"{path.name}: {_describe(head, path)}; upload {ACCEPTED}")


def _gif_frames(path: Path) -> int:
    """Frames of a GIF (PIL reads the block structure, not the pixels); 0 when unreadable (the
    photo path then says what is wrong)."""
    from PIL import Image  # only GIFs need it: the gateway imports this module without PIL

    try:
        with Image.open(path) as im:
            return int(getattr(im, "n_frames", 1))
    except (OSError, ValueError, Image.DecompressionBombError):
        return 0  # a GIF too large to open: photo.py refuses it with the size


def _describe(head: bytes, path: Path) -> str:
    """Say what the content looks like, because "unsupported" alone does not help anyone."""
    audio = {
        b"ID3": "an MP3 audio file",
        b"fLaC": "a FLAC audio file",
        b"OggS": "an Ogg file (audio or Theora)",
    }
    for magic, what in audio.items():
        if head.startswith(magic):
            return f"the content is {what}, not a video or photo"
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "the content is a WAV audio file, not a video or photo"
    if head.startswith(b"\x1f\x8b"):
        return "the content is a gzip archive; only zip archives are accepted"
    sample = head[:512]
    if sample and all(b in b"\t\n\r" or 32 <= b < 127 or b >= 128 for b in sample):
        try:
            sample.decode("utf-8")
            ext = path.suffix.lower() or "no extension"
            return (
                f"the content is text, not media (named {ext}, but the bytes are not a video "
                "or photo)"
            )
        except UnicodeDecodeError:
            pass
    return "the content is not a recognised video or photo format"
