"""Lighting classes for a lighting LoRA: sunset, sunrise, midday, indoor, dramatic.

Measured per frame, each as a number written as evidence:

- colour temperature of the light (kelvin): the illuminant is estimated on the picture less its
  sky (the sky is a light source, not a surface it lights) with shades-of-grey (Finlayson &
  Trezzi 2004, Minkowski norm p=6: between grey-world and white-patch, robust to one dominant
  surface colour) on linear RGB, then turned into a correlated colour temperature with
  McCamy's formula (CIE xy). Candle/tungsten 1900-3200 K, low sun 2500-4000 K, midday sun and
  overcast daylight 5000-7000 K, shade and blue sky 7000 K+.
- sky: the region joined to the top edge that is bright, smooth (little texture) and sky-coloured
  (blue, or the warm/pink gradient of a low sun); its share of the frame and its own colour.
- key/fill contrast: how many stops the lit side of the subject is above its shadow side (the
  face when there is one, else the frame's 90th against 10th luminance percentile on a blurred
  copy, which measures the light's fall-off rather than the surfaces' texture).
- light direction: the dominant large-scale luminance gradient (left/right/top/bottom), on the
  face or the frame.
- low-key share: the fraction of the frame in deep shadow.

Classes (``classify``): dramatic = strong key/fill (>= 2.5 stops) in a low-key picture; then
with sky in frame, warm light (< 4300 K) is a low sun (sunrise or sunset) and the rest midday;
without sky, bright daylight-coloured light with hard contrast is midday outdoors, else indoor.
A photo's EXIF exposure (aperture, shutter, ISO -> scene EV) is absolute light and overrules the
sky heuristic: EV <= 9 is indoors, EV >= 12 with daylight colour is outdoors by day.
Sunrise and sunset look alike in a single picture: the capture time decides when the file
carries one (hour < 12: sunrise); without it the sky's hue does (a low sun after dusk-side haze
is redder/more saturated, a dawn sky pinker and paler), which is a heuristic and is marked so
(``sun_side_from``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np

from loraforge.curation.geometry import Box
from loraforge.curation.quality import black_bars

CLASSES = ("sunset", "sunrise", "midday", "indoor", "dramatic")

WORK_WIDTH = 320  # lighting is a large-scale property: a small copy measures it as well
# shades-of-grey norm (Finlayson & Trezzi: p=6 did best on their sets)
SOG_P = 6.0
# sky: a region touching the top edge, this much of the frame at least (a strip of sky
# through a window is 2-4 %; an outdoor wide shot 15-50 %)
SKY_MIN_FRACTION = 0.06
# grey levels: a blue sky at dusk (the launch pad photo's) reads 60-90, daylight sky 150-250;
# a low sun's warm gradient and a pale overcast sky must be brighter, since warm and pale
# smooth surfaces (a wooden table, a white wall) are common indoors
SKY_MIN_LUMA_BLUE = 60
SKY_MIN_LUMA = 120
SKY_MAX_TEXTURE = 6.0  # local std of luma (grey levels, 7x7 at WORK_WIDTH): sky is smooth
SKY_MAX_TEXTURE_WARM = 4.0  # warm wood and skin are smooth too, but not this smooth
SKY_MIN_PERCENTILE = 75
# warm light: a low sun sits at 2500-4000 K (golden hour), tungsten at 2700-3200 K; midday sun
# and daylight 5000 K and up. The cut sits between, where the sun at ~15 deg elevation is
WARM_MAX_K = 4300.0
# dramatic: the lit side at least 2.5 stops (~6:1) above the shadow side, as in chiaroscuro
# or a single hard key; and a low-key picture (this much of the frame in deep shadow, luma < 40)
DRAMATIC_MIN_STOPS = 2.5
DRAMATIC_MIN_DARK = 0.35
DARK_LUMA = 40
# bright daylight without sky in frame (a street in the sun, camera tilted down): the frame is
# bright, the light daylight-coloured and hard (shadows 1.5+ stops below the lit parts)
OUTDOOR_MIN_LUMA = 120
DAYLIGHT_MIN_K = 4800.0
OUTDOOR_MIN_STOPS = 1.5
# EV at ISO 100 (log2 N^2/t - log2 ISO/100), the standard exposure tables: home interiors 5-7,
# bright offices and shops 8-9 (at most 9 here), sunset 10-12, overcast daylight 12-13, full sun
# 14-16 (at least 12 here); between, the picture decides
INDOOR_MAX_EV = 9.0
DAYLIGHT_MIN_EV = 12.0


@dataclass(frozen=True)
class LightMeasure:
    cct_k: float  # correlated colour temperature of the estimated light
    illuminant_rgb: tuple[float, float, float]  # linear, normalised to sum 1
    sky_fraction: float
    sky_hue: (
        float | None
    )  # OpenCV hue 0-180 of the sky (blue ~100-120, orange ~10-20, pink ~160-175)
    sky_saturation: float | None  # 0-255
    key_fill_stops: float
    contrast_on: str  # face | frame
    direction: str  # left | right | top | bottom | even (where the light comes from, image terms)
    direction_strength: float  # stops across the subject along that axis
    mean_luma: float
    dark_fraction: float

    def as_dict(self) -> dict[str, Any]:
        return {
            k: (
                round(v, 4)
                if isinstance(v, float)
                else [round(x, 4) for x in v]
                if isinstance(v, tuple)
                else v
            )
            for k, v in asdict(self).items()
        }


def _srgb_to_linear(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float32) / 255.0
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def cct_from_rgb(rgb_linear: tuple[float, float, float] | np.ndarray) -> float:
    """McCamy's CCT of a linear sRGB colour (valid ~2000-12500 K; clamped to 1500-20000)."""
    r, g, b = (float(v) for v in rgb_linear)
    x_ = 0.4124 * r + 0.3576 * g + 0.1805 * b
    y_ = 0.2126 * r + 0.7152 * g + 0.0722 * b
    z_ = 0.0193 * r + 0.1192 * g + 0.9505 * b
    s = x_ + y_ + z_
    if s <= 0:
        return 6500.0
    x, y = x_ / s, y_ / s
    n = (x - 0.3320) / min(0.1858 - y, -1e-6)  # y > 0.1858 for any real light
    cct = 449.0 * n**3 + 3525.0 * n**2 + 6823.3 * n + 5520.33
    return float(min(20000.0, max(1500.0, cct)))


