"""Footage for the dataset builders, composited from real photos with known person masks.

People: the astronaut (Eileen Collins, skimage) and Grace Hopper (matplotlib), cut out of their
portraits once with the person segmenter at a strict threshold (0.7): the pasted pixels ARE the
person in the composite, so the known mask is exact whatever the cut-out missed or included.
Places: skimage's rocket on its launch pad, the motorcycle in a room (stereo pair, left view),
the coffee table and a brick wall, panned slowly, lit at different gains.
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np
import skimage.data

import curation_media as M

W, H = 480, 360


def _bgr(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)


@lru_cache(maxsize=4)
def cutout(name: str) -> tuple[np.ndarray, np.ndarray]:
    """(BGR, bool mask) of a person, tight around the mask."""
    from loraforge.curation.people import PeopleDetector

    img = M.astronaut() if name == "astronaut" else M.hopper()
    prob = PeopleDetector().person_mask(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
    mask = prob > 0.7
    if name == "astronaut":  # her head and torso, not the helmet she holds (bottom right)
        mask[330:, 280:] = False
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8))
    biggest = 1 + int(np.argmax(stats[1:, 4]))
    mask = labels == biggest
    ys, xs = np.where(mask)
    sl = slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1)
    return img[sl].copy(), mask[sl].copy()


@lru_cache(maxsize=8)
def _plate(name: str) -> np.ndarray:
    src = {
        "rocket": lambda: _bgr(skimage.data.rocket()),
        "room": lambda: _bgr(skimage.data.stereo_motorcycle()[0]),
        "coffee": lambda: _bgr(skimage.data.coffee()),
        "brick": lambda: cv2.cvtColor(skimage.data.brick(), cv2.COLOR_GRAY2BGR),
    }[name]()
    return cv2.resize(src, (W + 200, H + 40), interpolation=cv2.INTER_AREA)


def place(name: str, t: int = 0, gain: float = 1.0, pan: int = 2, offset: int = 0) -> np.ndarray:
    """The place at time t: a window panning right by `pan` px a frame from `offset`, at an
    exposure gain (up to 200 px of pan in all)."""
    x = max(0, min(200, offset + pan * t))
    img = _plate(name)[20 : 20 + H, x : x + W]
    return np.clip(img.astype(np.float32) * gain, 0, 255).astype(np.uint8)


def composite(bg: np.ndarray, who: str, x: int, bottom: int, height: int,
              gain: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """The person scaled to `height`, standing with their bottom edge at `bottom` and left edge
    at x, lit at `gain`; returns (frame, known mask of the pasted person pixels)."""
    img, mask = cutout(who)
    s = height / img.shape[0]
    size = (max(1, round(img.shape[1] * s)), height)
    img = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
    mask = cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
    img = np.clip(img.astype(np.float32) * gain, 0, 255).astype(np.uint8)
    out, known = bg.copy(), np.zeros(bg.shape[:2], bool)
    y0 = bottom - height
    ys, xs = slice(max(0, y0), min(H, bottom)), slice(max(0, x), min(W, x + size[0]))
    sub = mask[ys.start - y0 : ys.stop - y0, xs.start - x : xs.stop - x]
    region = out[ys, xs]  # a view: writes go into out
    region[sub] = img[ys.start - y0 : ys.stop - y0, xs.start - x : xs.stop - x][sub]
    known[ys, xs] = sub
    return out, known


def walker(place_name: str, who: str = "astronaut", height: int = 230, gain: float = 1.0,
           start: int = 40, speed: int = 9, pan: int = 2, offset: int = 0):
    """Frame function + mask function: a person walking right across a panning place."""
    def frame(t: int) -> np.ndarray:
        return composite(place(place_name, t, gain, pan, offset), who, start + speed * t, H - 10, height, gain)[0]

    def mask(t: int) -> np.ndarray:
        return composite(place(place_name, t, gain, pan, offset), who, start + speed * t, H - 10, height, gain)[1]

    return frame, mask
