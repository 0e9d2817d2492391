"""Real media facts for captions and exports: ffmpeg (imageio-ffmpeg's binary) decodes, PIL
reads images. Limits are checked on what the decoder reports, never on file names."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from PIL import Image

from loraforge.runtime.errors import InvalidInput

VIDEO_EXTS = {".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v"}
IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}


@dataclass(frozen=True)
class MediaInfo:
    path: Path
    kind: str  # video | image
    width: int
    height: int
    duration_s: float = 0.0
    fps: float = 0.0
    frames: int = 1


def ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return str(imageio_ffmpeg.get_ffmpeg_exe())


def is_video(path: Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTS


def probe(path: Path) -> MediaInfo:
    path = Path(path)
    if not path.is_file():
        raise InvalidInput(f"{path} does not exist")
    st = path.stat()
    # exports probe the same clip several times (limits, frames, report): decode it once
    return _probe(path.resolve(), st.st_mtime_ns, st.st_size)


@lru_cache(maxsize=1024)
def _probe(path: Path, _mtime_ns: int, _size: int) -> MediaInfo:
    if not is_video(path):
        try:
            with Image.open(path) as im:
                return MediaInfo(path, "image", im.width, im.height)
        except OSError as exc:
            raise InvalidInput(f"{path.name} is not a readable image or video ({exc})") from None
    import imageio_ffmpeg

    try:
        gen = imageio_ffmpeg.read_frames(str(path))
        meta = next(gen)
        gen.close()
        # count by decoding: container durations lie for cut clips (edit lists, open GOPs)
        frames, secs = imageio_ffmpeg.count_frames_and_secs(str(path))
    except (RuntimeError, OSError, StopIteration) as exc:
        raise InvalidInput(f"{path.name} cannot be decoded as video ({exc})") from None
    w, h = meta["size"]
    return MediaInfo(
        path, "video", int(w), int(h), float(secs), float(meta.get("fps") or 0), int(frames)
    )


def _run(args: list[str], what: str) -> None:
    proc = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", *args],
        capture_output=True,
        timeout=120,
        check=False,
    )
    if proc.returncode != 0:
        raise InvalidInput(f"{what} failed: {proc.stderr.decode(errors='replace')[-400:]}")


def extract_frame(video: Path, out: Path, which: str = "first") -> Path:
    """first | middle | last frame of a video as an image (format from `out`'s suffix)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    if which == "first":
        _run(
            ["-i", str(video), "-frames:v", "1", "-q:v", "2", str(out)],
            f"first frame of {video.name}",
        )
    elif which == "middle":
        info = probe(video)
        _run(
            [
                "-ss",
                f"{info.duration_s / 2:.3f}",
                "-i",
                str(video),
                "-frames:v",
                "1",
                "-q:v",
                "2",
                str(out),
            ],
            f"middle frame of {video.name}",
        )
    elif which == "last":
        # decode the last second and keep overwriting: the file ends as the last frame
        _run(
            ["-sseof", "-1", "-i", str(video), "-update", "1", "-q:v", "2", str(out)],
            f"last frame of {video.name}",
        )
    else:
        raise ValueError(which)
    if not out.is_file():
        raise InvalidInput(f"ffmpeg produced no {which} frame for {video.name}")
    return out


def sample_frames(path: Path, n: int = 4, max_side: int = 512) -> list[Image.Image]:
    """`n` frames spread over a video (or the image itself), RGB, long side <= max_side."""
    path = Path(path)
    if not is_video(path):
        with Image.open(path) as im:
            img = im.convert("RGB")
        img.thumbnail((max_side, max_side))
        return [img]
    import imageio_ffmpeg
    import numpy as np

    info = probe(path)
    want = {min(info.frames - 1, int((i + 0.5) * info.frames / n)) for i in range(n)}
    frames = []
    gen = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24")
    meta = next(gen)
    w, h = meta["size"]
    for i, buf in enumerate(gen):
        if i in want:
            img = Image.fromarray(np.frombuffer(buf, np.uint8).reshape(h, w, 3))
            img.thumbnail((max_side, max_side))
            frames.append(img)
        if len(frames) == len(want):
            break
    gen.close()
    return frames
