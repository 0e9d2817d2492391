"""Per-frame image quality: sharpness, exposure, contrast, blockiness, black bars, lighting.

Everything is measured on a copy scaled to a fixed width (QUALITY_WIDTH) so that numbers are
comparable between 480p phone clips and 4K footage; sharpness in particular (Laplacian variance)
would otherwise grow with resolution. Exposure and contrast ignore letterbox bars, which would
otherwise read as crushed shadows.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

QUALITY_WIDTH = 640
FACE_CROP = 128  # face crops are resized to this before the Laplacian, for the same reason
BAR_LUMA = 20  # a border row/column darker than this, and flat, is a black bar
BAR_STD = 6.0


@dataclass(frozen=True)
class FrameQuality:
    sharpness: float
    mean_luma: float
    highlights_clipped: float  # fraction of pixels >= 250
    shadows_clipped: float  # fraction of pixels <= 5
    contrast: float  # RMS contrast: luma standard deviation
    blockiness: float  # ~1 clean, > ~1.3 visible 8x8 compression blocks
    bar_top: float  # letterbox/pillarbox bars as fractions of the frame
    bar_bottom: float
    bar_left: float
    bar_right: float
    color_temp_ratio: float  # mean R / mean B of the picture: > 1 warm, < 1 cool


def to_quality_scale(image: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    if w == QUALITY_WIDTH:
        return image
    interp = cv2.INTER_AREA if w > QUALITY_WIDTH else cv2.INTER_LINEAR
    return cv2.resize(image, (QUALITY_WIDTH, max(1, round(h * QUALITY_WIDTH / w))), interpolation=interp)


def laplacian_variance(gray: np.ndarray) -> float:
    return float(cv2.Laplacian(gray, cv2.CV_64F).var())


def face_sharpness(image: np.ndarray, x0: int, y0: int, x1: int, y1: int) -> float:
    crop = image[y0:y1, x0:x1]
    if crop.size == 0:
        return 0.0
    gray = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY) if crop.ndim == 3 else crop
    return laplacian_variance(cv2.resize(gray, (FACE_CROP, FACE_CROP), interpolation=cv2.INTER_AREA))


def _bar(profile_mean: np.ndarray, profile_std: np.ndarray) -> int:
    n = 0
    for m, s in zip(profile_mean, profile_std, strict=True):
        if m < BAR_LUMA and s < BAR_STD:
            n += 1
        else:
            break
    return n


def black_bars(gray: np.ndarray) -> tuple[int, int, int, int]:
    rm, rs = gray.mean(1), gray.std(1)
    cm, cs = gray.mean(0), gray.std(0)
    top = _bar(rm, rs)
    if top == gray.shape[0]:  # an all-black frame has no bars, it is just dark
        return 0, 0, 0, 0
    return top, _bar(rm[::-1], rs[::-1]), _bar(cm, cs), _bar(cm[::-1], cs[::-1])


def blockiness(gray: np.ndarray) -> float:
    """Mean step across 8-px block boundaries over the mean step inside blocks.

    Block-DCT codecs quantise each 8x8 block on its own, so at strong compression the luma
    jumps at block edges more than anywhere else; the ratio is ~1 for clean frames.
    """
    g = gray.astype(np.float32)
    dh = np.abs(np.diff(g, axis=1))
    dv = np.abs(np.diff(g, axis=0))
    cols = np.arange(dh.shape[1])
    rows = np.arange(dv.shape[0])
    on_h, on_v = (cols % 8) == 7, (rows % 8) == 7
    boundary = dh[:, on_h].mean() + dv[on_v, :].mean()
    inside = dh[:, ~on_h].mean() + dv[~on_v, :].mean()
    return float(boundary / inside) if inside > 1e-6 else 1.0


def measure_frame(image: np.ndarray) -> FrameQuality:
    small = to_quality_scale(image)
    gray = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
    h, w = gray.shape
    top, bottom, left, right = black_bars(gray)
    inner = gray[top : h - bottom or None, left : w - right or None]
    inner_bgr = small[top : h - bottom or None, left : w - right or None]
    if inner.size == 0:
        inner, inner_bgr = gray, small
    means = inner_bgr.reshape(-1, 3).mean(0)
    return FrameQuality(
        sharpness=laplacian_variance(inner),
        mean_luma=float(inner.mean()),
        highlights_clipped=float((inner >= 250).mean()),
        shadows_clipped=float((inner <= 5).mean()),
        contrast=float(inner.std()),
        blockiness=blockiness(inner),
        bar_top=top / h,
        bar_bottom=bottom / h,
        bar_left=left / w,
        bar_right=right / w,
        color_temp_ratio=float((means[2] + 1.0) / (means[0] + 1.0)),
    )


def lighting_bucket(mean_luma: float, contrast: float, color_temp_ratio: float) -> str:
    """Coarse lighting class used to spread the selection, not to judge it.

    low_light: dark overall. studio: bright, even (low contrast) and colour-neutral, as under
    soft boxes. evening: warm (tungsten, sunset) and not bright. day: the rest, daylight-neutral
    or cool and well lit.
    """
    if mean_luma < 60:
        return "low_light"
    if color_temp_ratio > 1.25 and mean_luma < 140:
        return "evening"
    if mean_luma >= 110 and contrast < 50 and 0.85 <= color_temp_ratio <= 1.2:
        return "studio"
    return "day"
