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

import math
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
    """Variance of the Laplacian of a grey uint8 image."""
    # The Laplacian of uint8 pixels is an integer within +-1020, so int16 holds it exactly and
    # OpenCV's mean and deviation of it (~0.25 ms at 640x360) replace numpy's var of a float64
    # copy (0.6-3 ms: two 1.8 MB temporaries); the two agree to ~1e-15 relative
    _, sd = cv2.meanStdDev(cv2.Laplacian(gray, cv2.CV_16S))
    return float(sd[0, 0]) ** 2


_LEVELS = np.arange(256, dtype=np.int64)
_LEVELS_SQ = _LEVELS * _LEVELS


def gray_stats(gray: np.ndarray) -> tuple[float, float, float, float]:
    """(mean, standard deviation, fraction >= CLIP_HIGH, fraction <= CLIP_LOW) of a grey uint8
    image."""
    # One 256-bin histogram (~0.15 ms at 640x360) instead of numpy's float64 mean, std and two
    # mask means (~1 ms): the sums are integers, so the mean and the fractions are numpy's to
    # the bit and the deviation is rounded once (numpy's two-pass std is within a few ulp).
    # calcHist counts in float32, exact up to 2**24 pixels a bin.
    n = gray.size
    if n > 1 << 24:
        hist = np.bincount(gray.ravel(), minlength=256)
    else:
        hist = cv2.calcHist([gray], [0], None, [256], [0, 256]).ravel().astype(np.int64)
    s1, s2 = int(hist @ _LEVELS), int(hist @ _LEVELS_SQ)
    return (
        s1 / n,
        math.sqrt((n * s2 - s1 * s1) / (n * n)),
        int(hist[CLIP_HIGH:].sum()) / n,
        int(hist[: CLIP_LOW + 1].sum()) / n,
    )


def gray_mean(gray: np.ndarray) -> float:
    """Mean of a grey uint8 image: numpy's ``gray.mean()`` to the bit (both sum the integers
    exactly), without its float64 pass."""
    return float(cv2.sumElems(gray)[0]) / gray.size


# Sharpness as it would read properly exposed. The Laplacian variance scales with the square of
# the brightness, so a dim but sharp face (a low-key shot, face core at 54/255) read ~18 against
# a floor of 30 and was called blurry; its detail is there, only darker. Crops darker than
# SHARPNESS_REF_LUMA are measured as if gained up to it, at most MAX_EXPOSURE_GAIN (2 stops):
# brighter crops read as before, and darkness itself is too_dark's business.
SHARPNESS_REF_LUMA = 100.0
MAX_EXPOSURE_GAIN = 4.0


def sharpness(gray: np.ndarray, mean: float | None = None) -> float:
    """Laplacian variance, exposure-normalised (see SHARPNESS_REF_LUMA); ``mean``: the crop's
    mean luma where the caller has it already."""
    if gray.size == 0:
        return 0.0
    if mean is None:
        mean = gray_mean(gray)
    gain = min(MAX_EXPOSURE_GAIN, max(1.0, SHARPNESS_REF_LUMA / max(mean, 1.0)))
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


def _edged_bar(profile_mean: np.ndarray, profile_std: np.ndarray, length: int) -> int:
    """A bar only where it ends at a step: the picture after it is BAR_EDGE brighter or more
    textured than the bar's last rows. A low-key or underexposed shot darkens towards its
    edges gradually (0.1-0.5 grey levels a row, measured on the spotlit astronaut) and has
    no bars; a matted bar ends within a row or two. ``length``: rows on this side, of which
    the profiles may hold only the first (``_edge_profile``)."""
    n = _bar(profile_mean, profile_std)
    if n == 0 or n >= length - 4:
        return n
    bar = slice(max(0, n - 2), n)
    after = slice(n, n + 4)
    step = abs(float(profile_mean[after].mean() - profile_mean[bar].mean())) + abs(
        float(profile_std[after].mean() - profile_std[bar].mean())
    )
    return n if step >= BAR_EDGE else 0


