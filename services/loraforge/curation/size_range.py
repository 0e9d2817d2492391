"""How many training items each LoRA type wants: minimum / recommended / maximum, from the
source documents, and the check that says how many to add or remove.

- Frames built from footage (a type's builder writes images): seed 003's table
  (SD1.5/SDXL via kohya, one image per item).
- A person's photo set (the photos builder): seed 002, 10-15 minimum, 20-30 optimal, 50
  maximum ("more can overload the model").
- Clips trained as they are (a video LoRA, no builder): seed 000 for a character (20-30
  minimum, 50-100 optimal, 150-300 maximum) and seed 004 for an effect (at least 10,
  20-100 recommended, no maximum given).

Below the minimum the dataset fails with what to add; above the maximum the builder's ranking
trims it (its items come best first); in between, a message says how far it is from the
recommended range (manifest, report, dataset.json's `missing`, the CLI).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from loraforge.curation.errors import InvalidPolicy
from loraforge.runtime.errors import InvalidInput


@dataclass(frozen=True)
class SizeRange:
    minimum: int
    recommended: tuple[int, int]
    maximum: int | None  # None: the documents give none
    source: str  # which document the numbers come from
    unit: str  # what an item is, for messages ("frames", "photos", "clips")


# (lora_type, item kind) -> range; item kind: "image" (frames a builder made from footage),
# "photo" (a person's photo set), "video" (clips as they are)
SIZE_RANGES: dict[tuple[str, str], SizeRange] = {
    ("character", "image"): SizeRange(150, (300, 500), 1000, "seed 003", "frames"),
    ("background", "image"): SizeRange(100, (200, 400), 800, "seed 003", "frames"),
    ("style", "image"): SizeRange(200, (300, 500), 1000, "seed 003", "frames"),
    ("pose", "image"): SizeRange(100, (150, 300), 600, "seed 003", "frames"),
    ("expression", "image"): SizeRange(80, (100, 200), 400, "seed 003", "frames"),
    ("lighting", "image"): SizeRange(150, (250, 400), 800, "seed 003", "frames"),
    ("character", "photo"): SizeRange(10, (20, 30), 50, "seed 002", "photos"),
    ("character", "video"): SizeRange(20, (50, 100), 300, "seed 000", "clips"),
    ("effect", "video"): SizeRange(10, (20, 100), None, "seed 004", "clips"),
}


# build_options every builder takes (builders.parse_options leaves them out of the builder's
# own Options): a project's own bounds instead of the documents', e.g. a small first set
SIZE_OPTIONS = ("min_items", "max_items")


def size_overrides(build_options: dict[str, Any]) -> dict[str, int]:
    """min_items / max_items from a policy's build_options, checked (positive whole numbers)."""
    out = {}
    for k in SIZE_OPTIONS:
        v = build_options.get(k)
        if v is None:
            continue
        # numbers cross the wire as floats (protobuf Struct): 2.0 is 2
        if isinstance(v, bool) or not isinstance(v, int | float) or v < 1 or v != int(v):
            raise InvalidPolicy(f"build_options.{k} must be a whole number >= 1, not {v!r}")
        out[k] = int(v)
    if "min_items" in out and "max_items" in out and out["min_items"] > out["max_items"]:
        raise InvalidPolicy(
            f"build_options min_items {out['min_items']} is above max_items "
            f"{out['max_items']}; lower min_items or raise max_items"
        )
    return out


class DatasetTooSmall(InvalidInput):
    """Fewer usable items than the type's minimum; the message says how many to add."""


@dataclass(frozen=True)
class SizeCheck:
    count: int
    range: SizeRange
    status: (
        str  # below_minimum | below_recommended | recommended | above_recommended | above_maximum
    )
    message: str
    keep: int  # how many items to keep (the maximum when above it, else all)

    def as_dict(self) -> dict[str, Any]:
        r = self.range
        return {
            "count": self.count,
            "minimum": r.minimum,
            "recommended": list(r.recommended),
            "maximum": r.maximum,
            "source": r.source,
            "status": self.status,
            "message": self.message,
            "kept": self.keep,
        }


def size_range(
    lora_type: str, item_kind: str, overrides: dict[str, Any] | None = None
) -> SizeRange | None:
    """The range of a type's items, or None when the documents give none. `overrides` (the
    policy's build_options min_items / max_items) replace the documents' bounds for a project
    that knows better, e.g. a small first set."""
    base = SIZE_RANGES.get((lora_type, item_kind))
    if base is None:
        return None
    o = size_overrides(overrides or {})
    lo = int(o.get("min_items", base.minimum))
    hi = o.get("max_items", base.maximum)
    if hi is not None and lo > hi:
        raise InvalidPolicy(
            f"build_options min_items {lo} is above the {lora_type} maximum {hi}; "
            "lower min_items or set max_items"
        )
    rec_lo = min(max(base.recommended[0], lo), hi if hi is not None else base.recommended[0])
    rec_hi = max(min(base.recommended[1], hi if hi is not None else base.recommended[1]), rec_lo)
    return SizeRange(lo, (rec_lo, rec_hi), None if hi is None else int(hi), base.source, base.unit)


def check_size(
    lora_type: str, item_kind: str, count: int, overrides: dict[str, Any] | None = None
) -> SizeCheck | None:
    """Where `count` items stand against the type's range, with a message that says how many
    more or fewer to add. None when the type has no documented range for that kind."""
    r = size_range(lora_type, item_kind, overrides)
    if r is None:
        return None
    lo, (rlo, rhi), hi, u = r.minimum, r.recommended, r.maximum, r.unit
    what = f"{lora_type} LoRA ({r.source}: {lo} minimum, {rlo}-{rhi} recommended" + (
        f", {hi} maximum)" if hi is not None else ")"
    )
    if count < lo:
        return SizeCheck(
            count,
            r,
            "below_minimum",
            f"{count} usable {u}, below the minimum of {lo} for a {what}: add at least "
            f"{lo - count} more {u} (about {rlo - count} for the recommended size)",
            count,
        )
    if count < rlo:
        return SizeCheck(
            count,
            r,
            "below_recommended",
            f"{count} usable {u} for a {what}: add about {rlo - count} more {u} to reach "
            "the recommended size",
            count,
        )
    if count <= rhi:
        return SizeCheck(
            count,
            r,
            "recommended",
            f"{count} {u}, within the recommended range for a {what}",
            count,
        )
    if hi is None or count <= hi:
        return SizeCheck(
            count,
            r,
            "above_recommended",
            f"{count} {u} for a {what}: {count - rhi} more than the recommended size; "
            "fine, or remove the weakest for a faster run",
            count,
        )
    return SizeCheck(
        count,
        r,
        "above_maximum",
        f"{count} {u} for a {what}: {count - hi} over the maximum, trimmed to the best "
        f"{hi} by the builder's ranking (remove {count - hi} to choose yourself)",
        hi,
    )
