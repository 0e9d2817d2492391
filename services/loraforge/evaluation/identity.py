"""Identity score of a checkpoint: does the person in its preview renders look like the target?

We reuse the curation face backends (dlib offline by default, insightface where provisioned) so
that "same person" means the same at dataset-building time and at evaluation time.

Similarity mapping (documented once, used everywhere): the backends compare L2-normalised
embeddings by euclidean distance ``d`` in [0, 2] and each states ``t = same_person_distance``
(dlib 0.42, insightface 1.095). We map

    similarity = clip(1 - d / (2 t), 0, 1)

so 1.0 is an identical embedding, 0.5 sits exactly on the backend's same-person threshold (above
0.5 = the backend would call it the same person) and 0.0 is twice the threshold or further. The
mapping is linear in the distance, so means and percentiles of similarities keep the order of
the underlying distances, and it is comparable across backends at the one point that matters.

A render is compared with the normalised mean (centroid) of the reference embeddings, as curation
does: the centroid of several frontal references is steadier than any single photo, and a
max-over-references rule would reward a checkpoint that memorised one training image.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

import numpy as np

from loraforge.curation.errors import InvalidReference
from loraforge.curation.faces import FaceBackend, normalize
from loraforge.curation.geometry import Box
from loraforge.curation.pose import estimate_pose
from loraforge.evaluation.images import ImageLike, to_bgr, to_bgr_list

# the low percentile reported next to the mean: a checkpoint whose worst renders drift to
# another face is worse than its mean says, and p10 of 8-16 previews is the 1-2 worst ones
LOW_PERCENTILE = 10.0
# how far from frontal a reference may be and still rank as "frontal" (curation's bucket uses 15)
_BUCKET_ANGLE = {
    "frontal": 0.0,
    "three_quarter": 30.0,
    "above": 30.0,
    "below": 30.0,
    "profile_left": 90.0,
    "profile_right": 90.0,
}


def similarity_from_distance(distance: float, same_person_distance: float) -> float:
    """The documented mapping above: 0.5 on the backend's same-person threshold."""
    return float(np.clip(1.0 - distance / (2.0 * same_person_distance), 0.0, 1.0))


@dataclass(frozen=True)
class ReferenceFaces:
    centroid: np.ndarray  # L2-normalised mean embedding
    embeddings: np.ndarray  # (n, d), one per used reference image
    sources: tuple[str, ...]  # which images were used, best (most frontal) first
    backend: str


def _pose_angle(
    meta: Mapping[str, Any] | None, landmarks: np.ndarray | None, w: int, h: int
) -> float:
    """How far from frontal a reference is: metadata first (curation's manifest already knows
    yaw/pitch or the bucket), else estimated from the detected landmarks, else "unknown" (45)."""
    if meta:
        if "yaw" in meta and meta.get("yaw") is not None:
            return abs(float(meta["yaw"])) + abs(float(meta.get("pitch") or 0.0))
        b = meta.get("bucket") or meta.get("pose_bucket")
        if b in _BUCKET_ANGLE:
            return _BUCKET_ANGLE[b]
    if landmarks is not None:
        p = estimate_pose(landmarks, w, h)
        if p is not None:
            return abs(p.yaw) + abs(p.pitch)
    return 45.0


