"""Locating ffmpeg/ffprobe and running them.

The media extra only guarantees imageio-ffmpeg, whose wheel ships ffmpeg but not ffprobe, so
ffprobe is optional everywhere: ``probe`` falls back to parsing ``ffmpeg -i``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from loraforge.runtime.errors import ConfigurationError


@dataclass(frozen=True)
class MediaTools:
    ffmpeg: str
    ffprobe: str | None = None

    @classmethod
    def discover(cls) -> MediaTools:
        return _discover()

    def without_ffprobe(self) -> MediaTools:
        """The same tools, forcing the ffmpeg-only probe path (used by tests)."""
        return MediaTools(ffmpeg=self.ffmpeg, ffprobe=None)


@lru_cache(maxsize=1)
def _discover() -> MediaTools:
    ffmpeg = os.environ.get("LORAFORGE_FFMPEG") or _imageio_ffmpeg() or shutil.which("ffmpeg")
    if not ffmpeg:
        raise ConfigurationError(
            "no ffmpeg found: install the media extra (pip install 'loraforge[media]') "
            "or set LORAFORGE_FFMPEG"
        )
    # LORAFORGE_FFPROBE="" disables ffprobe explicitly.
    env_probe = os.environ.get("LORAFORGE_FFPROBE")
    if env_probe is not None:
        return MediaTools(ffmpeg=ffmpeg, ffprobe=env_probe or None)
    sibling = Path(ffmpeg).with_name("ffprobe")
    ffprobe = (
        str(sibling)
        if sibling.is_file() and os.access(sibling, os.X_OK)
        else shutil.which("ffprobe")
    )
    return MediaTools(ffmpeg=ffmpeg, ffprobe=ffprobe)


def _imageio_ffmpeg() -> str | None:
    try:
        import imageio_ffmpeg
    except ImportError:
        return None
    try:
        exe: str = imageio_ffmpeg.get_ffmpeg_exe()
        return exe
    except RuntimeError:  # wheel without a binary for this platform
        return None


def run(args: list[str], timeout: float | None = None) -> subprocess.CompletedProcess[bytes]:
    """Run a tool capturing output; never raises on a non-zero exit (callers interpret it)."""
    return subprocess.run(
        args, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, check=False
    )


def tail(data: bytes, lines: int = 6) -> str:
    text = data.decode("utf-8", "replace").strip().splitlines()
    return " | ".join(line.strip() for line in text[-lines:])
