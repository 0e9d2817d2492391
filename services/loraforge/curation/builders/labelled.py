"""What the labelled builders (pose, expression, lighting) share: their candidates (kept clips,
the selection first), how they rank them, and the balanced items they end with."""

from __future__ import annotations

from typing import Any

import numpy as np

from loraforge.curation.balance import Candidate, balance
from loraforge.curation.builders import (
    BuildContext,
    BuildResult,
    Dropped,
    Item,
    ItemKind,
    apply_size_range,
)
from loraforge.curation.errors import UnreadableMedia
from loraforge.curation.pipeline import ClipResult
from loraforge.curation.size_range import DatasetTooSmall

# candidates at most this many times the target: balance needs spares for the classes it caps,
# and analysing every kept clip of a 1000-clip project (keypoints on 24 frames each, ~3 s a
# clip) would cost most of an hour for items that could never be picked
CANDIDATES_PER_TARGET = 3


def candidates(ctx: BuildContext) -> tuple[list[ClipResult], list[Dropped]]:
    """Kept clips, the selection first in its pick order, then the rest by quality (balance may
    need a kept clip the selection passed over), at most CANDIDATES_PER_TARGET x the target;
    and the kept clips left unanalysed beyond that, as drops."""
    chosen = ctx.selected
    ids = {c.metrics.clip_id for c in chosen}
    rest = sorted(
        (c for c in ctx.result.clips if c.decision.keep and c.metrics.clip_id not in ids),
        key=lambda c: (-c.metrics.quality_score, c.metrics.clip_id),
    )
    limit = max(len(chosen), CANDIDATES_PER_TARGET * ctx.result.selection.target_size)
    every = [*chosen, *rest]
    spare = [
        Dropped(
            c.metrics.clip_id,
            "not_analysed",
            f"not_analysed: {limit} kept clips (the selection, then the best) were enough "
            f"candidates for a target of {ctx.result.selection.target_size}",
        )
        for c in every[limit:]
    ]
    return every[:limit], spare


def read(
    ctx: BuildContext, clip_id: str, indices: list[int], dropped: list[Dropped]
) -> list[tuple[int, np.ndarray]]:
    """The clip's frames, or [] with a drop saying why (one unreadable clip does not end the
    job)."""
    try:
        frames = ctx.frames(clip_id, indices)
    except UnreadableMedia as exc:
        dropped.append(Dropped(clip_id, "unreadable", f"unreadable: {exc}"))
        return []
    if not frames:
        dropped.append(
            Dropped(clip_id, "unreadable", f"unreadable: none of frames {indices[:8]} decoded")
        )
    return frames


def score_of(c: ClipResult, selected_ids: set[str]) -> float:
    """Balance ranks within a class: the selection's own picks first, then quality."""
    return (1.0 if c.metrics.clip_id in selected_ids else 0.0) + c.metrics.quality_score


def finish(
    ctx: BuildContext,
    cands: list[Candidate],
    evidence: dict[str, dict[str, Any]],
    dropped: list[Dropped],
    max_share: float,
    what: str,
    classes: tuple[str, ...],
    item_path: dict[str, str] | None = None,
    frame_index: dict[str, int] | None = None,
    item_kind: dict[str, ItemKind] | None = None,
) -> BuildResult:
    """Balance the labelled candidates to the selection's target and turn them into items:
    the clips themselves, or the derived files given in ``item_path`` (item id -> path)."""
    target = ctx.result.selection.target_size
    bal = balance(cands, target, max_share) if cands else None
    items: list[Item] = []
    clip_of = {cid: ev.get("clip_id", cid) for cid, ev in evidence.items()}
    kind: ItemKind = (
        "video" if any(c.metrics.kind == "video" for c in ctx.result.clips) else "image"
    )
    paths, kinds = item_path or {}, item_kind or {}
    if bal is not None:
        for cand in bal.chosen:
            path = paths.get(cand.item_id)
            items.append(
                Item(
                    cand.item_id,
                    clip_of[cand.item_id],
                    path,
                    kind=kinds.get(cand.item_id, "image" if path else kind),
                    frame_index=(frame_index or {}).get(cand.item_id),
                    variant="face_crop" if path else "full",
                    evidence=evidence[cand.item_id],
                )
            )
        for cand in bal.capped:
            n = bal.counts.get(cand.label, 0)
            derived = paths.get(cand.item_id)
            if derived:  # a derived file that is not an item: not uploaded
                (ctx.out_dir / derived).unlink(missing_ok=True)
            dropped.append(
                Dropped(
                    clip_of[cand.item_id],
                    "class_cap",
                    f"class_cap: {cand.label} already has {n} of the {target} items "
                    f"(at most {bal.cap})",
                    evidence=evidence[cand.item_id],
                )
            )
    counts = bal.counts if bal else {}
    summary = {
        f"{what}_counts": {k: counts.get(k, 0) for k in classes},
        "candidates": {k: sum(c.label == k for c in cands) for k in classes},
        "max_class_share": max_share,
        "class_cap": bal.cap if bal else 0,
        "target": target,
    }
    missing = (
        list(bal.missing) if bal else [f"no clip gave a {what} label; add clips that show one"]
    )
    build = BuildResult(items, dropped, summary, missing)
    if not items:
        # nothing to train on: fail with what was left out and why, not an empty dataset
        left = ", ".join(f"{code} {n}" for code, n in build.counts().items()) or "no kept clips"
        fixes = "; ".join(sorted({d.message.split(": ", 1)[-1] for d in dropped})[:3])
        raise DatasetTooSmall(
            f"no {ctx.policy.lora_type} items: the builder left out every clip ({left})"
            + (f": {fixes}" if fixes else "")
        )
    # seed 003's size range for the type's images (frames, crops, photos); clips trained as they
    # are have none for these types. Below the minimum the job fails saying how many to add
    if {i.kind for i in items} == {"image"}:
        apply_size_range(
            build,
            ctx.policy.lora_type,
            "image",
            dict(ctx.policy.build_options),
            ctx.result.rejection_counts(),
        )
    return build
