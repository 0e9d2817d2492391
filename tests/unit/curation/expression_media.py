"""Faces for the expression builder, from real photos: the astronaut (skimage; a broad smile)
and Grace Hopper (matplotlib; a composed, neutral face), each placed on an out-of-focus room
(skimage's coffee) in a 480x360 frame at a known size, the camera drifting 1 px a frame.

``moved`` reshapes a face's own dlib landmarks the way an expression moves them, in
inter-ocular distances (IOD): ``jaw`` drops the lower lip and chin (an open mouth), ``brows``
lifts both eyebrows, ``smile`` pulls the mouth corners out and up, ``frown`` lowers the brows
and draws their inner ends together.
"""

from __future__ import annotations

from functools import lru_cache

import curation_media as M
import cv2
import numpy as np
import skimage.data

W, H = 480, 360


@lru_cache(maxsize=1)
def _room() -> np.ndarray:
    bg = cv2.resize(
        cv2.cvtColor(skimage.data.coffee(), cv2.COLOR_RGB2BGR),
        (W + 40, H),
        interpolation=cv2.INTER_AREA,
    )
    return cv2.GaussianBlur(bg, (0, 0), 5)


def portrait(who: str, height: int) -> np.ndarray:
    """The whole photo scaled to `height` px (astronaut 512x512, Hopper 512x600)."""
    img = M.astronaut() if who == "astronaut" else M.hopper()
    s = height / img.shape[0]
    return cv2.resize(img, (round(img.shape[1] * s), height), interpolation=cv2.INTER_AREA)


def framed(who: str, height: int = 300, x: int = 100, y: int = 30):
    """A clip's frame function: the portrait `height` px high with its top-left at (x, y)."""
    p = portrait(who, height)

    def frame(t: int) -> np.ndarray:
        out = _room()[:, t % 40 : t % 40 + W].copy()
        y1, x1 = min(H, y + p.shape[0]), min(W, x + p.shape[1])
        out[y:y1, x:x1] = p[: y1 - y, : x1 - x]
        return out

    return frame


def moved(
    p: np.ndarray, jaw: float = 0.0, brows: float = 0.0, smile: float = 0.0, frown: float = 0.0
) -> np.ndarray:
    p = np.asarray(p, np.float64)
    q = p.copy()
    iod = float(np.linalg.norm(p[36:42].mean(0) - p[42:48].mean(0)))
    if jaw:
        d = jaw * iod
        q[[56, 57, 58, 65, 66, 67], 1] += d  # lower lip, inner and outer
        q[[55, 59], 1] += 0.6 * d
        q[[6, 7, 8, 9, 10], 1] += d  # chin
    if brows:
        q[17:27, 1] -= brows * iod
    if smile:
        d = smile * iod
        q[48] += (-d, -d)
        q[54] += (d, -d)
        q[[60, 64], 0] += (-d, d)
        q[[60, 64], 1] -= d
    if frown:
        d = frown * iod
        q[17:27, 1] += 0.5 * d
        q[[19, 20, 21], 0] += d
        q[[22, 23, 24], 0] -= d
    return q


@lru_cache(maxsize=1)
def _hopper_landmarks(height: int) -> np.ndarray:
    from loraforge.curation.dlib_backend import DlibBackend

    (face, *_) = DlibBackend().detect(portrait("hopper", height), embed_largest=False)
    return np.asarray(face.landmarks, np.float64)


def open_mouth(img: np.ndarray, p: np.ndarray, jaw: float) -> np.ndarray:
    """The jaw dropped by `jaw` IOD: the face below the upper lip's line moves down inside the
    jaw outline (feathered), and the gap between the lips shows a dark mouth."""
    if jaw <= 0:
        return img
    iod = float(np.linalg.norm(p[36:42].mean(0) - p[42:48].mean(0)))
    d = int(round(jaw * iod))
    y0 = int(round(p[[61, 62, 63]][:, 1].mean()))  # the upper inner lip
    h, w = img.shape[:2]
    jawline = np.vstack([p[3:14], p[[13]] + (0, d), p[[3]] + (0, d)]).astype(np.int32)
    region = np.zeros((h, w), np.float32)
    cv2.fillPoly(region, [np.vstack([p[3:14] + (0, d)]).astype(np.int32)], 1.0)
    cv2.fillPoly(region, [jawline], 1.0)
    region[: y0 + d] = 0
    region = cv2.GaussianBlur(region, (0, 0), 2)[..., None]
    shifted = np.roll(img, d, axis=0)
    out = (region * shifted + (1 - region) * img).astype(np.uint8)
    # the open mouth: dark, between the corners, from the upper lip down to the moved lower lip
    cx = float(p[[48, 54]][:, 0].mean())
    half_w = 0.42 * float(p[54, 0] - p[48, 0])
    cv2.ellipse(
        out,
        (int(cx), int(y0 + d / 2)),
        (int(half_w), max(1, int(d / 2))),
        0,
        0,
        360,
        (25, 20, 45),
        -1,
    )
    return out


def talking(height: int = 300, x: int = 100, y: int = 30):
    """Grace Hopper talking: her mouth opening and closing, ~3 syllables a second at 8 fps, with
    no fixed period (a periodic one aliases with evenly spaced samples: 4 samples of a 6-frame
    cycle can all land on closed frames)."""
    base = framed("hopper", height, x, y)
    p = _hopper_landmarks(height) + (x, y)
    openings = (
        0.0,
        0.35,
        0.1,
        0.5,
        0.0,
        0.25,
        0.45,
        0.05,
        0.3,
        0.0,
        0.5,
        0.15,
        0.4,
        0.0,
        0.2,
        0.5,
        0.1,
        0.35,
        0.0,
        0.45,
    )

    def frame(t: int) -> np.ndarray:
        return open_mouth(base(t), p, openings[t % len(openings)])

    return frame
