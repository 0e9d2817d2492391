"""Who is in each clip: one embedding per clip, compared with reference photos or, without
references, with the dominant identity among all clips (DBSCAN on the clip embeddings).

Distances are euclidean on L2-normalised embeddings; the cut-off is the face backend's
``same_person_distance`` unless the policy overrides it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.cluster import DBSCAN

from loraforge.curation.errors import InvalidReference
from loraforge.curation.faces import FaceBackend, normalize
from loraforge.curation.frames import load_photo
from loraforge.curation.metrics import ClipMetrics


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
    clips: Sequence[ClipMetrics], threshold: float, reference: np.ndarray | None = None
) -> dict[str, IdentityResult]:
    ids = [c.clip_id for c in clips if c.embedding is not None]
    out = {c.clip_id: IdentityResult(None, None, None) for c in clips}
    if not ids:
        return out
    # sort by id so that DBSCAN sees the same order for the same input (its labels depend on it)
    order = sorted(ids)
    by_id = {c.clip_id: c for c in clips}
    x = np.array([by_id[i].embedding for i in order], np.float32)
    if reference is not None:
        d = np.linalg.norm(x - normalize(reference)[None, :], axis=1)
        for i, dist in zip(order, d, strict=True):
            out[i] = IdentityResult(round(float(dist), 4), bool(dist < threshold), None)
        return out
    labels = DBSCAN(eps=threshold, min_samples=1, metric="euclidean").fit_predict(x)
    sizes: dict[int, int] = {}
    for lab in labels:
        sizes[int(lab)] = sizes.get(int(lab), 0) + 1
    # largest cluster wins; on a tie the one holding the first clip id (labels follow id order)
    dominant = min(sizes, key=lambda lab: (-sizes[lab], lab))
    centre = normalize(x[labels == dominant].mean(0))
    for i, lab, v in zip(order, labels, x, strict=True):
        dist = float(np.linalg.norm(v - centre))
        out[i] = IdentityResult(round(dist, 4), bool(lab == dominant), int(lab))
    return out