def sky_mask(bgr_small: np.ndarray) -> np.ndarray:
    """Sky pixels: bright, smooth and sky-coloured, in regions joined to the top edge."""
    hsv = cv2.cvtColor(bgr_small, cv2.COLOR_BGR2HSV)
    gray = cv2.cvtColor(bgr_small, cv2.COLOR_BGR2GRAY).astype(np.float32)
    mean = cv2.blur(gray, (7, 7))
    texture = np.sqrt(np.maximum(cv2.blur(gray * gray, (7, 7)) - mean * mean, 0))
    h, s, _v = (
        hsv[..., 0].astype(np.int32),
        hsv[..., 1].astype(np.int32),
        hsv[..., 2].astype(np.int32),
    )
    blue = (h >= 85) & (h <= 130)  # clear or hazy blue sky (hazy: low saturation, still blue-ish)
    warm = ((h <= 30) | (h >= 150)) & (s >= 40)  # a low sun's orange/red/pink gradient
    pale = s < 30  # overcast/white sky
    cand = (texture <= SKY_MAX_TEXTURE) & (
        (blue & (mean >= SKY_MIN_LUMA_BLUE))
        | (warm & (mean >= SKY_MIN_LUMA) & (texture <= SKY_MAX_TEXTURE_WARM))
        | (pale & (mean >= SKY_MIN_LUMA))
    )
    opened = cv2.morphologyEx(cand.astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    _n, labels = cv2.connectedComponents(opened)
    top = set(np.unique(labels[0][labels[0] > 0]).tolist())
    # a white wall touching the top of an indoor frame is smooth and pale too: pale regions
    # count only when they also hold some blue or warm sky colour (5 %)
    # the sky lights the scene: it is among the brightest parts of the frame (at or above the
    # 75th percentile of luma). A blue studio backdrop behind a portrait (Grace Hopper's: 123
    # against 136) is smooth and blue but darker than that; China's daylight sky 230 against 223
    bright = float(np.percentile(gray, SKY_MIN_PERCENTILE))
    keep = np.zeros_like(cand, dtype=bool)
    for lab in top:
        region = labels == lab
        coloured = float(((blue | warm) & region).sum()) / max(float(region.sum()), 1.0)
        if coloured >= 0.05 and float(gray[region].mean()) >= bright:
            keep |= region
    return keep


def _halves_stops(lum: np.ndarray) -> tuple[str, float, float]:
    """(direction, stops along it, key/fill stops) of a luminance patch (linear)."""
    h, w = lum.shape
    eps = 1e-4
    left, right = lum[:, : w // 2].mean() + eps, lum[:, w - w // 2 :].mean() + eps
    top, bottom = lum[: h // 2].mean() + eps, lum[h - h // 2 :].mean() + eps
    lr, tb = math.log2(right / left), math.log2(bottom / top)
    if max(abs(lr), abs(tb)) < 0.5:  # within half a stop: even light
        direction, strength = "even", max(abs(lr), abs(tb))
    elif abs(lr) >= abs(tb):
        direction, strength = ("right" if lr > 0 else "left"), abs(lr)
    else:
        direction, strength = ("bottom" if tb > 0 else "top"), abs(tb)
    lo, hi = np.percentile(lum, [10, 90])
    return direction, float(strength), float(math.log2((hi + eps) / (lo + eps)))


def measure_light(bgr: np.ndarray, face: Box | None = None) -> LightMeasure:
    h, w = bgr.shape[:2]
    f = WORK_WIDTH / w
    small = cv2.resize(bgr, (WORK_WIDTH, max(1, round(h * f))), interpolation=cv2.INTER_AREA)
    # letterbox/pillarbox bars are not shadow: measured inside the picture only (a 2.39:1 film
    # in a 16:9 frame is a quarter black, which would read as a low-key shot)
    # (and 4 px more: the bar's edge, blended by the downscale and the 7x7 texture window,
    # would keep the sky from touching the picture's top)
    t, b, lft, r = (v + 4 if v else 0 for v in black_bars(cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)))
    if t or b or lft or r:
        small = small[t : small.shape[0] - b, lft : small.shape[1] - r]
        if face is not None:
            face = Box(face.x - lft / f, face.y - t / f, face.w, face.h)
    sky = sky_mask(small)
    lin = _srgb_to_linear(small[..., ::-1])  # RGB linear
    # the light: shades of grey on the lit, unclipped surfaces (not the sky, not black or blown)
    luma8 = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
    use = (~sky) & (luma8 > 20) & (small.max(axis=2) < 250)
    px = lin[use] if use.sum() >= 200 else lin.reshape(-1, 3)
    ill = np.power(np.mean(np.power(px, SOG_P), axis=0), 1.0 / SOG_P) + 1e-6
    ill = ill / ill.sum()
    cct = cct_from_rgb(ill)
    sky_hue = sky_sat = None
    if sky.any():
        hsv = cv2.cvtColor(small, cv2.COLOR_BGR2HSV)
        # hue is circular (red wraps at 0/180): average it as an angle
        ang = hsv[..., 0][sky].astype(np.float64) * (2 * np.pi / 180)
        sky_hue = float(
            (math.degrees(math.atan2(np.sin(ang).mean(), np.cos(ang).mean())) % 360) / 2
        )
        sky_sat = float(hsv[..., 1][sky].mean())

    lum = 0.2126 * lin[..., 0] + 0.7152 * lin[..., 1] + 0.0722 * lin[..., 2]
    blurred = cv2.GaussianBlur(lum, (0, 0), max(1.0, WORK_WIDTH / 80))
    on = "frame"
    patch = blurred
    if face is not None:
        x0, y0 = int(max(0, face.x * f)), int(max(0, face.y * f))
        x1, y1 = int(min(small.shape[1], face.x2 * f)), int(min(small.shape[0], face.y2 * f))
        if x1 - x0 >= 8 and y1 - y0 >= 8:
            # the face itself, lightly blurred: skin is even, so its fall-off is the light's
            patch = cv2.GaussianBlur(lum[y0:y1, x0:x1], (0, 0), max(1.0, (x1 - x0) / 16))
            on = "face"
    direction, strength, stops = _halves_stops(patch)
    return LightMeasure(
        cct_k=round(cct, 1),
        illuminant_rgb=_rgb3(ill),
        sky_fraction=float(sky.mean()),
        sky_hue=sky_hue,
        sky_saturation=sky_sat,
        key_fill_stops=stops,
        contrast_on=on,
        direction=direction,
        direction_strength=strength,
        mean_luma=float(luma8.mean()),
        dark_fraction=float((luma8 < DARK_LUMA).mean()),
    )


def _rgb3(v: np.ndarray) -> tuple[float, float, float]:
    r, g, b = (float(x) for x in v)
    return r, g, b


def combine(measures: list[LightMeasure]) -> LightMeasure:
    """One measure for a clip: medians over its frames (the direction: the most common)."""
    if len(measures) == 1:
        return measures[0]

    def med(k: str) -> float:
        return float(np.median([getattr(m, k) for m in measures]))

    dirs = [m.direction for m in measures]
    hues = [m.sky_hue for m in measures if m.sky_hue is not None]
    sats = [m.sky_saturation for m in measures if m.sky_saturation is not None]
    ill = np.median([m.illuminant_rgb for m in measures], axis=0)
    return LightMeasure(
        cct_k=med("cct_k"),
        illuminant_rgb=_rgb3(ill / ill.sum()),
        sky_fraction=med("sky_fraction"),
        sky_hue=float(np.median(hues)) if hues else None,
        sky_saturation=float(np.median(sats)) if sats else None,
        key_fill_stops=med("key_fill_stops"),
        contrast_on="face"
        if sum(m.contrast_on == "face" for m in measures) * 2 >= len(measures)
        else "frame",
        direction=max(set(dirs), key=dirs.count),
        direction_strength=med("direction_strength"),
        mean_luma=med("mean_luma"),
        dark_fraction=med("dark_fraction"),
    )


def scene_ev(f_number: float | None, exposure_s: float | None, iso: float | None) -> float | None:
    """EV at ISO 100 of a correctly exposed shot, or None when a value is missing or absurd."""
    if not f_number or not exposure_s or not iso or f_number <= 0 or exposure_s <= 0 or iso <= 0:
        return None
    return math.log2(f_number * f_number / exposure_s) - math.log2(iso / 100.0)


def sun_side(m: LightMeasure, capture_hour: float | None) -> tuple[str, str]:
    """(sunrise | sunset, what decided it): the capture time when known, else the sky's colour.
    Heuristic without a time: dusk skies after a day's haze and dust read more saturated
    orange-red; dawn skies paler and pinker (hue past magenta, >= 150 on OpenCV's scale)."""
    if capture_hour is not None:
        return ("sunrise" if capture_hour < 12 else "sunset"), "capture_time"
    if m.sky_hue is not None and m.sky_hue >= 150 and (m.sky_saturation or 0) < 120:
        return "sunrise", "sky_colour"
    return "sunset", "sky_colour"


@dataclass(frozen=True)
class LightClass:
    label: str
    why: str
    sun_side_from: str | None = None  # capture_time | sky_colour (sunrise/sunset only)


def classify(
    m: LightMeasure, capture_hour: float | None = None, scene_ev: float | None = None
) -> LightClass:
    """``scene_ev``: the scene's exposure value at ISO 100 from a photo's EXIF (aperture,
    shutter, ISO), the one measure of absolute light a picture carries: it overrules the sky
    heuristic where the two disagree (a blue backdrop read as sky in a dim room; a sunny street
    with no sky in frame)."""
    if m.key_fill_stops >= DRAMATIC_MIN_STOPS and m.dark_fraction >= DRAMATIC_MIN_DARK:
        return LightClass(
            "dramatic",
            f"key/fill {m.key_fill_stops:.1f} stops on the {m.contrast_on} "
            f"(>= {DRAMATIC_MIN_STOPS}), {m.dark_fraction:.0%} of the frame in deep shadow "
            f"(>= {DRAMATIC_MIN_DARK:.0%}), light from the {m.direction}",
        )
    if scene_ev is not None and scene_ev <= INDOOR_MAX_EV:
        return LightClass(
            "indoor",
            f"EXIF exposure EV {scene_ev:.1f} (<= {INDOOR_MAX_EV}): interior light levels, "
            f"{m.cct_k:.0f} K",
        )
    if (
        scene_ev is not None
        and scene_ev >= DAYLIGHT_MIN_EV
        and m.cct_k >= WARM_MAX_K
        and m.sky_fraction < SKY_MIN_FRACTION
    ):
        return LightClass(
            "midday",
            f"EXIF exposure EV {scene_ev:.1f} (>= {DAYLIGHT_MIN_EV}): daylight outdoors, "
            f"{m.cct_k:.0f} K, no sky in frame",
        )
    if m.sky_fraction >= SKY_MIN_FRACTION:
        if m.cct_k < WARM_MAX_K:
            side, by = sun_side(m, capture_hour)
            return LightClass(
                side,
                f"sky {m.sky_fraction:.0%} of the frame, warm light {m.cct_k:.0f} K "
                f"(< {WARM_MAX_K:.0f}): a low sun; {side} by {by.replace('_', ' ')}",
                by,
            )
        return LightClass(
            "midday",
            f"sky {m.sky_fraction:.0%} of the frame, daylight {m.cct_k:.0f} K "
            f"(>= {WARM_MAX_K:.0f})",
        )
    if (
        m.mean_luma >= OUTDOOR_MIN_LUMA
        and m.cct_k >= DAYLIGHT_MIN_K
        and m.key_fill_stops >= OUTDOOR_MIN_STOPS
    ):
        return LightClass(
            "midday",
            f"no sky in frame, but bright ({m.mean_luma:.0f}) hard "
            f"({m.key_fill_stops:.1f} stops) daylight ({m.cct_k:.0f} K)",
        )
    return LightClass(
        "indoor",
        f"no sky in frame ({m.sky_fraction:.0%} < {SKY_MIN_FRACTION:.0%}), "
        f"{m.cct_k:.0f} K, key/fill {m.key_fill_stops:.1f} stops",
    )
