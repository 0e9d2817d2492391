"""Near-duplicate groups: same shot re-cut, re-encoded, slightly cropped or re-scaled.

Two items are near-copies when their perceptual hashes are close (the picture looks the same)
AND, when both have a face embedding, the faces are nearly identical too (same person is not
enough: that is the backend's much looser same-person distance). Groups are joined closest
pair first (union find), hold at most one item a source, and keep their best item by quality
score, ties broken by id for determinism.

Looking alike is not enough between videos: the same person filmed the same way in two
uploads (a phone on a tripod, a series of short takes in one room) looks alike too, and those
are different moments. Two clips are copies only where they share footage: at some alignment
in time, the frame-to-frame changes of their motion signatures (ingest/proxy.signature_rows:
every frame as an 8x8 grid of mean greys) agree (``shared_footage``). A re-encode, re-scale,
slight crop or re-cut keeps those changes; another moment does not, however alike its
frames. Where neither clip moves enough to tell (a still shot), and for photos (burst shots),
looking alike decides.

Items of one source are never near-copies of each other: ingest cuts a source into clips that
do not overlap, so they are different moments, even where a locked-off shot makes them look
alike (a 20 s interview on a still camera, cut into 5 clips: pHash and face both matched, and
4 of them were rejected as copies of the fifth). Copies come from different uploads: the same
footage again, re-encoded, re-cut or cropped; a zip's photos are each a source of their own.
Spreading the set over sources and moments is the selection's work, not dedup's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import imagehash
import numpy as np

from loraforge.curation.metrics import ClipMetrics
from loraforge.ingest.proxy import signature_means

# shared_footage: two videos share footage where, at their best alignment in time (in quarter
# frames), the frame-to-frame changes of their grid cells (less the frame's mean change: fades,
# _local_changes) correlate at least SHARED_MIN_CHANGE over SHARED_MIN_S and SHARED_MIN_SHARE
# of the shorter clip (or all of it), or at least PARTIAL_MIN_CHANGE over SHARED_MIN_S and
# PARTIAL_MIN_SHARE of it (a trimmed re-upload of a long take: ingest splits it into ~4 s clips
# elsewhere, so its clips straddle the first upload's). Set on clips ingest cut from 24 fps
# footage, signatures at the source's rate (tests/unit/curation/test_dedup.py): copies
# overlapping whole (re-scaled, graded, cropped, grain added, heavily compressed, trimmed at
# any frame, converted to 25 or 30 fps) scored 0.87-0.99, the same motion rendered again at
# other instants 0.84-0.88, the straddling clips of a trimmed long take up to 0.99. The worst
# case for the other side is a person swaying a few pixels in front of a locked-off camera: a
# rigid, smooth motion whose velocity two moments can share for a while. Other moments of it
# (91 pairs of 1.5-6 s clips a length, at 24 and 30 fps) reached 0.71 over three quarters of
# the shorter clip and 0.80 over half of it; at a 16 fps clip's rate (curation decoding a clip
# that has no proxy) 0.78 and 0.83. (The changes of the changes told those moments apart
# better, but a cropped copy of a steady pan scored 0.40 on them: under a constant motion they
# are noise.)
SHARED_MIN_S = 2.0
SHARED_MIN_SHARE = 0.75
SHARED_MIN_CHANGE = 0.8
PARTIAL_MIN_SHARE = 0.5
PARTIAL_MIN_CHANGE = 0.9
# A clip tells footage only when its picture moves: by at least MIN_MOTION grey levels of a
# cell (mean, less the frame's mean change) over MOTION_LAG_S. Over a lag, motion adds up and
# per-frame noise does not: a still shot's film grain (sigma 6) read 0.08-0.10 at 24 and 60
# fps, a clean or re-encoded still 0.002-0.03, a person swaying by 1-2 px 0.22-0.27 (per frame
# she moved 0.09 and 0.04, under the grain). A copy keeps its original's grain, but a re-encode
# can smooth it away; under the bar, looks decide, as for photos.
MOTION_LAG_S = 0.125
MIN_MOTION = 0.15


def phash_distance(a: Sequence[str], b: Sequence[str]) -> int:
    """Closest pair of keyframe hashes: clips that share a moment are duplicates there."""
    if not a or not b:
        return 64
    ha = [imagehash.hex_to_hash(h) for h in a]
    hb = [imagehash.hex_to_hash(h) for h in b]
    return min(x - y for x in ha for y in hb)


def _means(signature: bytes, fps: float, rate: float) -> np.ndarray:
    """The signature's cell means, resampled to ``rate`` frames a second."""
    rows = signature_means(signature)
    if abs(fps - rate) > 1e-3 and len(rows) > 1:
        src = np.arange(len(rows)) / fps
        dst = np.arange(0.0, src[-1] + 1e-9, 1.0 / rate)
        rows = np.stack([np.interp(dst, src, col) for col in rows.T], 1)
    return rows


