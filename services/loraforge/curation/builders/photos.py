"""A person's photo set (seed 002): every photo curation kept is checked for what spoils a
likeness LoRA and cropped so the person dominates; the crops are the dataset's items.

Candidates are the photos curation kept (its pick first, in its order, then the other kept
photos by quality): seed 002's set (20-30, at most 50) is larger than the clip selection's
target, and the photo checks below remove some. The measuring and the thresholds are in
`photo_prep.py`; the set size is checked against seed 002's range (`size_range.py`).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from loraforge.curation import photo_prep
from loraforge.curation.builders import BuildContext, BuildResult, Dropped, Item, apply_size_range
from loraforge.curation.builders.media import write_image
from loraforge.curation.faces import make_backend
from loraforge.curation.text import default_reader


class PhotoOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # (the set-size bounds min_items / max_items are every builder's: size_range.SIZE_OPTIONS)
    max_mirror_fraction: float = Field(default=photo_prep.MAX_MIRROR_FRACTION, ge=0, le=1)
    # read text to find mirror selfies (PP-OCR, ~0.1-0.3 s a photo)
    mirror_check: bool = True


def _rank(ctx: BuildContext) -> list[str]:
    """Kept photos, best first: curation's pick in its order, then the rest by quality."""
    picked = list(ctx.result.selection.selected)
    rest = sorted(
        (c for c in ctx.result.clips if c.decision.keep and c.metrics.clip_id not in picked),
        key=lambda c: (-c.metrics.quality_score, c.metrics.clip_id),
    )
    return picked + [c.metrics.clip_id for c in rest]


class PhotoBuilder:
    lora_type = "character"
    Options = PhotoOptions

    def build(self, ctx: BuildContext) -> BuildResult:
        opts: PhotoOptions = ctx.options or PhotoOptions()
        backend = ctx.backend or make_backend("dlib")
        reader = default_reader() if opts.mirror_check else None
        rank = _rank(ctx)
        images, measures = {}, []
        for cid in rank:
            for _, img in ctx.frames(cid, [0]):
                images[cid] = img
                measures.append(photo_prep.measure_photo(cid, img, backend, ctx.people, reader))
        by_id = {m.clip_id: m for m in measures}
        verdict = photo_prep.decide_set(
            measures, rank, backend.same_person_distance, opts.max_mirror_fraction
        )

        items: list[Item] = []
        kinds: dict[str, int] = {}
        for cid in verdict.kept:
            m = by_id[cid]
            crop, kind = photo_prep.crop_box(m)
            x0, y0, x1, y1 = crop.clipped(m.width, m.height)
            path = ctx.item_path(cid, "crop.png")
            write_image(ctx.out_dir / path, images[cid][y0:y1, x0:x1])
            kinds[kind] = kinds.get(kind, 0) + 1
            items.append(
                Item(
                    cid,
                    cid,
                    path,
                    "image",
                    0,
                    kind,
                    {
                        **m.evidence(),
                        "crop": [x0, y0, x1 - x0, y1 - y0],
                        "crop_kind": kind,
                        "subject_share": round(photo_prep.subject_share(m, crop), 3),
                    },
                )
            )
        dropped = [
            Dropped(cid, r.code, r.message, 0, {**r.evidence, **by_id[cid].evidence()})
            for cid, reasons in verdict.rejected.items()
            for r in reasons
        ]
        missing = []
        if items and not kinds.get("full_body"):
            missing.append(
                "no full-length photo among the kept ones: add 2-3 full-body shots so the "
                "LoRA learns the person's proportions (seed 002)"
            )
        summary: dict[str, Any] = {
            "candidates": len(rank),
            "crops": kinds,
            "baseline_nose_ratio": None
            if verdict.baseline_nose_ratio is None
            else round(verdict.baseline_nose_ratio, 4),
            "mirror_selfies": verdict.mirror_selfies,
        }
        build = BuildResult(items, dropped, summary, missing)
        apply_size_range(
            build,
            "character",
            "photo",
            dict(ctx.policy.build_options),
            ctx.result.rejection_counts(),
        )
        return build
