"""Test footage built from real photos: astronaut (Eileen Collins) and Grace Hopper."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import matplotlib.cbook
import numpy as np
import skimage.data

W, H = 480, 360
FPS = 8


def astronaut() -> np.ndarray:
    return cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)


def hopper() -> np.ndarray:
    return cv2.imread(str(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))


def astronaut_frame(t: int, dx: int = 3) -> np.ndarray:
    """4:3 window around the face, panning slowly so that the picture changes over time."""
    x = 20 + dx * t
    return cv2.resize(astronaut()[0:300, x : x + 400], (W, H), interpolation=cv2.INTER_AREA)


def hopper_frame(t: int, dx: int = 3) -> np.ndarray:
    x = 30 + dx * t
    return cv2.resize(hopper()[60:420, x : x + 480][:, :480], (W, H), interpolation=cv2.INTER_AREA)


def two_people_frame(t: int) -> np.ndarray:
    left = cv2.resize(astronaut()[0:360, 40 + 3 * t : 310 + 3 * t], (240, H))
    right = cv2.resize(hopper()[40:600, 3 * t : 372 + 3 * t], (240, H))
    return np.hstack([left, right])


def write_clip(
    path: Path, frame_fn: Callable[[int], np.ndarray], seconds: float = 2.5, fps: int = FPS
) -> Path:
    n = int(round(seconds * fps))
    first = frame_fn(0)
    h, w = first.shape[:2]
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    assert vw.isOpened(), "cv2 cannot write mp4v here"
    for i in range(n):
        vw.write(frame_fn(i))
    vw.release()
    return path


def darken(img: np.ndarray, f: float = 0.15) -> np.ndarray:
    return (img.astype(np.float32) * f).astype(np.uint8)


def blur(img: np.ndarray, k: int = 21) -> np.ndarray:
    return cv2.GaussianBlur(img, (k, k), 0)


def letterbox(img: np.ndarray, frac: float = 0.2) -> np.ndarray:
    out = img.copy()
    b = int(img.shape[0] * frac)
    out[:b] = 0
    out[-b:] = 0
    return out


def with_text(img: np.ndarray, text: str = "Subtitle burned into the picture") -> np.ndarray:
    out = img.copy()
    cv2.putText(out, text, (20, 330), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (255, 255, 255), 2)
    return out
