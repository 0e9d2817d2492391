"""Source (a): what curation measured -> caption slots. Offline, deterministic, the default.

Measured facts beat a model's guess, so when several sources fill a slot this one wins.
Shot size comes from the face height / frame height ratio curation stores
(`largest_face_ratio`); dominant colours are computed here from keyframes.
"""

from __future__ import annotations

import colorsys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image

ANGLE = {
    "frontal": "front view",
    "three_quarter": "three-quarter view",
    "profile_left": "profile view",
    "profile_right": "profile view",
    "above": "high angle view",
    "below": "low angle view",
}
EXPRESSION = {
    "neutral": "neutral expression",
    "smiling": "smiling",
    "talking": "talking",
    "mouth_open": "mouth open",
    "eyes_closed": "eyes closed",
}
CAMERA = {
    "static": "static camera",
    "moderate": "smooth camera movement",
    "shaky": "handheld camera",
}
LIGHTING = {
    "day": "daylight",
    "evening": "warm evening light",
    "studio": "soft studio lighting",
    "low_light": "low light",
}
# face height / frame height -> shot size (a head is ~1/7.5 of a standing body)
SHOT_SIZES = [
    (0.40, "close-up"),
    (0.22, "medium close-up"),
    (0.12, "medium shot"),
    (0.06, "cowboy shot"),
    (0.0, "full body shot"),
]


def shot_size(face_ratio: float | None) -> str:
    if not face_ratio or face_ratio <= 0:
        return ""
    return next(name for limit, name in SHOT_SIZES if face_ratio >= limit)


def _colour_name(rgb: tuple[int, int, int]) -> str:
    r, g, b = (c / 255 for c in rgb)
    hue, lightness, sat = colorsys.rgb_to_hls(r, g, b)
    if lightness < 0.15:
        return "black"
    if lightness > 0.88:
        return "white"
    if sat < 0.18:
        return "gray"
    deg = hue * 360
    if (deg < 45 or deg >= 345) and lightness < 0.45 and sat < 0.6:
        return "brown"
    for limit, name in (
        (15, "red"),
        (45, "orange"),
        (70, "yellow"),
        (165, "green"),
        (200, "teal"),
        (255, "blue"),
        (290, "purple"),
        (345, "pink"),
        (360, "red"),
    ):
        if deg < limit:
            return name
    return "red"  # pragma: no cover


def dominant_colours(
    images: list[Path | Image.Image], top: int = 2, min_share: float = 0.15
) -> list[str]:
    """Named colours covering >= min_share of the pixels of the keyframes, most common first."""
    counts: Counter[str] = Counter()
    total = 0
    for item in images:
        img = Image.open(item) if isinstance(item, Path) else item
        small = img.convert("RGB").resize((48, 48))
        q = small.quantize(colors=6, method=Image.Quantize.MEDIANCUT)
        palette = q.getpalette() or []
        for count, idx in q.getcolors() or []:
            assert isinstance(idx, int)  # a palette image's colours are palette indices
            r, g, b = palette[idx * 3 : idx * 3 + 3]
            counts[_colour_name((r, g, b))] += count
            total += count
    return [name for name, c in counts.most_common(top) if total and c / total >= min_share]


def slots_from_metrics(
    metrics: dict[str, Any], keyframes: Sequence[Path | Image.Image] = ()
) -> dict[str, str]:
    slots: dict[str, str] = {}
    if metrics.get("angle_bucket") in ANGLE:
        slots["angle"] = ANGLE[metrics["angle_bucket"]]
    shot = shot_size(metrics.get("largest_face_ratio"))
    if shot:
        slots["shot"] = shot
    if metrics.get("expression") in EXPRESSION:
        slots["expression"] = EXPRESSION[metrics["expression"]]
    if metrics.get("expression") == "talking":
        slots["action"] = "speaking"
    if metrics.get("kind", "video") == "video" and metrics.get("motion") in CAMERA:
        # camera motion is a detail, not the effect's `motion` slot (that one is the effect)
        slots["details"] = CAMERA[metrics["motion"]]
    if metrics.get("lighting") in LIGHTING:
        slots["lighting"] = LIGHTING[metrics["lighting"]]
    colours = dominant_colours(list(keyframes)) if keyframes else []
    if colours:
        slots["colors"] = " and ".join(colours)
    return slots
