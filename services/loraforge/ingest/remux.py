"""A seekable copy of sources whose container has no index.

MPEG transport and program streams (broadcast and DVR recordings, AVCHD camcorders, DVD and SD
captures) carry no table of keyframes: ffmpeg seeks in them by guessing a byte offset from
timestamps, lands between keyframes, and the decoder drops every frame until the next one. A
clip cut at second 40 of such a file starts up to a GOP late, or comes out empty when the
encoder wrote few keyframes. Copying the streams into Matroska first (no decoding: about the
speed of the disk) gives ffmpeg the keyframe index every later seek needs, and moves the
first timestamp to 0 (a recording's clock can start hours in).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from loraforge.ingest.errors import AudioOnly, CorruptMedia
from loraforge.ingest.tools import MediaTools, run, tail

# sniff's formats whose seeks need the copy (measured: a seek into the middle of a long GOP
# decodes nothing in these; MP4, MOV, MKV, WebM, AVI, MXF, FLV and ASF seek to a keyframe)
UNINDEXED_FORMATS = frozenset({"ts", "m2ts", "mpg"})
_REMUX_TIMEOUT = 900.0


@contextmanager
def seekable(path: Path, fmt: str, workdir: Path, tools: MediaTools) -> Iterator[Path]:
    """``path`` itself, or for UNINDEXED_FORMATS a Matroska copy of its first video and audio
    streams, removed afterwards. The copy keeps the file's name (ffmpeg reads the content, not
    the extension), so every message further on still names the user's file."""
    if fmt not in UNINDEXED_FORMATS:
        yield path
        return
    out = workdir / "seekable" / path.name
    out.parent.mkdir(parents=True, exist_ok=True)
    proc = run(
        [
            tools.ffmpeg,
            "-nostdin",
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-i",
            str(path),
            "-map",
            "0:v:0",
            "-map",
            "0:a:0?",
            "-c",
            "copy",
            "-avoid_negative_ts",
            "make_zero",
            "-f",
            "matroska",
            str(out),
        ],
        timeout=_REMUX_TIMEOUT,
    )
    try:
        if proc.returncode != 0 and b"matches no streams" in proc.stderr:
            raise AudioOnly(
                f"{path.name}: the {fmt.upper()} stream carries no video (a radio or audio "
                f"recording); upload the video itself"
            )
        if proc.returncode != 0 or not out.is_file() or out.stat().st_size == 0:
            raise CorruptMedia(
                f"{path.name}: the {fmt.upper()} stream could not be read "
                f"({tail(proc.stderr, 3)[:300] or 'no video stream'}); the recording is "
                f"probably damaged or incomplete, upload it again"
            )
        yield out
    finally:
        out.unlink(missing_ok=True)
