"""Near-duplicate groups: same shot re-cut, re-encoded, slightly cropped or re-scaled.

Two items are near-copies when their perceptual hashes are close (the picture looks the same)
AND, when both have a face embedding, the faces are nearly identical too (same person is not
enough: that is the backend's much looser same-person distance). Groups are joined closest
pair first (union find), hold at most one item a source, and keep their best item by quality
score, ties broken by id for determinism.

Items of one source are never near-copies of each other: ingest cuts a source into clips that
do not overlap, so they are different moments, even where a locked-off shot makes them look
alike (a 20 s interview on a still camera, cut into 5 clips: pHash and face both matched, and
4 of them were rejected as copies of the fifth). Copies come from different uploads: the same
footage again, re-encoded, re-cut or cropped; a zip's photos are each a source of their own.
Spreading the set over sources and moments is the selection's work, not dedup's.
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
    """clip_id -> id of the kept clip of its group, for every clip that lost to a near-copy.

    Pairs are joined closest first (pHash distance, then face distance), and only while their
    groups share no source: a group holds one clip a source, so the same take uploaded twice
    pairs each moment with its copy and does not chain every moment of the take into one
    group through the other upload."""
    items = sorted(clips, key=lambda c: c.clip_id)
    parent = {c.clip_id: c.clip_id for c in items}
    sources = {c.clip_id: {c.source_id} for c in items}

    def find(i: str) -> str:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    pairs: list[tuple[int, float, str, str]] = []
    for i, a in enumerate(items):
        for b in items[i + 1 :]:
            if a.source_id == b.source_id:
                continue
            ph = phash_distance(a.phashes, b.phashes)
            if ph > max_phash:
                continue
            d = 0.0
            if a.embedding is not None and b.embedding is not None:
                d = float(np.linalg.norm(np.asarray(a.embedding) - np.asarray(b.embedding)))
                if d > max_embedding_distance:
                    continue
            pairs.append((ph, d, a.clip_id, b.clip_id))
    for _, _, a_id, b_id in sorted(pairs):
        ra, rb = find(a_id), find(b_id)
        if ra != rb and not sources[ra] & sources[rb]:
            parent[rb] = ra
            sources[ra] |= sources.pop(rb)
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