def build_references(
    images: Sequence[ImageLike],
    backend: FaceBackend,
    poses: Sequence[Mapping[str, Any] | None] | None = None,
    max_refs: int | None = None,
) -> ReferenceFaces:
    """Reference embeddings from user photos, or from the curated dataset's best frontal faces.

    ``poses`` is optional per-image metadata (``yaw``/``pitch`` in degrees or a curation
    ``bucket``). Images are ranked most-frontal first (larger face breaks ties: more pixels, a
    better embedding) and the first ``max_refs`` with a face are used; images without a face
    are skipped, and none at all is an error because nothing could be scored.
    """
    if poses is not None and len(poses) != len(images):
        raise InvalidReference(
            f"{len(poses)} pose entries for {len(images)} reference images; "
            "give one entry (or None) per image"
        )
    # (pose angle, -face area, index, name, embedding): the most frontal, largest face first
    cands: list[tuple[float, float, int, str, np.ndarray]] = []
    for i, src in enumerate(images):
        img = to_bgr(src)
        faces = backend.detect(img, embed_largest=True)
        if not faces:
            continue
        f = faces[0]
        if f.embedding is None:
            continue
        h, w = img.shape[:2]
        angle = _pose_angle(poses[i] if poses else None, f.landmarks, w, h)
        name = str(src) if isinstance(src, (str, Path)) else f"image[{i}]"
        cands.append((angle, -f.box.area, i, name, f.embedding))
    if not cands:
        raise InvalidReference(
            "no face found in any reference image; give clear, frontal, well "
            "lit photos of the person"
        )
    cands.sort(key=lambda c: (round(c[0], 3), c[1], c[2]))
    used = cands[: max_refs or len(cands)]
    embs = np.stack([normalize(c[4]) for c in used])
    return ReferenceFaces(normalize(embs.mean(0)), embs, tuple(c[3] for c in used), backend.name)


@dataclass(frozen=True)
class RenderFace:
    found: bool
    distance: float | None  # euclidean, normalised embeddings, to the reference centroid
    similarity: float | None
    boxes: tuple[Box, ...] = ()  # every face found (the diversity score masks them all)


class IdentityFields(TypedDict):
    """An IdentityScore's columns in a checkpoint row (choose.CheckpointRow)."""

    n_renders: int
    n_faces: int
    face_rate: float
    identity_mean: float | None
    identity_p10: float | None
    match_rate: float


@dataclass(frozen=True)
class IdentityScore:
    n_renders: int
    n_faces: int
    face_rate: float  # share of renders where a face was found at all
    mean: float | None  # over renders with a face; None when no face was found anywhere
    p10: float | None
    match_rate: float  # share of ALL renders whose face is within the same-person threshold
    per_render: list[RenderFace] = field(default_factory=list)

    def as_dict(self) -> IdentityFields:
        return {
            "n_renders": self.n_renders,
            "n_faces": self.n_faces,
            "face_rate": round(self.face_rate, 4),
            "identity_mean": None if self.mean is None else round(self.mean, 4),
            "identity_p10": None if self.p10 is None else round(self.p10, 4),
            "match_rate": round(self.match_rate, 4),
        }


def score_identity(
    renders: Sequence[ImageLike], references: ReferenceFaces, backend: FaceBackend
) -> IdentityScore:
    """Largest face of each render against the reference centroid (see module docstring)."""
    if references.backend != backend.name:
        # embeddings of different models live in different spaces; comparing them is noise
        raise InvalidReference(
            f"references were embedded with {references.backend!r} but the "
            f"renders with {backend.name!r}; rebuild the references"
        )
    imgs = to_bgr_list(renders)
    t = backend.same_person_distance
    per: list[RenderFace] = []
    for img in imgs:
        faces = backend.detect(img, embed_largest=True)
        boxes = tuple(f.box for f in faces)
        if not faces or faces[0].embedding is None:
            per.append(RenderFace(False, None, None, boxes))
            continue
        d = float(np.linalg.norm(normalize(faces[0].embedding) - references.centroid))
        per.append(RenderFace(True, d, similarity_from_distance(d, t), boxes))
    sims = np.array([r.similarity for r in per if r.found], np.float64)
    n = len(per)
    return IdentityScore(
        n_renders=n,
        n_faces=len(sims),
        face_rate=len(sims) / n,
        mean=float(sims.mean()) if len(sims) else None,
        p10=float(np.percentile(sims, LOW_PERCENTILE)) if len(sims) else None,
        match_rate=sum(1 for r in per if r.distance is not None and r.distance < t) / n,
        per_render=per,
    )
