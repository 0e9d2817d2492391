"""Example footage for `make run` when no path is given, generated from real photos that
installed packages ship (scikit-image's astronaut, matplotlib's Grace Hopper), so the demo
needs no download and exercises the real decoders, detectors and encoders.

The set is small but tells a story: several usable shots of one person (slow pan, zoom, a
darker take), one shot with a second person beside her, and one blurred shot, so the
summary shows clips kept and clips rejected with reasons.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

SIZE = (768, 576)  # >= 512 short side: the curation policy's default minimum
FPS = 24


@dataclass(frozen=True)
class ExampleClip:
    name: str
    seconds: float
    description: str


def _astronaut() -> np.ndarray:
    from skimage import data

    img: np.ndarray = data.astronaut()  # RGB uint8 512x512, one clear face
    return img


def _grace_hopper() -> np.ndarray:
    from matplotlib import cbook
    from PIL import Image

    with Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)) as img:
        return np.asarray(img.convert("RGB"))


def _fit(img: np.ndarray, width: int, height: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(img).resize((width, height), Image.Resampling.LANCZOS))


def _frames(kind: str, n: int) -> list[np.ndarray]:
    import cv2

    w, h = SIZE
    face = _astronaut()
    canvas_src = _fit(face, int(w * 1.25), int(h * 1.25))
    out = []
    for i in range(n):
        t = i / max(n - 1, 1)
        if kind == "pan":
            x = int(t * (canvas_src.shape[1] - w))
            frame = canvas_src[:h, x : x + w]
        elif kind == "zoom":
            scale = 1.0 + 0.25 * t
            big = cv2.resize(face, None, fx=scale * w / face.shape[1], fy=scale * h / face.shape[0])
            y0 = (big.shape[0] - h) // 2
            x0 = (big.shape[1] - w) // 2
            frame = big[y0 : y0 + h, x0 : x0 + w]
        elif kind == "dim":
            frame = (_fit(face, w, h).astype(np.float32) * (0.55 + 0.05 * t)).astype(np.uint8)
        elif kind == "two_people":
            left = _fit(face, w // 2, h)
            right = _fit(_grace_hopper(), w // 2, h)
            frame = np.concatenate([left, right], axis=1)
            frame = np.roll(frame, int(6 * np.sin(t * 6.28)), axis=1)
        elif kind == "blurred":
            frame = cv2.GaussianBlur(_fit(face, w, h), (0, 0), 9)
        else:
            raise ValueError(kind)
        out.append(np.ascontiguousarray(frame))
    return out


EXAMPLES = (
    ExampleClip("pan", 6.0, "slow pan across one face"),
    ExampleClip("zoom", 6.0, "push-in on the same face"),
    ExampleClip("dim", 5.0, "the same face in low light"),
    ExampleClip("two_people", 5.0, "the face beside a second person"),
    ExampleClip("blurred", 5.0, "an out-of-focus take"),
)


def write_example_footage(dest: Path) -> list[Path]:
    """Write the example clips as H.264 mp4 into `dest` (reused when already there)."""
    import imageio_ffmpeg

    dest.mkdir(parents=True, exist_ok=True)
    paths = []
    for clip in EXAMPLES:
        path = dest / f"{clip.name}.mp4"
        paths.append(path)
        if path.exists() and path.stat().st_size > 0:
            continue
        tmp = path.with_suffix(".tmp.mp4")
        writer = imageio_ffmpeg.write_frames(
            str(tmp),
            SIZE,
            fps=FPS,
            codec="libx264",
            pix_fmt_out="yuv420p",
            quality=None,
            output_params=["-crf", "20", "-preset", "veryfast"],
            macro_block_size=16,
        )
        writer.send(None)
        for frame in _frames(clip.name, int(clip.seconds * FPS)):
            writer.send(frame)
        writer.close()
        tmp.replace(path)
    return paths
