"""Style datasets: full frames of the footage's look, without transitions, titles and frames
off the set's style (seed 003: "full frames, transitions and off-style frames removed";
frame extraction in "scene" mode).

Scene mode: ingest cuts the footage at its shots, so each selected clip is one scene; a few
frames spread over it (the sharpest measured frame among them) are the candidates.
1. transitions: a frame that is a fade (much darker than the clip's own frames) or a dissolve
   (a mix of the frames before and after it, which differ: two shots over one another) is
   dropped (`transition`, with the measured values);
2. titles: a frame where curation's OCR read text (metrics.text_evidence, scene_text_evidence:
   frames, box, text), or that lies between two such frames, is dropped (`title`, with the
   text); the style policy lets clips with text through to here, so the rest of a titled
   shot stays;
3. off-style: style descriptors (scenes.style_descriptor: posterization, flat regions, edges,
   outlines) standardised over the candidates by their median and MAD; a frame with a feature
   more than `outlier_z` robust standard deviations off is dropped (`off_style`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from loraforge.curation.builders import BuildContext, BuildResult, Dropped, Item, apply_size_range
from loraforge.curation.builders.background import spread
from loraforge.curation.builders.media import write_image
from loraforge.curation.builders.scenes import outliers, style_descriptor
from loraforge.curation.metrics import ClipMetrics

# A fade frame is darker than this share of the clip's median brightness (ingest trims fade
# ramps below 0.85 of the shot's level; a fade that survived into a clip is far darker).
FADE_RATIO = 0.6
# Dissolve: the frame is a*before + (1-a)*after with a residual under this share of the
# before/after difference, for a in DISSOLVE_MIX, and before and after differ by at least
# DISSOLVE_MIN_CHANGE (mean abs grey level). Measured on mp4v test clips panning 3 px a frame
# (before/after 0.6 s apart): cross-fades of the coffee into Grace Hopper and into the cat
# 0.35-0.40 at a 0.49-0.54 mix; three frames of one panning shot 0.65-0.71
DISSOLVE_RESIDUAL = 0.5
DISSOLVE_MIX = (0.15, 0.85)
DISSOLVE_MIN_CHANGE = 20.0
# Off-style cut-off: robust standard deviations on the feature furthest off (scenes.outliers);
# with 4 features, 3 keeps the share of a same-look set dropped by chance near 1 %. Measured
# on mp4v test clips: five photos (astronaut, cat, motorcycle room, Grace Hopper, coffee) under
# one posterized, outlined grade within 1.5; the same kind of photos left natural: the
# astronaut 3.7-4.0 and the room 4.8 out (dropped), the rocket at night 2.4-2.6 and the cat
# 2.8-2.9 (kept: a limit, a night sky and fur are flat and few-levelled themselves). A graded
# night scene among day scenes reached 2.1-2.4.
OUTLIER_Z = 3.0


class StyleOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    frames_per_clip: int = Field(
        default=2, ge=1, le=16, description="frames taken from each selected clip"
    )
    outlier_z: float = Field(default=OUTLIER_Z, gt=0)


def _grey(img: np.ndarray) -> np.ndarray:
    g = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    return cv2.resize(
        g, (160, max(1, round(g.shape[0] * 160 / g.shape[1]))), interpolation=cv2.INTER_AREA
    ).astype(np.float32)


def dissolve(
    before: np.ndarray, frame: np.ndarray, after: np.ndarray
) -> tuple[bool, dict[str, float]]:
    """Is `frame` a mix of `before` and `after` (greys of one size)? Least-squares mix."""
    d = before - after
    change = float(np.abs(d).mean())
    if change < DISSOLVE_MIN_CHANGE:
        return False, {"change": round(change, 2)}
    a = float(np.clip(((frame - after) * d).sum() / max(1e-6, (d * d).sum()), 0.0, 1.0))
    residual = float(np.abs(frame - (a * before + (1 - a) * after)).mean()) / change
    ev = {"mix": round(a, 3), "residual": round(residual, 3), "change": round(change, 2)}
    return DISSOLVE_MIX[0] <= a <= DISSOLVE_MIX[1] and residual < DISSOLVE_RESIDUAL, ev


def _text_spans(m: ClipMetrics) -> list[tuple[int, int, str]]:
    """(first, last frame, text read) of every text the OCR read: overlaid text and subtitles,
    and scene text too. overlays.py cannot tell a title in mid-frame on a still or slow shot
    from a sign (it flags it as scene text), and a style LoRA learns letters from either."""
    spans: list[tuple[int, int, str]] = []
    for e in [*(m.text_evidence or []), *(m.scene_text_evidence or [])]:
        frames = [int(f) for f in e.get("frames", [])]
        if frames:
            spans.append((min(frames), max(frames), str(e.get("text") or "")))
    return spans


@dataclass
class _Frame:
    """A clean frame written to `path`, waiting for the set's style outlier check."""

    clip_id: str
    index: int
    path: str
    desc: np.ndarray  # style_descriptor


