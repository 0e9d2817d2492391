"""Background (place) datasets: frames with every person removed and filled in, balanced over
the places they show (seed 003: "background layers with the characters removed and inpainted,
scene clustering"; keep background data free of characters).

Per selected clip, a few frames spread over it (the measured frames, the sharpest first):
1. every person is masked (masks.person_mask: segmenter shape confirmed by the person detector
   and the faces, detector boxes where the segmenter misses, dilated);
2. a frame where the mask covers more than `max_fill_fraction` is dropped (`too_much_fill`,
   with the fraction): what is filled there is invented, not the place;
3. the mask is filled (OpenCV's Telea by default; LaMa from LORAFORGE_MODELS__DIR/lama with
   inpainter=lama) and the person detector looks at the result again: a frame where it still
   finds someone is dropped (`person_left`);
4. frames of one clip that show the same picture after the fill are dropped
   (`duplicate_frame`: a static camera with someone walking through gives one background);
5. scene clusters (scenes.scene_descriptor on the unmasked pixels, average linkage): at most
   `max_scene_fraction` of the items from one place (`scene_dominant`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from loraforge.curation.builders import BuildContext, BuildResult, Dropped, Item, apply_size_range
from loraforge.curation.builders.inpaint import make_inpainter
from loraforge.curation.builders.masks import person_mask, work_rgb
from loraforge.curation.builders.media import write_image
from loraforge.curation.builders.scenes import (
    SCENE_DISTANCE,
    balanced_pick,
    scene_clusters,
    scene_descriptor,
)

log = logging.getLogger(__name__)

# Share of the frame that may be filled. Set on the test composites and on what a person takes
# in real framings: a full-body passer-by in a wide 16:9 shot covers 3-10 % (dilated mask), a
# person standing in a medium-wide shot 12-22 %, a medium close-up interview 35-50 % (the
# astronaut cut-out at 90 % of a 480x360 frame's height: 0.41). Telea's fill of a hole a
# quarter of the frame is a visible smear of the rim's colours; above it a frame teaches the
# smear, so 0.25 keeps walk-throughs and wide shots and drops medium shots and close-ups.
MAX_FILL_FRACTION = 0.25
# One place may be at most this share of the items (seed 003's scene clustering: the set
# should cover the places of the footage, not the one the camera lingered on).
MAX_SCENE_FRACTION = 0.4
# Frames of one clip whose pictures (people left out) are this close in scene descriptor
# distance are one background: a locked-off shot with someone walking through measured
# 0.007-0.03 between its frames after the fill; the same place panned by 40 px of 480 and lit
# 0.8x is 0.03, by a quarter of the frame more than 0.05
DUPLICATE_DISTANCE = 0.03
# After the fill the person detector must not find anyone this sure: a Telea smear where a
# person stood still scores up to 0.53 (the outline is left), real people 0.55-0.95 (people.py)
LEFT_PERSON_SCORE = 0.6


class BackgroundOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    inpainter: Literal["opencv", "lama"] = "opencv"
    frames_per_clip: int = Field(
        default=3, ge=1, le=16, description="frames taken from each selected clip"
    )
    max_fill_fraction: float = Field(default=MAX_FILL_FRACTION, gt=0, le=1)
    max_scene_fraction: float = Field(default=MAX_SCENE_FRACTION, gt=0, le=1)
    scene_distance: float = Field(default=SCENE_DISTANCE, gt=0)


def spread(indices: list[int], k: int, first: int | None = None) -> list[int]:
    """k of the indices spread over them, `first` (the best frame) among them when given."""
    if len(indices) <= k:
        return list(indices)
    picks = {indices[int(round(i))] for i in np.linspace(0, len(indices) - 1, k)}
    if first is not None and first in indices and first not in picks:
        picks.remove(min(picks, key=lambda i: abs(i - first)))
        picks.add(first)
    return sorted(picks)


@dataclass
class _Candidate:
    """A frame that passed steps 1-4, written to `path`, waiting for the scene balance."""

    clip_id: str
    index: int  # frame index in the clip
    path: str  # under the output folder
    desc: np.ndarray  # scenes.scene_descriptor of the unmasked pixels
    score: float  # pick order within its scene: quality, less invented first
    evidence: dict[str, Any]


class BackgroundBuilder:
    lora_type = "background"
    Options = BackgroundOptions

    def build(self, ctx: BuildContext) -> BuildResult:
        opt: BackgroundOptions = ctx.options or BackgroundOptions()
        inpainter = make_inpainter(opt.inpainter, ctx.models_dir)
        dropped: list[Dropped] = []
        cands: list[_Candidate] = []  # frames that passed 1-4, until the scene balance
        for c in ctx.selected:
            m = c.metrics
            indices = spread(ctx.sampled(m.clip_id), opt.frames_per_clip, m.best_frame_index)
            kept_desc: list[np.ndarray] = []
            for idx, frame in ctx.frames(m.clip_id, indices):
                faces = (
                    [f.box for f in ctx.backend.detect(frame, embed_largest=False)]
                    if ctx.backend
                    else []
                )
                pm = person_mask(ctx.people, frame, faces)
                ev = {"fill_fraction": round(pm.fraction, 4), "people": pm.count}
                if pm.fraction > opt.max_fill_fraction:
                    dropped.append(
                        Dropped(
                            m.clip_id,
                            "too_much_fill",
                            f"too_much_fill: people cover {pm.fraction:.0%} of the frame, more "
                            f"than would be filled in ({opt.max_fill_fraction:.0%}); a wider "
                            "shot of the place, or one with fewer people, keeps it",
                            idx,
                            ev,
                        )
                    )
                    continue
                filled = inpainter.fill(frame, pm.mask) if pm.fraction > 0 else frame
                if pm.fraction > 0:
                    left = ctx.people.persons(_rgb(filled), LEFT_PERSON_SCORE)
                    if left:
                        ev["person_score"] = round(max(d.score for d in left), 3)
                        dropped.append(
                            Dropped(
                                m.clip_id,
                                "person_left",
                                f"person_left: a person is still seen after the fill (score "
                                f"{ev['person_score']:.2f}, limit {LEFT_PERSON_SCORE})",
                                idx,
                                ev,
                            )
                        )
                        continue
                desc = scene_descriptor(frame, pm.mask)
                near = min((float(np.linalg.norm(desc - d)) for d in kept_desc), default=None)
                if near is not None and near < DUPLICATE_DISTANCE:
                    dropped.append(
                        Dropped(
                            m.clip_id,
                            "duplicate_frame",
                            f"duplicate_frame: the same background as another frame of this "
                            f"clip (distance {near:.3f} < {DUPLICATE_DISTANCE})",
                            idx,
                            {**ev, "distance": round(near, 4)},
                        )
                    )
                    continue
                kept_desc.append(desc)
                box = _bbox(pm.mask)
                # written now, not held: a long 1080p selection would not fit in memory; the
                # frames the scene balance leaves out are deleted below
                path = ctx.item_path(m.clip_id, f"{m.clip_id}-f{idx:05d}.png")
                write_image(ctx.out_dir / path, filled)
                cands.append(
                    _Candidate(
                        m.clip_id,
                        idx,
                        path,
                        desc,
                        m.quality_score - pm.fraction,  # less invented first
                        {
                            **ev,
                            "inpainter": inpainter.name if pm.fraction else None,
                            "filled_box": box,
                        },
                    )
                )
        labels = scene_clusters([c.desc for c in cands], opt.scene_distance)
        picked = balanced_pick(labels, [c.score for c in cands], len(cands), opt.max_scene_fraction)
        chosen = set(picked)
        sizes: dict[int, int] = {}
        for lab in labels:
            sizes[lab] = sizes.get(lab, 0) + 1
        taken = {lab: sum(labels[i] == lab for i in picked) for lab in sizes}
        items = []
        for i in picked:
            cand = cands[i]
            items.append(
                Item(
                    f"{cand.clip_id}-f{cand.index:05d}",
                    cand.clip_id,
                    cand.path,
                    "image",
                    cand.index,
                    "inpainted" if cand.evidence["fill_fraction"] > 0 else "full",
                    {**cand.evidence, "scene_cluster": labels[i]},
                )
            )
        for i, cand in enumerate(cands):
            if i not in chosen:
                (ctx.out_dir / cand.path).unlink(missing_ok=True)
                lab = labels[i]
                dropped.append(
                    Dropped(
                        cand.clip_id,
                        "scene_dominant",
                        f"scene_dominant: place {lab} already gives {taken[lab]} of {len(picked)} "
                        f"items (max {opt.max_scene_fraction:.0%} from one place); footage "
                        "of other places would let more of it in",
                        cand.index,
                        {**cand.evidence, "scene_cluster": lab},
                    )
                )
        summary = {
            "inpainter": inpainter.name,
            "max_fill_fraction": opt.max_fill_fraction,
            "max_scene_fraction": opt.max_scene_fraction,
            "scenes": {
                str(lab): {
                    "frames": sizes[lab],
                    "items": taken[lab],
                    "clips": sorted(
                        {cands[i].clip_id for i in range(len(cands)) if labels[i] == lab}
                    ),
                }
                for lab in sorted(sizes)
            },
            "people_removed_from": sum(1 for it in items if it.variant == "inpainted"),
        }
        missing = []
        if len(sizes) == 1 and len(cands) > 1:
            missing.append(
                "every usable frame shows one place; footage of other places would balance "
                "the background set"
            )
        if not items:
            missing.append(
                "no frame was usable as a background: every frame had people over more than "
                f"{opt.max_fill_fraction:.0%} of it or was left with a person; add wide shots of "
                "the places"
            )
        build = BuildResult(items, dropped, summary, missing)
        # seed 003's size range (size_range.py): below the minimum the job fails saying how many
        # to add, above the maximum the last picks go (the pick order keeps the places balanced)
        apply_size_range(
            build,
            "background",
            "image",
            dict(ctx.policy.build_options),
            ctx.result.rejection_counts(),
        )
        return build


def _rgb(bgr: np.ndarray) -> np.ndarray:
    import cv2

    rgb, _ = work_rgb(bgr)
    return rgb if rgb.size else cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _bbox(mask: np.ndarray) -> list[float] | None:
    """The filled region as x, y, w, h fractions of the frame (the report's evidence)."""
    if not mask.any():
        return None
    h, w = mask.shape
    ys, xs = np.where(mask)
    return [
        round(xs.min() / w, 4),
        round(ys.min() / h, 4),
        round((xs.max() - xs.min() + 1) / w, 4),
        round((ys.max() - ys.min() + 1) / h, 4),
    ]
