"""Small real media for captioning tests: scikit-image's photos turned into clips by ffmpeg."""

from __future__ import annotations

import subprocess
from pathlib import Path

import imageio_ffmpeg
import numpy as np
from PIL import Image
from skimage import data

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "cat")


def photo(name: str, size: int = 160) -> Image.Image:
    arr = getattr(data, name)()
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, -1)
    img = Image.fromarray(arr[..., :3].astype(np.uint8))
    return img.resize((size, size))


def make_clip(
    src: Image.Image,
    out: Path,
    seconds: float = 2.0,
    fps: int = 8,
    size: int = 128,
    ext: str = ".mp4",
) -> Path:
    """A slow zoom over the photo (real motion, real H.264) of `seconds` at `fps`."""
    out = out.with_suffix(ext)
    png = out.with_suffix(".src.png")
    src.save(png)
    frames = int(seconds * fps)
    cmd = [
        imageio_ffmpeg.get_ffmpeg_exe(),
        "-hide_banner",
        "-loglevel",
        "error",
        "-y",
        "-loop",
        "1",
        "-i",
        str(png),
        "-vf",
        (f"scale={size * 2}:{size * 2},zoompan=z='1+0.01*on':d={frames}:s={size}x{size}:fps={fps}"),
        "-frames:v",
        str(frames),
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv420p",
        "-preset",
        "ultrafast",
        str(out),
    ]
    subprocess.run(cmd, check=True, capture_output=True, timeout=60)
    png.unlink()
    return out


def make_clips(folder: Path, n: int, **kw) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        img = photo(PHOTOS[i % len(PHOTOS)])
        if i >= len(PHOTOS):  # vary the framing so no two clips are the same
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        out.append(make_clip(img, folder / f"clip{i:02d}", **kw))
    return out