class StyleBuilder:
    lora_type = "style"
    Options = StyleOptions

    def build(self, ctx: BuildContext) -> BuildResult:
        opt: StyleOptions = ctx.options or StyleOptions()
        dropped: list[Dropped] = []
        cands: list[_Frame] = []
        for c in ctx.selected:
            m = c.metrics
            sampled = ctx.sampled(m.clip_id)
            frames = dict(ctx.frames(m.clip_id, sampled))
            order = sorted(frames)
            greys = {i: _grey(frames[i]) for i in order}
            median_luma = float(np.median([g.mean() for g in greys.values()]))
            spans = _text_spans(m)
            # every measured frame is checked (a transition is recorded wherever it is); the
            # clip gives its frames_per_clip clean ones, spread, the sharpest among them
            clean = []
            for idx in order:
                why = self._transition_or_title(idx, order, greys, median_luma, spans)
                if why is None:
                    clean.append(idx)
                else:
                    dropped.append(Dropped(m.clip_id, why[0], why[1], idx, why[2]))
            best = m.best_frame_index if m.best_frame_index in clean else None
            for idx in spread(clean, opt.frames_per_clip, best):
                # written now, not held in memory; an off-style frame's file is deleted below
                path = ctx.item_path(m.clip_id, f"{m.clip_id}-f{idx:05d}.png")
                write_image(ctx.out_dir / path, frames[idx])
                cands.append(_Frame(m.clip_id, idx, path, style_descriptor(frames[idx])))
        flags, dist = outliers([cd.desc for cd in cands], opt.outlier_z)
        items = []
        typical = float(np.median(dist)) if dist else 0.0
        for cd, off, d in zip(cands, flags, dist, strict=True):
            if off:
                (ctx.out_dir / cd.path).unlink(missing_ok=True)
                dropped.append(
                    Dropped(
                        cd.clip_id,
                        "off_style",
                        f"off_style: {d:.2f} robust standard deviations from the set's look on "
                        f"its furthest feature (the typical frame {typical:.2f}, limit "
                        f"{opt.outlier_z:g})",
                        cd.index,
                        {"style_distance": d, "typical_distance": round(typical, 4)},
                    )
                )
                continue
            item_id = f"{cd.clip_id}-f{cd.index:05d}"
            items.append(
                Item(
                    item_id,
                    cd.clip_id,
                    cd.path,
                    "image",
                    cd.index,
                    "full",
                    {"style_distance": d, "typical_distance": round(typical, 4)},
                )
            )
        summary = {
            "candidates": len(cands),
            "items": len(items),
            "outlier_z": opt.outlier_z,
            "typical_style_distance": round(typical, 4),
        }
        missing = [] if items else ["no frame kept its style: add footage of the look"]
        build = BuildResult(items, dropped, summary, missing)
        apply_size_range(
            build, "style", "image", dict(ctx.policy.build_options), ctx.result.rejection_counts()
        )
        return build

    @staticmethod
    def _transition_or_title(
        idx: int,
        order: list[int],
        greys: dict[int, np.ndarray],
        median_luma: float,
        spans: list[tuple[int, int, str]],
    ) -> tuple[str, str, dict[str, Any]] | None:
        for lo, hi, text in spans:
            if lo <= idx <= hi:
                return (
                    "title",
                    f"title: text {text!r} read on frames {lo}-{hi}",
                    {"text": text, "frames": [lo, hi]},
                )
        luma = float(greys[idx].mean())
        if median_luma > 0 and luma < FADE_RATIO * median_luma:
            return (
                "transition",
                f"transition: a fade ({luma:.0f} against the clip's {median_luma:.0f}, "
                f"limit {FADE_RATIO:.0%})",
                {"luma": round(luma, 1), "clip_luma": round(median_luma, 1)},
            )
        pos = order.index(idx)
        if 0 < pos < len(order) - 1:
            mixed, ev = dissolve(greys[order[pos - 1]], greys[idx], greys[order[pos + 1]])
            if mixed:
                return (
                    "transition",
                    f"transition: a dissolve ({ev['mix']:.0%} of frame {order[pos - 1]} "
                    f"over frame {order[pos + 1]}, residual {ev['residual']:.2f})",
                    ev,
                )
        return None
