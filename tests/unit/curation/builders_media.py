"""Footage for the dataset builders, composited from real photos with known person masks.

People: the astronaut (Eileen Collins, skimage) and Grace Hopper (matplotlib), cut out of their
portraits once with the person segmenter at a strict threshold (0.7): the pasted pixels ARE the
person in the composite, so the known mask is exact whatever the cut-out missed or included.
Places: skimage's rocket on its launch pad, the motorcycle in a room (stereo pair, left view),
the coffee table and a brick wall, panned slowly, lit at different gains.
"""

from __future__ import annotations

from functools import lru_cache

import curation_media as M
import cv2
import numpy as np
import skimage.data

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
    _n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8))
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


def composite(
    bg: np.ndarray, who: str, x: int, bottom: int, height: int, gain: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
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


def walker(
    place_name: str,
    who: str = "astronaut",
    height: int = 230,
    gain: float = 1.0,
    start: int = 40,
    speed: int = 9,
    pan: int = 2,
    offset: int = 0,
):
    """Frame function + mask function: a person walking right across a panning place."""

    def frame(t: int) -> np.ndarray:
        return composite(
            place(place_name, t, gain, pan, offset), who, start + speed * t, H - 10, height, gain
        )[0]

    def mask(t: int) -> np.ndarray:
        return composite(
            place(place_name, t, gain, pan, offset), who, start + speed * t, H - 10, height, gain
        )[1]

    return frame, mask


# -- style ---------------------------------------------------------------------------------


def graded(img: np.ndarray) -> np.ndarray:
    """One look for a style set: posterized to 4 levels a channel (flat, cel-like colour), a
    warm tint and dark, smoothed outlines, as a stylised film would be."""
    smooth = cv2.bilateralFilter(img, 7, 60, 7)
    levels = (smooth // 64) * 64 + 32
    warm = np.clip(levels.astype(np.float32) * np.array([0.75, 0.95, 1.2], np.float32), 0, 255)
    edges = cv2.Canny(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY), 80, 160)
    warm[cv2.dilate(edges, np.ones((2, 2), np.uint8)) > 0] = (20, 15, 10)
    return warm.astype(np.uint8)


def photo(name: str) -> np.ndarray:
    if name == "hopper":
        return M.hopper()
    if name in ("rocket", "room", "coffee", "brick"):
        return _plate(name)
    img = getattr(skimage.data, name)()
    return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR) if img.ndim == 2 else _bgr(img)


def panning(img: np.ndarray, t: int, pan: int = 3) -> np.ndarray:
    """A 480x360 window panning right over the photo (scaled to leave room for the pan)."""
    h, w = img.shape[:2]
    s = max((W + 20 * pan) / w, H / h)
    big = cv2.resize(img, (round(w * s) + 1, round(h * s) + 1), interpolation=cv2.INTER_AREA)
    return big[:H, pan * t : pan * t + W].copy()


def title(img: np.ndarray, text: str = "CHAPTER ONE") -> np.ndarray:
    """A title card's text over the picture, centred, white with a dark outline."""
    out = img.copy()
    font, scale, th = cv2.FONT_HERSHEY_DUPLEX, 1.4, 3
    (tw, _tht), _ = cv2.getTextSize(text, font, scale, th)
    org = ((out.shape[1] - tw) // 2, out.shape[0] // 2)
    cv2.putText(out, text, org, font, scale, (0, 0, 0), th + 4, cv2.LINE_AA)
    cv2.putText(out, text, org, font, scale, (255, 255, 255), th, cv2.LINE_AA)
    return out


def dissolving(a: str, b: str, start: int = 8, length: int = 8):
    """A graded shot of `a` dissolving into one of `b` over frames start..start+length."""

    def frame(t: int) -> np.ndarray:
        x = float(np.clip((t - start) / length, 0.0, 1.0))
        fa, fb = graded(panning(photo(a), t)), graded(panning(photo(b), t))
        return cv2.addWeighted(fa, 1 - x, fb, x, 0)

    return frame


# -- character -------------------------------------------------------------------------------


def pair(t: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Grace Hopper (left, near the camera: the larger face, the subject) and the astronaut
    (right, further back) in the motorcycle room, both moving right; returns (frame, the
    astronaut's known mask, Hopper's known mask)."""
    bg = place("coffee", t, 1.0, pan=2)
    # cut by the frame's bottom edge: a body's flat bottom edge in the picture is a static line
    # to the overlay detector (a lower-third bar)
    frame, hop = composite(bg, "hopper", 10 + t, H + 30, 330)
    frame, ast = composite(frame, "astronaut", 330 + 2 * t, H + 30, 230)
    return frame, ast, hop & ~ast
