"""Real photos graded into the lighting classes: scikit-learn's china.jpg (a temple under a
hazy daylight sky), skimage's astronaut and coffee (indoor), graded in linear light the way a
colourist or the light itself would change them: a warm low sun (white balance pulled to
~3000 K, a stop down), a cooler, brighter midday, and a low-key side light on the astronaut
(her face's right half four stops down, the room falling to dark around her).
"""

from __future__ import annotations

import cv2
import numpy as np
import skimage.data
from sklearn.datasets import load_sample_image

W, H = 480, 360
# the astronaut's face box (dlib) in the 512x512 photo: the side light's edge runs down its middle
FACE_CX, FACE_CY = 223, 127


def _linear(img: np.ndarray) -> np.ndarray:
    x = img.astype(np.float32) / 255.0
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def _encode(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0, 1)
    return (np.where(x <= 0.0031308, 12.92 * x, 1.055 * x ** (1 / 2.4) - 0.055) * 255 + 0.5).astype(
        np.uint8
    )


def grade(
    bgr: np.ndarray,
    gains_rgb=(1.0, 1.0, 1.0),
    exposure: float = 1.0,
    light: np.ndarray | None = None,
) -> np.ndarray:
    """White balance (per-channel gains), exposure and a light map, in linear light."""
    x = _linear(bgr) * exposure * np.array(gains_rgb[::-1], np.float32)
    if light is not None:
        x = x * light[..., None]
    return _encode(x)


def fit(img: np.ndarray) -> np.ndarray:
    """Centre crop to 4:3, then W x H."""
    h, w = img.shape[:2]
    if w * 3 > h * 4:
        cw = h * 4 // 3
        img = img[:, (w - cw) // 2 : (w - cw) // 2 + cw]
    else:
        ch = w * 3 // 4
        img = img[(h - ch) // 2 : (h - ch) // 2 + ch]
    return cv2.resize(img, (W, H), interpolation=cv2.INTER_AREA)


def china(x0: float = 0.0, x1: float = 1.0, mirror: bool = False) -> np.ndarray:
    """The temple photo (427x640), optionally a vertical strip of it (fractions of its width)
    and mirrored: other views of the place, which are not near-copies of each other."""
    img = cv2.cvtColor(load_sample_image("china.jpg"), cv2.COLOR_RGB2BGR)
    img = img[:, int(x0 * img.shape[1]) : int(x1 * img.shape[1])]
    return img[:, ::-1].copy() if mirror else img


def midday() -> np.ndarray:
    return fit(china())


def midday_cool() -> np.ndarray:
    return fit(grade(china(), (0.9, 1.0, 1.15), 1.1))


def sunset() -> np.ndarray:
    """~3000 K light (red kept, green 0.62, blue 0.30 against daylight) a third of a stop down."""
    return fit(grade(china(), (1.0, 0.62, 0.30), 0.8))


def indoor_coffee() -> np.ndarray:
    return fit(cv2.cvtColor(skimage.data.coffee(), cv2.COLOR_RGB2BGR))


def indoor_portrait() -> np.ndarray:
    return fit(cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR))


def dramatic() -> np.ndarray:
    """A hard key from the left: the face's right half 4 stops down past a soft edge down the
    nose, and a pool of light on her that falls to ~3 stops down in the room."""
    img = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)
    h, w = img.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    side = 1 / 16 + (1 - 1 / 16) / (1 + np.exp((xx - FACE_CX) / 8))
    pool = 0.12 + 0.88 * np.exp(-(((xx - FACE_CX) / 150) ** 2 + ((yy - FACE_CY - 50) / 190) ** 2))
    return fit(grade(img, exposure=1.3, light=side * pool))
