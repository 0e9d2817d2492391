"""Synthetic captioned datasets for tests, the demo and the benchmark.

A distinctive pattern tied to a trigger word: a bright checkered square with a red bar that
moves diagonally across a dark blue background (videos), or sits at varying positions
(images). Every caption starts with the trigger.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

TRIGGER = "s86b5p"


def _frame(w: int, h: int, t: float, phase: float) -> np.ndarray:
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 2] = 60  # dark blue (RGB)
    size = max(8, min(w, h) // 3)
    x = int((w - size) * ((t + phase) % 1.0))
    y = int((h - size) * ((0.5 * t + phase) % 1.0))
    yy, xx = np.mgrid[0:size, 0:size]
    checker = (((yy // 4) + (xx // 4)) % 2 * 200 + 55).astype(np.uint8)
    img[y : y + size, x : x + size] = checker[..., None]
    img[y : y + 3, x : x + size] = (230, 30, 30)
    return img


def write_video_dataset(
    root: Path,
    clips: int = 3,
    frames: int = 17,
    size: tuple[int, int] = (64, 48),
    fps: float = 16.0,
    trigger: str = TRIGGER,
) -> Path:
    """Seed layout: ``videos/clip_NNN.mp4`` + ``captions/clip_NNN.txt``."""
    import cv2

    (root / "videos").mkdir(parents=True, exist_ok=True)
    (root / "captions").mkdir(parents=True, exist_ok=True)
    w, h = size
    for c in range(clips):
        path = root / "videos" / f"clip_{c:03d}.mp4"
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, (w, h))
        for i in range(frames):
            writer.write(cv2.cvtColor(_frame(w, h, i / frames, c / clips), cv2.COLOR_RGB2BGR))
        writer.release()
        (root / "captions" / f"clip_{c:03d}.txt").write_text(
            f"{trigger}, checkered square moving diagonally, dark blue background"
        )
    return root


def write_image_dataset(
    root: Path, images: int = 4, size: tuple[int, int] = (64, 64), trigger: str = TRIGGER
) -> Path:
    """``img_NNN.png`` + ``img_NNN.txt``."""
    from PIL import Image

    root.mkdir(parents=True, exist_ok=True)
    w, h = size
    for i in range(images):
        Image.fromarray(_frame(w, h, i / images, 0.1)).save(root / f"img_{i:03d}.png")
        (root / f"img_{i:03d}.txt").write_text(f"{trigger}, checkered square, dark blue background")
    return root
