"""Per-frame image quality: sharpness, exposure, contrast, blockiness, black bars, lighting,
noise; and the same on the subject (``measure_subject``), which curation judges first.

Everything is measured on a copy scaled to a fixed width (QUALITY_WIDTH) so that numbers are
comparable between 480p phone clips and 4K footage, and whatever size the frames arrive at
(full size, or ingest's analysis proxy); sharpness in particular (Laplacian variance) would
otherwise grow with resolution. Noise is the exception: measured at most QUALITY_WIDTH wide but
never upscaled, since interpolation would smooth it away. Exposure and contrast ignore
letterbox bars, which would otherwise read as crushed shadows.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from loraforge.curation.geometry import Box

QUALITY_WIDTH = 640
FACE_CROP = 128  # face crops are resized to this before the Laplacian, for the same reason
BAR_LUMA = 20  # a border row/column darker than this, and flat, is a black bar
BAR_STD = 6.0
BAR_EDGE = 12.0  # grey levels of mean + std step where a bar meets the picture
CLIP_LOW, CLIP_HIGH = 5, 250  # at or below / at or above: crushed to black / blown out


@dataclass(frozen=True)
class FrameQuality:
    sharpness: float
    mean_luma: float
    highlights_clipped: float  # fraction of pixels >= CLIP_HIGH
    shadows_clipped: float  # fraction of pixels <= CLIP_LOW
    contrast: float  # RMS contrast: luma standard deviation
    blockiness: float  # ~1 clean, > ~1.3 visible 8x8 compression blocks
    bar_top: float  # letterbox/pillarbox bars as fractions of the frame
    bar_bottom: float
    bar_left: float
    bar_right: float
    color_temp_ratio: float  # mean R / mean B of the picture: > 1 warm, < 1 cool
    noise: float = 0.0  # noise_sigma of the picture inside the bars, grey levels


def to_quality_scale(image: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    if w == QUALITY_WIDTH:
        return image
    interp = cv2.INTER_AREA if w > QUALITY_WIDTH else cv2.INTER_LINEAR
    return cv2.resize(
        image, (QUALITY_WIDTH, max(1, round(h * QUALITY_WIDTH / w))), interpolation=interp
    )


def laplacian_variance(gray: np.ndarray) -> float:
    return float(cv2.Laplacian(gray, cv2.CV_64F).var())


# Sharpness as it would read properly exposed. The Laplacian variance scales with the square of
# the brightness, so a dim but sharp face (a low-key shot, face core at 54/255) read ~18 against
# a floor of 30 and was called blurry; its detail is there, only darker. Crops darker than
# SHARPNESS_REF_LUMA are measured as if gained up to it, at most MAX_EXPOSURE_GAIN (2 stops):
# brighter crops read as before, and darkness itself is too_dark's business.
SHARPNESS_REF_LUMA = 100.0
MAX_EXPOSURE_GAIN = 4.0


def sharpness(gray: np.ndarray) -> float:
    """Laplacian variance, exposure-normalised (see SHARPNESS_REF_LUMA)."""
    if gray.size == 0:
        return 0.0
    gain = min(MAX_EXPOSURE_GAIN, max(1.0, SHARPNESS_REF_LUMA / max(float(gray.mean()), 1.0)))
    return laplacian_variance(gray) * gain * gain


def face_sharpness(image: np.ndarray, x0: int, y0: int, x1: int, y1: int) -> float:
    crop = image[y0:y1, x0:x1]
    if crop.size == 0:
        return 0.0
    gray = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY) if crop.ndim == 3 else crop
    return sharpness(cv2.resize(gray, (FACE_CROP, FACE_CROP), interpolation=cv2.INTER_AREA))


def _bar(profile_mean: np.ndarray, profile_std: np.ndarray) -> int:
    n = 0
    for m, s in zip(profile_mean, profile_std, strict=True):
        if m < BAR_LUMA and s < BAR_STD:
            n += 1
        else:
            break
    return n


def _edged_bar(profile_mean: np.ndarray, profile_std: np.ndarray) -> int:
    """A bar only where it ends at a step: the picture after it is BAR_EDGE brighter or more
    textured than the bar's last rows. A low-key or underexposed shot darkens towards its
    edges gradually (0.1-0.5 grey levels a row, measured on the spotlit astronaut) and has
    no bars; a matted bar ends within a row or two."""
    n = _bar(profile_mean, profile_std)
    if n == 0 or n >= len(profile_mean) - 4:
        return n
    bar = slice(max(0, n - 2), n)
    after = slice(n, n + 4)
    step = abs(float(profile_mean[after].mean() - profile_mean[bar].mean())) + abs(
        float(profile_std[after].mean() - profile_std[bar].mean())
    )
    return n if step >= BAR_EDGE else 0


def black_bars(gray: np.ndarray) -> tuple[int, int, int, int]:
    rm, rs = gray.mean(1), gray.std(1)
    cm, cs = gray.mean(0), gray.std(0)
    if _bar(rm, rs) == gray.shape[0]:  # an all-black frame has no bars, it is just dark
        return 0, 0, 0, 0
    return (
        _edged_bar(rm, rs),
        _edged_bar(rm[::-1], rs[::-1]),
        _edged_bar(cm, cs),
        _edged_bar(cm[::-1], cs[::-1]),
    )


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


@dataclass(frozen=True)
class FrameViews:
    """The copies of one frame that quality is measured on, made once per frame."""

    small: np.ndarray  # BGR at QUALITY_WIDTH
    gray: np.ndarray  # grey of ``small``
    noise: np.ndarray  # grey at min(width, NOISE_WIDTH): never upscaled (see noise_gray)
    f_small: float  # small / original frame
    f_noise: float  # noise / original frame


def frame_views(image: np.ndarray) -> FrameViews:
    small = to_quality_scale(image)
    gray = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
    w = image.shape[1]
    if w <= NOISE_WIDTH:
        noise = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
    elif small.shape[1] == NOISE_WIDTH:
        noise = gray  # the same INTER_AREA downscale
    else:
        noise = noise_gray(image)[0]
    return FrameViews(small, gray, noise, small.shape[1] / w, noise.shape[1] / w)


def measure_frame(image: np.ndarray, views: FrameViews | None = None) -> FrameQuality:
    v = views or frame_views(image)
    small, gray = v.small, v.gray
    h, w = gray.shape
    top, bottom, left, right = black_bars(gray)
    inner = gray[top : h - bottom or None, left : w - right or None]
    inner_bgr = small[top : h - bottom or None, left : w - right or None]
    if inner.size == 0:
        inner, inner_bgr = gray, small
    means = inner_bgr.reshape(-1, 3).mean(0)
    nh, nw = v.noise.shape
    k = nw / w  # bars in noise-view pixels
    noise_inner = v.noise[
        round(top * k) : nh - round(bottom * k) or None,
        round(left * k) : nw - round(right * k) or None,
    ]
    return FrameQuality(
        sharpness=sharpness(inner),
        mean_luma=float(inner.mean()),
        highlights_clipped=float((inner >= CLIP_HIGH).mean()),
        shadows_clipped=float((inner <= CLIP_LOW).mean()),
        contrast=float(inner.std()),
        blockiness=blockiness(inner),
        bar_top=top / h,
        bar_bottom=bottom / h,
        bar_left=left / w,
        bar_right=right / w,
        color_temp_ratio=float((means[2] + 1.0) / (means[0] + 1.0)),
        noise=noise_sigma(noise_inner if noise_inner.size else v.noise),
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


# --- the subject: exposure, clipping, sharpness and noise where the person is ----------------
#
# A frame's mean says little about a shot: a low-key close-up (face lit, room dark) has a frame
# mean near 48/255 and is perfectly usable, while a bright background can hide an underexposed
# face. What the LoRA learns is the subject, so light, clipping, sharpness and noise are
# measured on the subject's region as well, and the decision judges that region first.

NOISE_WIDTH = QUALITY_WIDTH  # noise is judged as seen at about training size, never upscaled
NOISE_BLOCK = 8
NOISE_PERCENTILE = 20  # the least textured fifth of the blocks: there the residual is noise
# Immerkaer's mask: second differences in x and y, blind to flat areas and linear ramps; its
# response to white noise of sigma s has standard deviation 6 s
_NOISE_KERNEL = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)
# the 20th percentile of 8x8 block estimates sits below the true sigma; measured on flat grey
# plus gaussian noise of sigma 2, 5 and 10 (ratio 1.156-1.165)
_NOISE_PERCENTILE_BIAS = 1.16


def noise_sigma(gray: np.ndarray) -> float:
    """Robust standard deviation of sensor/film noise in grey levels (0-255).

    The high-pass residual of each 8x8 block gives that block's noise plus its texture; the
    least textured blocks carry noise only, so a low percentile of the block estimates is the
    noise level (Immerkaer 1996 per block, with a percentile instead of the mean so that edges
    and texture do not count). Blocks touching black or white clipping are skipped: crushed
    shadows are noise-free by construction and would pull the estimate to zero.
    """
    if gray.shape[0] < 3 * NOISE_BLOCK or gray.shape[1] < 3 * NOISE_BLOCK:
        return 0.0
    r = np.abs(cv2.filter2D(gray.astype(np.float32), -1, _NOISE_KERNEL))[1:-1, 1:-1]
    g = gray[1:-1, 1:-1]
    b = NOISE_BLOCK
    h, w = (r.shape[0] // b) * b, (r.shape[1] // b) * b
    # block means by an exact integer-factor area resize (a block touches clipping when the
    # mean of its clipped-pixel mask is above 0): numpy's reshape-and-reduce numbers, cheaper
    rb = cv2.resize(r[:h, :w], (w // b, h // b), interpolation=cv2.INTER_AREA) * (
        np.sqrt(np.pi / 2) / 6
    )
    gc = g[:h, :w]
    clipped = ((gc <= CLIP_LOW) | (gc >= CLIP_HIGH)).astype(np.float32)
    ok = cv2.resize(clipped, (w // b, h // b), interpolation=cv2.INTER_AREA) == 0
    if ok.sum() < 4:
        return 0.0
    return float(np.percentile(rb[ok], NOISE_PERCENTILE) * _NOISE_PERCENTILE_BIAS)


def noise_gray(image: np.ndarray) -> tuple[np.ndarray, float]:
    """The grey frame noise is measured on, and its scale relative to ``image``.

    Downscaled to NOISE_WIDTH (averaging lowers noise the way a training resize does) but never
    upscaled: interpolation would smooth the noise away.
    """
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
    w = gray.shape[1]
    if w <= NOISE_WIDTH:
        return gray, 1.0
    f = NOISE_WIDTH / w
    return cv2.resize(
        gray, (NOISE_WIDTH, max(1, round(gray.shape[0] * f))), interpolation=cv2.INTER_AREA
    ), f


def upper_body_box(face: Box, width: float, height: float) -> Box:
    """Head and shoulders around a face box (or a person detector's head box), clipped to the
    frame: the subject region. 1.6 face widths to each side of the face centre and 1.5 face
    heights below the chin cover the shoulders of a frontal or three-quarter view."""
    cx = face.x + face.w / 2
    x0, x1 = max(0.0, cx - 1.6 * face.w), min(float(width), cx + 1.6 * face.w)
    y0, y1 = max(0.0, face.y - 0.3 * face.h), min(float(height), face.y2 + 1.5 * face.h)
    return Box(x0, y0, max(0.0, x1 - x0), max(0.0, y1 - y0))


def face_core(face: Box) -> Box:
    """The middle of a face box (70 % of each side): skin, eyes and mouth, without the hair and
    background a detector's box takes in at its corners."""
    return Box(face.x + 0.15 * face.w, face.y + 0.15 * face.h, 0.7 * face.w, 0.7 * face.h)


@dataclass(frozen=True)
class SubjectQuality:
    luma: float  # mean luma of the face core, or of the person region when no face is seen
    highlights_clipped: float  # fractions of the subject region, as in FrameQuality
    shadows_clipped: float
    sharpness: float  # exposure-normalised Laplacian variance at QUALITY_WIDTH, like the frame's
    noise: float  # noise_sigma of the region


def measure_subject(
    views: FrameViews, region: Box, face: Box | None = None
) -> SubjectQuality | None:
    """Quality of the subject ``region`` (pixels of the original frame); light is read on the
    face core when a face is given. None when the region is too small to measure."""
    sh, sw = views.gray.shape
    x0, y0, x1, y1 = region.scaled(views.f_small).clipped(sw, sh)
    if x1 - x0 < 8 or y1 - y0 < 8:
        return None
    crop = views.gray[y0:y1, x0:x1]
    light = crop
    if face is not None:
        fx0, fy0, fx1, fy1 = face_core(face).scaled(views.f_small).clipped(sw, sh)
        if fx1 - fx0 >= 2 and fy1 - fy0 >= 2:
            light = views.gray[fy0:fy1, fx0:fx1]
    nh, nw = views.noise.shape
    nx0, ny0, nx1, ny1 = region.scaled(views.f_noise).clipped(nw, nh)
    return SubjectQuality(
        luma=float(light.mean()),
        highlights_clipped=float((crop >= CLIP_HIGH).mean()),
        shadows_clipped=float((crop <= CLIP_LOW).mean()),
        sharpness=sharpness(crop),
        noise=noise_sigma(views.noise[ny0:ny1, nx0:nx1]),
    )