def _local_changes(means: np.ndarray) -> np.ndarray:
    """Frame-to-frame change of each cell less the frame's mean change: a fade, a light going
    on or a camera's exposure moves every cell at once, and two different clips that both
    fade in would correlate on that alone."""
    d = np.diff(means, axis=0)
    local: np.ndarray = d - d.mean(axis=1, keepdims=True)
    return local


def _motion(means: np.ndarray, rate: float) -> float:
    """Mean change of a cell over MOTION_LAG_S, less the frame's mean change."""
    lag = max(1, round(MOTION_LAG_S * rate))
    if len(means) <= lag:
        return 0.0
    d = means[lag:] - means[:-lag]
    return float(np.abs(d - d.mean(axis=1, keepdims=True)).mean())


def _delayed(means: np.ndarray, delay: float) -> np.ndarray:
    """The cell means ``delay`` of a frame later (0 <= delay < 1), between frames by linear
    interpolation; one frame shorter unless the delay is 0."""
    if delay == 0:
        return means
    shifted: np.ndarray = (1 - delay) * means[:-1] + delay * means[1:]
    return shifted


def _correlations(da: np.ndarray, db: np.ndarray, need: int) -> tuple[np.ndarray, np.ndarray]:
    """Pearson correlation of da[i] with db[i - o], and the overlap in frames, for every offset
    o at which they overlap by at least ``need`` frames; all offsets at once: the products
    through one FFT cross-correlation, the window sums through cumulative sums."""
    na, nb, cells = len(da), len(db), da.shape[1]
    size = na + nb
    spectrum = (np.fft.rfft(da, size, axis=0) * np.conj(np.fft.rfft(db, size, axis=0))).sum(1)
    products = np.fft.irfft(spectrum, size)  # products[o % size] = sum_j da[j + o] . db[j]
    offsets = np.arange(need - nb, na - need + 1)
    lo, hi = np.maximum(0, offsets), np.minimum(na, nb + offsets)

    def window(rows: np.ndarray, start: np.ndarray, stop: np.ndarray) -> tuple[np.ndarray, ...]:
        sums = np.concatenate([[0.0], np.cumsum(rows.sum(1))])
        squares = np.concatenate([[0.0], np.cumsum((rows * rows).sum(1))])
        return sums[stop] - sums[start], squares[stop] - squares[start]

    sa, qa = window(da, lo, hi)
    sb, qb = window(db, lo - offsets, hi - offsets)
    n = (hi - lo) * cells
    cov = products[offsets % size] - sa * sb / n
    var = np.maximum(qa - sa * sa / n, 0) * np.maximum(qb - sb * sb / n, 0)
    corr = np.where(var > 0, cov / np.sqrt(np.where(var > 0, var, 1.0)), 0.0)
    return corr, hi - lo


def footage_match(a: bytes, a_fps: float, b: bytes, b_fps: float) -> tuple[float, float] | None:
    """How well two signatures' frame-to-frame changes agree at their best alignment in time
    (Pearson correlation), over alignments that overlap by SHARED_MIN_S and SHARED_MIN_SHARE of
    the shorter clip (or all of it), and over those that overlap by SHARED_MIN_S and
    PARTIAL_MIN_SHARE; in quarter frames (two uploads cut at other moments sample the motion
    at other instants, by up to half a frame). None where either hardly changes (MIN_MOTION)
    or is too short to tell."""
    if not all(math.isfinite(r) and r > 0 for r in (a_fps, b_fps)):
        return None
    rate = max(a_fps, b_fps)
    mb = _means(b, b_fps, rate)
    da, db = _local_changes(_means(a, a_fps, rate)), _local_changes(mb)
    if min(len(da), len(db)) < 3:
        return None
    if min(_motion(_means(a, a_fps, rate), rate), _motion(mb, rate)) < MIN_MOTION:
        return None
    shorter = min(len(da), len(db)) - 1  # a delayed copy is a frame shorter

    def frames(share: float) -> int:
        return min(shorter, max(round(SHARED_MIN_S * rate), round(share * shorter)))

    whole, partial = -1.0, -1.0
    for delay in (0.0, 0.25, 0.5, 0.75):
        db = _local_changes(_delayed(mb, delay))
        corr, overlap = _correlations(da, db, frames(PARTIAL_MIN_SHARE))
        if len(corr):
            partial = max(partial, float(corr.max()))
            long_enough = overlap >= frames(SHARED_MIN_SHARE)
            if long_enough.any():
                whole = max(whole, float(corr[long_enough].max()))
    return whole, partial


def shared_footage(a: ClipMetrics, b: ClipMetrics) -> bool | None:
    """Whether two videos hold the same footage somewhere (a copy, a re-cut: True) or are
    different moments (False); None where it cannot be told: a photo, a clip without a
    signature, or one whose picture hardly changes."""
    if a.signature is None or b.signature is None:
        return None
    match = footage_match(
        a.signature, a.signature_fps or a.fps, b.signature, b.signature_fps or b.fps
    )
    if match is None:
        return None
    whole, partial = match
    return whole >= SHARED_MIN_CHANGE or partial >= PARTIAL_MIN_CHANGE


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
            if shared_footage(a, b) is False:
                continue  # alike, but another moment: filmed the same way, not a copy
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
