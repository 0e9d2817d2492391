"""Photos for the photo-set tests, made from real photos (skimage's astronaut, coffee, rocket
and cat; matplotlib's Grace Hopper) by edits that follow the face's own landmarks: eyes shut
along the lid line, a shadow over half the face or over the eyes, a close wide-angle bulge
centred on the nose, a camera turned upward, the person over another background (MediaPipe's
person mask), her suit in another colour, a second shot of the same pose, mirrored text.

Limits, said plainly: no installed package ships a photo of a face shot from far below, a
real wide-angle selfie or a real closed-eye portrait, so those three are edits whose effect on
the measure is what the test checks (the landmark detector reads the edited pixels; nothing
here sets a measured value by hand).
"""

from __future__ import annotations

import cv2
import numpy as np
import skimage.data
from curation_media import astronaut, hopper  # noqa: F401  (re-exported for the tests)


def background(name: str, size: tuple[int, int]) -> np.ndarray:
    img = cv2.cvtColor(getattr(skimage.data, name)(), cv2.COLOR_RGB2BGR)
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA)


def close_eyes(img: np.ndarray, lm: np.ndarray) -> np.ndarray:
    """Paint both eyes shut: fill each eye (its 6 landmarks, widened) from the skin around it
    (cv2.inpaint), then draw the lash line along the lower lid, corner to corner."""
    out = img.copy()
    mask = np.zeros(img.shape[:2], np.uint8)
    for lo in (36, 42):
        eye = lm[lo : lo + 6].astype(np.float32)
        c = eye.mean(0)
        cv2.fillConvexPoly(mask, (c + (eye - c) * np.array([1.35, 2.2])).astype(np.int32), 255)
    out = cv2.inpaint(out, mask, 5, cv2.INPAINT_TELEA)
    for lo in (36, 42):
        eye = lm[lo : lo + 6]
        lid = np.array([eye[0], eye[5], eye[4], eye[3]], np.int32)
        width = np.linalg.norm(eye[0] - eye[3])
        cv2.polylines(out, [lid], False, (30, 25, 25), max(1, round(width / 12)), cv2.LINE_AA)
    return out


def shadow(img: np.ndarray, lm: np.ndarray, light: float, over: str = "half") -> np.ndarray:
    """Light one part of the face at `light` (sRGB factor) with a soft edge: the image side of
    the nose line (`half`, a side light) or everything above the nose bridge (`eyes`, a brim)."""
    h, w = img.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    if over == "half":
        a, b = lm[27], lm[8]
        side = (b[0] - a[0]) * (ys - a[1]) - (b[1] - a[1]) * (xs - a[0])
        t = side / (0.05 * float(np.linalg.norm(b - a)) ** 2) + 0.5
    else:
        t = (lm[29, 1] - ys) / (0.05 * float(lm[8, 1] - lm[27, 1])) + 0.5
    gain = 1 - (1 - light) * np.clip(t, 0, 1)
    return np.clip(img.astype(np.float32) * gain[..., None], 0, 255).astype(np.uint8)


def bulge(img: np.ndarray, centre: np.ndarray, radius: float, strength: float) -> np.ndarray:
    """Magnify the middle of a disc around `centre` (what a close wide-angle lens does to the
    nose against the face outline): a point at r samples r * (1 - s (1 - (r/R)^2)^2)."""
    h, w = img.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    dx, dy = xs - centre[0], ys - centre[1]
    r = np.sqrt(dx * dx + dy * dy) / radius
    f = np.where(r < 1, 1 - strength * (1 - r * r) ** 2, 1).astype(np.float32)
    return cv2.remap(
        img,
        (centre[0] + dx * f).astype(np.float32),
        (centre[1] + dy * f).astype(np.float32),
        cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REFLECT,
    )


def camera_tilt(img: np.ndarray, degrees: float, centre: tuple[float, float]) -> np.ndarray:
    """The view of a camera turned about its horizontal axis (homography K R K^-1, focal length
    = the image width): the face moves towards the frame edge and is seen from below/above in
    the camera's axes."""
    h, w = img.shape[:2]
    f = float(w)
    k = np.array([[f, 0, centre[0]], [0, f, centre[1]], [0, 0, 1]])
    t = np.radians(degrees)
    r = np.array([[1, 0, 0], [0, np.cos(t), -np.sin(t)], [0, np.sin(t), np.cos(t)]])
    return cv2.warpPerspective(img, k @ r @ np.linalg.inv(k), (w, h), borderMode=cv2.BORDER_REFLECT)


def composite(img: np.ndarray, mask: np.ndarray, bg: np.ndarray) -> np.ndarray:
    """The person (soft mask) over another background of the same size."""
    a = cv2.GaussianBlur(mask.astype(np.float32), (7, 7), 0)[..., None]
    return (img * a + bg * (1 - a)).astype(np.uint8)


def recolour_below(img: np.ndarray, y: int, hue_shift: int = 100) -> np.ndarray:
    """Other clothes: every saturated orange pixel below row `y` turned to another hue."""
    hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV)
    orange = (hsv[..., 0] < 25) & (hsv[..., 1] > 100)
    orange[:y] = False
    hsv[..., 0] = np.where(orange, (hsv[..., 0].astype(int) + hue_shift) % 180, hsv[..., 0]).astype(
        np.uint8
    )
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)


def second_shot(
    img: np.ndarray, zoom: float = 1.2, dx: float = -60, dy: float = -20, gain: float = 0.92
) -> np.ndarray:
    """Another photo of the same pose in the same place: closer, moved, darker; far enough
    from the first that curation's pHash near-copy check (distance 20 > 10) keeps both."""
    h, w = img.shape[:2]
    m = np.float32([[zoom, 0, dx], [0, zoom, dy]])
    out = cv2.warpAffine(img, m, (w, h), borderMode=cv2.BORDER_REFLECT)
    return np.clip(out.astype(np.float32) * gain + 4, 0, 255).astype(np.uint8)


def with_sign(img: np.ndarray, text: str = "SPACE CENTER") -> np.ndarray:
    out = img.copy()
    h = out.shape[0]
    cv2.putText(
        out,
        text,
        (int(0.58 * out.shape[1]), int(0.92 * h)),
        cv2.FONT_HERSHEY_SIMPLEX,
        1.1 * out.shape[1] / 512,
        (255, 255, 255),
        3,
    )
    return out
