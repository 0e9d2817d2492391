"""Scenes with more than one person, or none, built from real photos (skimage, matplotlib).

The subject is the astronaut (Eileen Collins) framed as in an interview, in the left two thirds
of a 480x360 frame; the right third shows the room behind her, where a second person may stand:
cut by the frame edge, with no face towards the camera, or small and out of focus far behind.
"""

from __future__ import annotations

import curation_media as M
import cv2
import numpy as np
import skimage.data

W, H = M.W, M.H


def _bgr(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)


PAN = 2  # px a frame: the camera pans slowly over a still scene, so nothing is static on screen
CANVAS_W = W + 30 * PAN


def room() -> np.ndarray:
    """Out-of-focus background: skimage's coffee photo, blurred as a shallow depth of field."""
    bg = cv2.resize(_bgr(skimage.data.coffee()), (CANVAS_W, H), interpolation=cv2.INTER_AREA)
    return cv2.GaussianBlur(bg, (0, 0), 6)


def paste(dst: np.ndarray, src: np.ndarray, x: int, y: int, height: int) -> np.ndarray:
    """src scaled to `height` with its top-left at (x, y); parts outside dst are cut off."""
    sh, sw = src.shape[:2]
    s = height / sh
    src = cv2.resize(src, (max(1, round(sw * s)), height), interpolation=cv2.INTER_AREA)
    out = dst.copy()
    dh, dw = dst.shape[:2]
    x0, y0 = max(0, x), max(0, y)
    x1, y1 = min(dw, x + src.shape[1]), min(dh, y + src.shape[0])
    if x1 > x0 and y1 > y0:
        out[y0:y1, x0:x1] = src[y0 - y : y1 - y, x0 - x : x1 - x]
    return out


def _scene(canvas: np.ndarray, t: int) -> np.ndarray:
    """The frame at time t: a window panning right over the scene; the subject (the
    astronaut's head and shoulders) stands on the left."""
    canvas = canvas.copy()
    canvas[:, : 320 + 10 * PAN] = cv2.resize(
        M.astronaut()[0:400, 30:420], (320 + 10 * PAN, H), interpolation=cv2.INTER_AREA
    )
    x = (10 + t) * PAN
    return canvas[:, x : x + W].copy()


def subject(t: int = 0) -> np.ndarray:
    return _scene(room(), t)


def second_person_cut_by_edge(t: int = 0) -> np.ndarray:
    """Grace Hopper's head and shoulders, half outside the right edge of the frame."""
    return _scene(paste(room(), M.hopper()[0:600, 60:512], CANVAS_W - 20 * PAN - 95, 30, 330), t)


def second_person_blurred_far(t: int = 0) -> np.ndarray:
    """Grace Hopper small and out of focus far behind the subject (a shallow depth of field)."""
    far = paste(room(), M.hopper(), 20 * PAN + 355, 100, 170)
    return _scene(cv2.GaussianBlur(far, (0, 0), 3.5), t)


def profile_person_beside(t: int = 0) -> np.ndarray:
    """skimage's cameraman (a profile the HOG face detector does not find) beside the subject."""
    cam = cv2.cvtColor(skimage.data.camera(), cv2.COLOR_GRAY2BGR)[30:512, 120:420]
    return _scene(paste(room(), cam, 20 * PAN + 340, 0, H), t)


def back_of_head() -> np.ndarray:
    """The astronaut's head and shoulders with her face covered by her own hair: a head seen
    from behind (hair all round, no face) on shoulders, as a person turned away shows."""
    a = M.astronaut().copy()
    x0, y0, x1, y1 = 171, 73, 275, 199  # her face (dlib's box, 179, 83, 88 x 88) with chin and ears
    hair = cv2.resize(a[30:95, 185:300], (x1 - x0, y1 - y0), interpolation=cv2.INTER_CUBIC)
    mask = np.zeros(a.shape[:2], np.uint8)
    cv2.ellipse(
        mask,
        ((x0 + x1) // 2, (y0 + y1) // 2 - 6),
        ((x1 - x0) // 2, (y1 - y0) // 2),
        0,
        0,
        360,
        255,
        -1,
    )
    covered = a.copy()
    covered[y0:y1, x0:x1] = hair
    return cv2.GaussianBlur(np.where(mask[..., None] > 0, covered, a), (3, 3), 0)[0:400, 60:420]


def second_person_from_behind(t: int = 0) -> np.ndarray:
    """A second person with their back to the camera, in the background on the right."""
    return _scene(paste(room(), back_of_head(), 20 * PAN + 320, 60, 260), t)


def landscape(t: int = 0) -> np.ndarray:
    """No one at all: skimage's rocket on its launch pad, panning slowly."""
    img = cv2.resize(_bgr(skimage.data.rocket()), (W + 60, H + 45), interpolation=cv2.INTER_AREA)
    return img[20 : 20 + H, 2 * t : 2 * t + W].copy()


def cat(t: int = 0) -> np.ndarray:
    """No one at all: skimage's cat (Chelsea), which a person segmenter alone takes for a person."""
    img = cv2.resize(_bgr(skimage.data.chelsea()), (W + 40, H), interpolation=cv2.INTER_AREA)
    return img[:, t : t + W].copy()


def crowd(t: float, w: int = 1280, h: int = 720) -> np.ndarray:
    """Five people side by side at different sizes, swaying: the astronaut and Grace Hopper,
    each also mirrored, on a grey wall (bench/curation.py's crowd footage)."""
    canvas = np.full((h, w, 3), 70, np.uint8)
    a, hop = M.astronaut(), M.hopper()
    people = [
        (a[0:300, 140:380], 0.05, 0.35, 300),
        (hop[60:460, 60:460], 0.25, 0.25, 360),
        (a[0:300, 140:380][:, ::-1], 0.47, 0.30, 330),
        (hop[60:460, 60:460][:, ::-1], 0.66, 0.35, 280),
        (a[0:300, 140:380], 0.83, 0.40, 240),
    ]
    for img, x, y, size in people:
        sw = int(size * img.shape[1] / img.shape[0])
        tile = cv2.resize(img, (sw, size), interpolation=cv2.INTER_AREA)
        x0 = int(x * w + 12 * np.sin(t * 2 + x * 9))
        y0 = int(y * h + 6 * np.cos(t * 3 + x * 5))
        x1, y1 = min(w, x0 + sw), min(h, y0 + size)
        canvas[y0:y1, x0:x1] = tile[: y1 - y0, : x1 - x0]
    return canvas
