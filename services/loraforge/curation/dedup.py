"""Near-duplicate groups: same shot re-cut, re-encoded, slightly cropped or re-scaled.

Two items are near-copies when their perceptual hashes are close (the picture looks the same)
AND, when both have a face embedding, the faces are nearly identical too (same person is not
enough: that is the backend's much looser same-person distance). Groups are transitive (union
find) and keep their best item by quality score, ties broken by id for determinism.
"""

from __future__ import annotations

from collections.abc import Sequence

import imagehash
import numpy as np

from loraforge.curation.metrics import ClipMetrics


def phash_distance(a: Sequence[str], b: Sequence[str]) -> int:
    """Closest pair of keyframe hashes: clips that share a moment are duplicates there."""
    if not a or not b:
        return 64
    ha = [imagehash.hex_to_hash(h) for h in a]
    hb = [imagehash.hex_to_hash(h) for h in b]
    return min(x - y for x in ha for y in hb)


def duplicate_groups(
    clips: Sequence[ClipMetrics], max_phash: int, max_embedding_distance: float
) -> dict[str, str]:
    """clip_id -> id of the kept clip of its group, for every clip that lost to a near-copy."""
    items = sorted(clips, key=lambda c: c.clip_id)
    parent = {c.clip_id: c.clip_id for c in items}

    def find(i: str) -> str:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, a in enumerate(items):
        for b in items[i + 1 :]:
            if phash_distance(a.phashes, b.phashes) > max_phash:
                continue
            if a.embedding is not None and b.embedding is not None:
                d = float(np.linalg.norm(np.asarray(a.embedding) - np.asarray(b.embedding)))
                if d > max_embedding_distance:
                    continue
            parent[find(b.clip_id)] = find(a.clip_id)
    groups: dict[str, list[ClipMetrics]] = {}
    for c in items:
        groups.setdefault(find(c.clip_id), []).append(c)
    out: dict[str, str] = {}
    for members in groups.values():
        if len(members) < 2:
            continue
        keep = min(members, key=lambda c: (-c.quality_score, c.clip_id))
        for c in members:
            if c.clip_id != keep.clip_id:
                out[c.clip_id] = keep.clip_id
    return out
