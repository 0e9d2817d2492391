"""Who is in each clip: one embedding per clip, compared with reference photos or, without
references, with an identity cluster among all clips (HDBSCAN on the clip embeddings: the
largest, or the one the user picks by its number, policy.identity_cluster).

Distances are euclidean on L2-normalised embeddings; the cut-off is the face backend's
``same_person_distance`` unless the policy overrides it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from loraforge.curation.errors import InvalidReference
from loraforge.curation.faces import FaceBackend, normalize
from loraforge.curation.frames import load_photo
from loraforge.curation.metrics import ClipMetrics
from loraforge.runtime.errors import InvalidInput


@dataclass(frozen=True)
class IdentityResult:
    distance: float | None  # to the references' mean, or to the dominant cluster's centre
    match: bool | None  # None: no face embedding in this clip
    cluster: int | None


def reference_embedding(paths: Sequence[Path], backend: FaceBackend) -> np.ndarray:
    """Mean embedding of the largest face in each reference photo."""
    embs = []
    for p in paths:
        faces = backend.detect(load_photo(Path(p)).frames[0].image, embed_largest=True)
        if not faces or faces[0].embedding is None:
            raise InvalidReference(
                f"{Path(p).name}: no face found in this reference photo; use a clear, frontal, "
                "well lit photo of the person"
            )
        embs.append(faces[0].embedding)
    if not embs:
        raise InvalidReference("no reference photos given")
    return normalize(np.mean(embs, axis=0))


def assign(
    clips: Sequence[ClipMetrics],
    threshold: float,
    reference: np.ndarray | None = None,
    cluster: int | None = None,
) -> dict[str, IdentityResult]:
    """Each clip's identity cluster, distance and match.

    Clusters: HDBSCAN on the clips' face embeddings across all sources, numbered by size
    (0 the largest; ties: the one holding the first clip id); a clip no cluster takes is noise
    (cluster None). Which identity the dataset is of: the reference photos' (distance to their
    mean under `threshold`), else cluster `cluster` (the user's pick, after seeing the report's
    clusters), else the one with the most clips that show one person (``_solo_choice``). A
    noise clip matches the chosen cluster when its distance to the cluster's centre is under
    `threshold`.
    """
    if reference is not None and cluster is not None:
        raise InvalidInput(
            "give reference photos or an identity cluster, not both: the references "
            "already say who the dataset is of"
        )
    ids = [c.clip_id for c in clips if c.embedding is not None]
    out = {c.clip_id: IdentityResult(None, None, None) for c in clips}
    if not ids:
        if cluster is not None:
            raise InvalidInput(
                f"identity cluster {cluster} was asked for, but no clip shows a face "
                "that could be embedded"
            )
        return out
    # sort by id so that the clustering sees the same order for the same input
    order = sorted(ids)
    by_id = {c.clip_id: c for c in clips}
    x = np.array([by_id[i].embedding for i in order], np.float32)
    labels = clusters(x, threshold)
    if reference is not None:
        d = np.linalg.norm(x - normalize(reference)[None, :], axis=1)
        for i, dist, lab in zip(order, d, labels, strict=True):
            out[i] = IdentityResult(
                round(float(dist), 4), bool(dist < threshold), None if lab < 0 else int(lab)
            )
        return out
    found = sorted({int(lab) for lab in labels if lab >= 0})
    if cluster is not None and cluster not in found:
        sizes = ", ".join(f"{lab}: {int((labels == lab).sum())} clips" for lab in found) or "none"
        raise InvalidInput(
            f"identity cluster {cluster} does not exist; the clips form clusters {sizes} "
            "(the curation report lists them); pick one of those or give a reference photo"
        )
    chosen = cluster if cluster is not None else _solo_choice(order, labels, found, by_id)
    # chosen None: every face is noise (one clip each), the first clip's face leads
    centre = normalize(x[0]) if chosen is None else normalize(x[labels == chosen].mean(0))
    for i, lab, v in zip(order, labels, x, strict=True):
        dist = float(np.linalg.norm(v - centre))
        match = bool(lab == chosen) if lab >= 0 else dist < threshold
        out[i] = IdentityResult(round(dist, 4), match, None if lab < 0 else int(lab))
    return out


def _solo_choice(
    order: Sequence[str], labels: np.ndarray, found: Sequence[int], by_id: dict[str, ClipMetrics]
) -> int | None:
    """The cluster with the most clips where its face is the only person (ties, or no such
    clip: the larger cluster). A group shot's largest face says nothing about whom the dataset
    is of: counted, three crowd shots made the person of two solo clips outvote the one filmed
    alone in four (bench/curation.py's footage)."""
    if not found:
        return None
    votes = dict.fromkeys(found, 0)
    for i, lab in zip(order, labels, strict=True):
        if lab >= 0 and by_id[i].people_count <= 1:
            votes[int(lab)] += 1
    return max(found, key=lambda lab: (votes[lab], -lab))


@cache
def hdbscan_class() -> Any:  # sklearn.cluster.HDBSCAN (the type, for a preload to call)
    """scikit-learn's HDBSCAN. Importing scikit-learn costs ~0.9 s, which a command that never
    clusters should not pay, so it is imported here on first use; a curation service calls
    this at start (CurationWorker.preload), so its first job does not pay it either."""
    from sklearn.cluster import HDBSCAN

    return HDBSCAN


def clusters(x: np.ndarray, threshold: float) -> np.ndarray:
    """Identity cluster per embedding (-1: noise), 0 the largest cluster.

    HDBSCAN (min_cluster_size 2, min_samples 1: two clips of a face make an identity) finds
    clusters of any density, so a person filmed often in one place does not swallow a person
    seen in a few clips, which a single DBSCAN radius would chain together through look-alike
    frames. Clusters closer than half the backend's same-person distance are then merged, and
    a clip left as noise within that distance of a cluster joins it: one person under
    different light stays one cluster. Fewer than 3 embeddings: the same-person distance
    decides directly.

    The merge is done here, not by HDBSCAN's ``cluster_selection_epsilon``: with NumPy 2.x,
    scikit-learn 1.9's epsilon search raises TypeError ("only 0-dimensional arrays can be
    converted to Python scalars", scikit-learn issue 33219) on nested clusters and tied
    distances, which clips of one take cut in several (near-identical faces) inside a
    person's cluster are; it did on 138 of 300 such random sets. On the sets it survived,
    this gives the same clusters (280 of 281)."""
    n = len(x)
    if n < 3:
        if n == 2 and float(np.linalg.norm(x[0] - x[1])) < threshold:
            return np.array([0, 0])
        return np.array([0] * n) if n == 1 else np.array([0, 1])
    raw = hdbscan_class()(
        min_cluster_size=2, min_samples=1, allow_single_cluster=True, metric="euclidean", copy=True
    ).fit_predict(x)
    eps = 0.5 * threshold
    sq = np.einsum("ij,ij->i", x, x)
    dist = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2.0 * (x @ x.T), 0.0))
    labels = sorted({int(lab) for lab in raw if lab >= 0})
    parent = {lab: lab for lab in labels}

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for k, a in enumerate(labels):
        for b in labels[k + 1 :]:
            if dist[np.ix_(raw == a, raw == b)].min() < eps:
                parent[find(b)] = find(a)
    merged = np.array([find(int(lab)) if lab >= 0 else -1 for lab in raw])
    members = np.flatnonzero(merged >= 0)
    if members.size:
        for p in np.flatnonzero(merged < 0):
            q = members[np.argmin(dist[p, members])]
            if dist[p, q] < eps:
                merged[p] = merged[q]
    sizes: dict[int, int] = {}
    first: dict[int, int] = {}
    for i, lab in enumerate(merged):
        if lab >= 0:
            sizes[int(lab)] = sizes.get(int(lab), 0) + 1
            first.setdefault(int(lab), i)
    rank = {
        lab: k for k, lab in enumerate(sorted(sizes, key=lambda lab: (-sizes[lab], first[lab])))
    }
    return np.array([rank.get(int(lab), -1) for lab in merged])