def _edge_profile(lines: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of the first rows of ``lines`` (a frame's rows or columns
    from one edge inwards): as many as ``_edged_bar`` looks at, the bar and 4 rows after it."""
    # A frame without bars needs a few rows of each side, not numpy's float64 mean and std of
    # every row and column (~1 ms at 640x360); numpy reduces each row on its own, so a row's
    # numbers are the same as over the whole frame
    total = lines.shape[0]
    k = min(total, 16)
    while True:
        head = lines[:k]
        mean, std = head.mean(1), head.std(1)
        n = _bar(mean, std)
        if n + 4 <= k or k == total:
            return mean, std
        k = min(total, max(4 * k, n + 4))


def black_bars(gray: np.ndarray) -> tuple[int, int, int, int]:
    h, w = gray.shape
    top = _edge_profile(gray)
    if _bar(*top) == h:  # an all-black frame has no bars, it is just dark
        return 0, 0, 0, 0
    return (
        _edged_bar(*top, h),
        _edged_bar(*_edge_profile(gray[::-1]), h),
        _edged_bar(*_edge_profile(gray.T), w),
        _edged_bar(*_edge_profile(gray.T[::-1]), w),
    )


def blockiness(gray: np.ndarray) -> float:
    """Mean step across 8-px block boundaries over the mean step inside blocks.

    Block-DCT codecs quantise each 8x8 block on its own, so at strong compression the luma
    jumps at block edges more than anywhere else; the ratio is ~1 for clean frames.
    """
    # The steps summed as integers (cv2.absdiff of uint8, ~0.1 ms at 640x360, against ~0.6 ms
    # for float32 copies), then averaged in float32 as numpy's float32 means did: the same
    # numbers while a sum stays below 2**24, where float32 sums are exact (at QUALITY_WIDTH, a
    # mean step below ~80 grey levels); above it these sums are the exact ones
    h, w = gray.shape
    dh_on = dh_all = dv_on = dv_all = 0
    if w > 1:
        dh = cv2.absdiff(gray[:, 1:], gray[:, :-1])
        dh_on, dh_all = int(dh[:, 7::8].sum(dtype=np.int64)), int(cv2.sumElems(dh)[0])
    if h > 1:
        dv = cv2.absdiff(gray[1:], gray[:-1])
        dv_on, dv_all = int(cv2.sumElems(dv[7::8])[0]), int(cv2.sumElems(dv)[0])
    n_h_on, n_v_on = h * len(range(7, w - 1, 8)), w * len(range(7, h - 1, 8))
    n_h_in, n_v_in = h * max(0, w - 1) - n_h_on, w * max(0, h - 1) - n_v_on
    boundary = _mean32(dh_on, n_h_on) + _mean32(dv_on, n_v_on)
    inside = _mean32(dh_all - dh_on, n_h_in) + _mean32(dv_all - dv_on, n_v_in)
    return float(boundary / inside) if inside > 1e-6 else 1.0


def _mean32(total: int, count: int) -> np.float32:
    """numpy's mean of ``count`` float32 values that sum to ``total`` exactly: the sum divided
    in float64, rounded to float32; NaN for none."""
    return np.float32(total / count if count else math.nan)


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
    mean, std, highlights, shadows = gray_stats(inner)
    # channel sums are exact integers: numpy's float64 means to the bit, at a tenth of the cost
    blue, _, red, _ = cv2.sumElems(inner_bgr)
    nh, nw = v.noise.shape
    k = nw / w  # bars in noise-view pixels
    noise_inner = v.noise[
        round(top * k) : nh - round(bottom * k) or None,
        round(left * k) : nw - round(right * k) or None,
    ]
    return FrameQuality(
        sharpness=sharpness(inner, mean),
        mean_luma=mean,
        highlights_clipped=highlights,
        shadows_clipped=shadows,
        contrast=std,
        blockiness=blockiness(inner),
        bar_top=top / h,
        bar_bottom=bottom / h,
        bar_left=left / w,
        bar_right=right / w,
        color_temp_ratio=(red / inner.size + 1.0) / (blue / inner.size + 1.0),
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
# Immerkaer's mask [[1, -2, 1], [-2, 4, -2], [1, -2, 1]]: second differences in x and y (the
# outer product of this one with itself), blind to flat areas and linear ramps; its response to
# white noise of sigma s has standard deviation 6 s
_SECOND_DIFF = np.array([1, -2, 1], np.float32)
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
    # Immerkaer's mask as two separable passes straight from uint8: the responses are integers
    # within +-4080, exact in float32 either way, and the border rows they could differ on are
    # cut off; cheaper than the 3x3 filter of a float32 copy
    r = cv2.sepFilter2D(gray, cv2.CV_32F, _SECOND_DIFF, _SECOND_DIFF)[1:-1, 1:-1]
    np.abs(r, out=r)
    g = gray[1:-1, 1:-1]
    b = NOISE_BLOCK
    h, w = (r.shape[0] // b) * b, (r.shape[1] // b) * b
    # block means by an exact integer-factor area resize: numpy's reshape-and-reduce numbers,
    # cheaper
    rb = cv2.resize(r[:h, :w], (w // b, h // b), interpolation=cv2.INTER_AREA) * (
        np.sqrt(np.pi / 2) / 6
    )
    # a block touches clipping unless all its pixels are inside (CLIP_LOW, CLIP_HIGH): the area
    # mean of that 0/255 mask is 255 only then (one 0 pulls it to 251), the mask cheaper in
    # uint8 than a float32 one
    inside = cv2.inRange(g[:h, :w], CLIP_LOW + 1, CLIP_HIGH - 1)
    ok = cv2.resize(inside, (w // b, h // b), interpolation=cv2.INTER_AREA) == 255
    if np.count_nonzero(ok) < 4:
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
    mean, _, highlights, shadows = gray_stats(crop)
    return SubjectQuality(
        luma=mean if light is crop else gray_mean(light),
        highlights_clipped=highlights,
        shadows_clipped=shadows,
        sharpness=sharpness(crop, mean),
        noise=noise_sigma(views.noise[ny0:ny1, nx0:nx1]),
    )
