"""Image descriptors and clustering for builders: which frames show the same place (scene
clusters, so one location does not dominate a background set) and which frame is off-style.

No image model ships offline with a licence and size this project can take (CLIP-class
weights would be a download), so both descriptors are measured from the pixels:
- scene: where the colours are (a 4x4 grid of mean Lab colours) and which colours there are
  (a hue/saturation histogram), over the pixels that are not masked (people filled in are not
  the place). Brightness is left mostly out (L weighted down, no value histogram), so the same
  place at another exposure or time of day stays one place.
- style: how the picture is made whatever it shows: posterization (few levels a channel),
  flat regions, edge density and dark outlines.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

DESCRIBE_SIDE = 256  # descriptors are measured on a copy this wide: layout and palette only
# Scene clusters: average-linkage distance between scene descriptors under which frames show
# one place. Measured on skimage's rocket pad, motorcycle room, coffee table and brick wall
# (tests/unit/curation/builders_media.py), each panned by up to 40 px of 480 and lit at
# 0.8-1.3x: the same place 0.03-0.07 apart, two places 0.15-0.27 apart (the room and the
# coffee table, both warm and brown, are the closest pair)
SCENE_DISTANCE = 0.11


def _small(bgr: np.ndarray, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    h, w = bgr.shape[:2]
    f = DESCRIBE_SIDE / w
    size = (DESCRIBE_SIDE, max(1, round(h * f)))
    img = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)
    valid = (
        np.ones(img.shape[:2], bool)
        if mask is None
        else (cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) == 0)
    )
    return img, valid


def scene_descriptor(bgr: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """L2-normalised: 4x4 grid of mean Lab (L at a quarter weight) + 16x4 hue/saturation
    histogram (Hellinger: square roots), both over the pixels outside `mask`."""
    img, valid = _small(bgr, mask)
    lab = cv2.cvtColor(img, cv2.COLOR_BGR2LAB).astype(np.float32)
    h, w = valid.shape
    grid = []
    for gy in range(4):
        for gx in range(4):
            sl = (slice(gy * h // 4, (gy + 1) * h // 4), slice(gx * w // 4, (gx + 1) * w // 4))
            v = valid[sl]
            cell = lab[sl][v] if v.any() else lab[sl].reshape(-1, 3)
            mean = cell.mean(axis=0) / 255.0
            grid.extend([0.25 * mean[0], mean[1], mean[2]])
    hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV)
    hist = cv2.calcHist(
        [hsv], [0, 1], (valid * 255).astype(np.uint8), [16, 4], [0, 180, 0, 256]
    ).ravel()
    hist = np.sqrt(hist / max(1.0, hist.sum()))
    v = np.concatenate([np.asarray(grid, np.float32) * 2.0, hist.astype(np.float32)])
    return v / max(1e-9, float(np.linalg.norm(v)))


def style_descriptor(bgr: np.ndarray) -> np.ndarray:
    """Raw style features (`outliers` standardises them over the set): how the picture is
    made, apart from what it shows.
    0 posterization: share of pixels in the 4 fullest of 32 levels, per channel (flat colour
       fills, cel shading, heavy grades are few levels)
    1 flat: share of pixels whose 3x3 neighbourhood varies by under 2 grey levels
    2 edges: Canny edge density;  3 ink: share of near-black pixels on edges (outlines)
    Palette, saturation, warmth and contrast were measured too and left out: on the test set
    (six graded photos) they moved with the content (the rocket's night sky, the coffee's
    reds) as far as the untreated photo did. Limit: a look that is only a colour grade
    (teal-orange on natural footage) is not told apart by these."""
    img, _ = _small(bgr, None)
    poster = float(
        np.mean(
            [
                np.sort(np.bincount((img[..., c] >> 3).ravel(), minlength=32))[-4:].sum()
                / img[..., c].size
                for c in range(3)
            ]
        )
    )
    gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    g = gray.astype(np.float32)
    mean = cv2.blur(g, (3, 3))
    flat = float((cv2.blur(g * g, (3, 3)) - mean * mean < 4.0).mean())
    edges = cv2.Canny(gray, 80, 160) > 0
    ink = float((edges & (gray < 40)).mean())
    return np.array([poster, flat, float(edges.mean()), ink], np.float32)


def scene_clusters(
    descriptors: Sequence[np.ndarray], distance: float = SCENE_DISTANCE
) -> list[int]:
    """Cluster label per descriptor (0 = the largest cluster; ties: the first item's). Average
    linkage: a place is frames that are close on average, not a chain of small steps."""
    n = len(descriptors)
    if n == 0:
        return []
    if n == 1:
        return [0]
    from sklearn.cluster import AgglomerativeClustering

    x = np.stack(descriptors)
    raw = AgglomerativeClustering(
        n_clusters=None, distance_threshold=distance, linkage="average", metric="euclidean"
    ).fit_predict(x)
    return _relabel(raw)


def _relabel(raw: Sequence[int]) -> list[int]:
    """Largest cluster first, ties by first appearance; noise (-1) stays -1."""
    sizes: dict[int, int] = {}
    first: dict[int, int] = {}
    for i, lab in enumerate(raw):
        lab = int(lab)
        if lab < 0:
            continue
        sizes[lab] = sizes.get(lab, 0) + 1
        first.setdefault(lab, i)
    order = sorted(sizes, key=lambda lab: (-sizes[lab], first[lab]))
    new = {lab: i for i, lab in enumerate(order)}
    return [new.get(int(lab), -1) for lab in raw]


def balanced_pick(
    labels: Sequence[int], scores: Sequence[float], limit: int, max_fraction: float
) -> list[int]:
    """Indices to keep: round-robin over clusters (best score first inside each), at most
    ceil(max_fraction * kept) from one cluster, up to `limit`; once every cluster with items
    left is at its cap the set stops growing. A single cluster is taken whole. Returns the
    picked indices in pick order."""
    groups: dict[int, list[int]] = {}
    for i, lab in enumerate(labels):
        groups.setdefault(int(lab), []).append(i)
    for g in groups.values():
        g.sort(key=lambda i: (-scores[i], i))
    if len(groups) == 1:  # one place: nothing to balance against (the report says so)
        return groups[next(iter(groups))][:limit]
    picked: list[int] = []
    taken: dict[int, int] = dict.fromkeys(groups, 0)
    while len(picked) < limit and any(groups.values()):
        progressed = False
        for lab in sorted(groups, key=lambda lab: (taken[lab], lab)):
            if not groups[lab] or len(picked) >= limit:
                continue
            cap = max(1, int(np.ceil(max_fraction * (len(picked) + 1))))
            if taken[lab] + 1 > cap:
                continue
            picked.append(groups[lab].pop(0))
            taken[lab] += 1
            progressed = True
        if not progressed:
            # every cluster with items left is at its cap: the cap is a share, so the set can
            # only grow by exceeding it; stop rather than let one place dominate
            break
    return picked


def outliers(features: Sequence[np.ndarray], z: float) -> tuple[list[bool], list[float]]:
    """(is_outlier, distance) per item. Each feature is standardised by the set's median and
    MAD (robust standard deviation); an item's distance is its largest standardised deviation,
    so one aspect of the look far off (a natural photo among posterized frames) is enough,
    while content that moves several features a little (a night scene in a day set) is not.
    The MAD is floored at 0.02 + 10 % of the median: a feature on which the set barely
    varies must not turn encoding noise into outliers. Fewer than 4 items: no outliers (a
    'set' of three has no majority look to depart from)."""
    n = len(features)
    if n < 4:
        return [False] * n, [0.0] * n
    x = np.stack(features).astype(np.float64)
    med = np.median(x, axis=0)
    mad = np.median(np.abs(x - med), axis=0) * 1.4826
    scale = np.maximum(mad, 0.02 + 0.1 * np.abs(med))
    d = np.abs((x - med) / scale).max(axis=1)
    return [bool(v > z) for v in d], [round(float(v), 4) for v in d]
