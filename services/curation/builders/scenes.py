"""Image descriptors and clustering for builders: which frames show the same place (scene
clusters, so one location does not dominate a background set) and which frame is off-style.

No image model ships offline with a licence and size this project can take (CLIP-class
weights would be a download), so both descriptors are measured from the pixels:
- scene: where the colours are (a 4x4 grid of mean Lab colours) and which colours there are
  (a hue/saturation histogram), over the pixels that are not masked (people filled in are not
  the place). Brightness is left mostly out (L weighted down, no value histogram), so the same
  place at another exposure or time of day stays one place.
- style: how the picture looks whatever it shows: saturation, value and saturation-weighted hue
  distributions, colourfulness, edge density, the number of distinct colours (posterized,
  cel-shaded looks have few) and the local contrast.
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
    valid = np.ones(img.shape[:2], bool) if mask is None else (
        cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) == 0)
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
    hist = cv2.calcHist([hsv], [0, 1], (valid * 255).astype(np.uint8), [16, 4], [0, 180, 0, 256]).ravel()
    hist = np.sqrt(hist / max(1.0, hist.sum()))
    v = np.concatenate([np.asarray(grid, np.float32) * 2.0, hist.astype(np.float32)])
    return v / max(1e-9, float(np.linalg.norm(v)))


def style_descriptor(bgr: np.ndarray) -> np.ndarray:
    """Raw style features (not normalised: `outliers` standardises them over the set)."""
    img, _ = _small(bgr, None)
    hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV)
    s, v = hsv[..., 1].astype(np.float32), hsv[..., 2].astype(np.float32)
    s_hist = np.histogram(s, bins=6, range=(0, 256))[0] / s.size
    v_hist = np.histogram(v, bins=6, range=(0, 256))[0] / v.size
    hue = np.histogram(hsv[..., 0], bins=6, range=(0, 180), weights=s / 255.0)[0] / s.size
    b, g, r = (img[..., i].astype(np.float32) for i in range(3))
    rg, yb = r - g, 0.5 * (r + g) - b
    colourful = (np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean())) / 100.0
    gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    edges = cv2.Canny(gray, 80, 160).mean() / 255.0
    q = (img >> 3).astype(np.int32)
    distinct = np.log(len(np.unique(q[..., 0] * 1024 + q[..., 1] * 32 + q[..., 2])) + 1) / np.log(32768)
    local = cv2.GaussianBlur(gray.astype(np.float32), (0, 0), 3)
    contrast = float(np.abs(gray.astype(np.float32) - local).mean() / 32.0)
    return np.concatenate([s_hist, v_hist, hue, [colourful, edges, distinct, contrast]]).astype(np.float32)


def scene_clusters(descriptors: Sequence[np.ndarray], distance: float = SCENE_DISTANCE) -> list[int]:
    """Cluster label per descriptor (0 = the largest cluster; ties: the first item's). Average
    linkage: a place is frames that are close on average, not a chain of small steps."""
    n = len(descriptors)
    if n == 0:
        return []
    if n == 1:
        return [0]
    from sklearn.cluster import AgglomerativeClustering

    x = np.stack(descriptors)
    raw = AgglomerativeClustering(n_clusters=None, distance_threshold=distance, linkage="average",
                                  metric="euclidean").fit_predict(x)
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


def balanced_pick(labels: Sequence[int], scores: Sequence[float], limit: int, max_fraction: float) -> list[int]:
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
    """(is_outlier, distance) per item: features standardised by the set's median and MAD per
    dimension, distance to the median vector, an outlier when its distance exceeds the median
    distance by more than `z` MADs of the distances. Fewer than 4 items: no outliers (a
    'set' of three has no majority look to depart from)."""
    n = len(features)
    if n < 4:
        return [False] * n, [0.0] * n
    x = np.stack(features).astype(np.float64)
    med = np.median(x, axis=0)
    mad = np.median(np.abs(x - med), axis=0) * 1.4826
    # dimensions that barely vary in the set still count, scaled by a floor
    scale = np.maximum(mad, 0.02 + 0.1 * np.abs(med))
    d = np.linalg.norm((x - med) / scale, axis=1) / np.sqrt(x.shape[1])
    dmed = float(np.median(d))
    dmad = float(np.median(np.abs(d - dmed))) * 1.4826
    cut = dmed + z * max(dmad, 0.25 * dmed, 1e-6)
    return [bool(v > cut) for v in d], [round(float(v), 4) for v in d]
