"""Synthetic "renders" built from real photos: the astronaut (Eileen Collins, the reference
person) and Grace Hopper (another person), head and shoulders pasted onto varied backgrounds
with shifts, scale, small rotations and colour jitter, as a LoRA's previews of one person in
different scenes would look."""

from __future__ import annotations

from functools import lru_cache

import cv2
import matplotlib.cbook
import numpy as np
import skimage.data

SIZE = 384


@lru_cache(maxsize=1)
def _astronaut() -> np.ndarray:
    return cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)


@lru_cache(maxsize=1)
def _hopper() -> np.ndarray:
    return cv2.imread(str(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))


def astronaut() -> np.ndarray:
    return _astronaut().copy()


def hopper() -> np.ndarray:
    return _hopper().copy()


# head-and-shoulders windows (x0, y0, x1, y1) and the scale that brings each face to ~100 px
_PEOPLE = {
    "astronaut": (astronaut, (105, 15, 345, 300), 1.0),
    "hopper": (hopper, (90, 50, 450, 460), 0.5),
}


def background(rng: np.random.Generator, size: int = SIZE) -> np.ndarray:
    """A scene: a two-colour gradient, a few coloured shapes and grain; every seed differs."""
    c0, c1 = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    t = np.linspace(0, 1, size)[:, None, None]
    if rng.random() < 0.5:
        t = t.transpose(1, 0, 2)
    img = (c0 * (1 - t) + c1 * t).astype(np.float32) * np.ones((size, size, 3), np.float32)
    for _ in range(int(rng.integers(3, 8))):
        col = tuple(int(v) for v in rng.integers(0, 256, 3))
        x, y = (int(v) for v in rng.integers(0, size, 2))
        r = int(rng.integers(15, 90))
        if rng.random() < 0.5:
            cv2.circle(img, (x, y), r, col, -1)
        else:
            cv2.rectangle(img, (x, y), (x + r, y + int(rng.integers(15, 120))), col, -1)
    img += rng.normal(0, 6, img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def render(person: str, seed: int, size: int = SIZE) -> np.ndarray:
    """One preview: ``person`` in a new scene, framing and colour grade per seed."""
    rng = np.random.default_rng(seed)
    load, (x0, y0, x1, y1), base = _PEOPLE[person]
    crop = load()[y0:y1, x0:x1]
    s = base * float(rng.uniform(0.95, 1.2))
    crop = cv2.resize(crop, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
    h, w = crop.shape[:2]
    ang = float(rng.uniform(-7, 7))
    m = cv2.getRotationMatrix2D((w / 2, h / 2), ang, 1.0)
    crop = cv2.warpAffine(crop, m, (w, h), borderMode=cv2.BORDER_REFLECT)
    # colour jitter: contrast, brightness and a per-channel tint
    gain = rng.uniform(0.85, 1.15) * rng.uniform(0.92, 1.08, 3)
    crop = np.clip(crop.astype(np.float32) * gain + rng.uniform(-15, 15), 0, 255)
    # soft ellipse so that the person's original background does not travel with them
    mask = np.zeros((h, w), np.float32)
    cv2.ellipse(mask, (w // 2, h // 2), (int(w * 0.38), int(h * 0.5)), 0, 0, 360, 1.0, -1)
    mask = cv2.GaussianBlur(mask, (31, 31), 0)[:, :, None]
    out = background(rng, size).astype(np.float32)
    h, w = min(h, size), min(w, size)
    ox = int(rng.integers(0, size - w + 1))
    oy = int(rng.integers(0, size - h + 1))
    region = out[oy : oy + h, ox : ox + w]
    out[oy : oy + h, ox : ox + w] = region * (1 - mask[:h, :w]) + crop[:h, :w] * mask[:h, :w]
    return np.clip(out, 0, 255).astype(np.uint8)


@lru_cache(maxsize=256)
def _render(person: str, seed: int, size: int) -> np.ndarray:
    out = render(person, seed, size)
    out.setflags(write=False)
    return out


def renders(person: str, seeds, size: int = SIZE) -> list[np.ndarray]:
    return [_render(person, int(s), size).copy() for s in seeds]


def collapsed(person: str, n: int, seed: int = 7) -> list[np.ndarray]:
    """An overfit checkpoint: every prompt and seed gives (nearly) the same picture; a little
    sensor-like noise keeps the copies from being byte-identical."""
    base = render(person, seed)
    rng = np.random.default_rng(seed + 1000)
    return [
        np.clip(base.astype(np.int16) + rng.integers(-3, 4, base.shape), 0, 255).astype(np.uint8)
        for _ in range(n)
    ]
