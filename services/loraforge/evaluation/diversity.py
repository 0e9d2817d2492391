"""Overfitting / collapse signal: do renders of different prompts and seeds still differ outside
the face?

The source documents' test (002): render the same prompt several times; pose, clothes and
background must change while the face stays. A collapsed (overfit) LoRA reproduces one training
image whatever the prompt. The face itself SHOULD stay the same, so it is masked out first
(every detected face box, enlarged to take hair and chin too) and only the rest is compared.

Per pair of renders we average three cheap, complementary similarities in [0, 1]:
  * perceptual hash (imagehash pHash, 64 bits): layout / low-frequency structure,
    1 - hamming / 64;
  * colour histogram (HSV, 8x4x4 bins over unmasked pixels only): palette / lighting,
    1 - Bhattacharyya distance;
  * a small "embedding": the masked image as a 24x24 grey thumbnail, zero-mean / unit-norm,
    mapped from correlation r in [-1, 1] to (r + 1) / 2: coarse spatial content.
The checkpoint's collapse score is the mean over all pairs. Measured on the test renders (one
person pasted into varied scenes): diverse sets 0.36-0.48, the same picture repeated with
sensor noise 0.96-1.0. Real previews of a healthy LoRA share the base model's style and the
prompt's setting, so they sit higher than synthetic scenes; an overfit LoRA's previews are not
pixel copies either (small changes of pose and detail). COLLAPSE_THRESHOLD = 0.85 leaves room on
both sides; it is a parameter, to be re-calibrated on real preview sets.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import TypedDict

import cv2
import imagehash
import numpy as np

from loraforge.curation.faces import FaceBackend
from loraforge.curation.geometry import Box
from loraforge.evaluation.images import ImageLike, to_bgr_list, to_pil_rgb

COLLAPSE_THRESHOLD = 0.85
# a pair this similar is counted as a near-duplicate in the report (same picture twice)
DUPLICATE_PAIR = 0.95
# face boxes from detectors are tight around brows-to-chin; hair and neck are identity too
FACE_MARGIN = 0.5
THUMB = 24
WORK_SIDE = 256  # everything is compared at this size: renders may differ in resolution


class DiversityFields(TypedDict):
    """A DiversityScore's columns in a checkpoint row (choose.CheckpointRow)."""

    collapse_similarity: float | None
    collapsed: bool
    duplicate_pair_rate: float
    collapse_threshold: float


@dataclass(frozen=True)
class DiversityScore:
    n_renders: int
    mean_pairwise: float | None  # None with fewer than two renders: nothing to compare
    max_pairwise: float | None
    duplicate_pair_rate: float
    collapsed: bool
    threshold: float

    def as_dict(self) -> DiversityFields:
        r = None if self.mean_pairwise is None else round(self.mean_pairwise, 4)
        return {
            "collapse_similarity": r,
            "collapsed": self.collapsed,
            "duplicate_pair_rate": round(self.duplicate_pair_rate, 4),
            "collapse_threshold": self.threshold,
        }


def _masked(img: np.ndarray, boxes: Sequence[Box]) -> tuple[np.ndarray, np.ndarray]:
    """Image resized to WORK_SIDE with face regions filled by the mean colour of the rest (a
    constant grey block would itself look alike across renders), plus the keep-mask."""
    h, w = img.shape[:2]
    keep: np.ndarray = np.ones((h, w), np.uint8)
    for b in boxes:
        m = FACE_MARGIN
        grown = Box(b.x - m * b.w, b.y - m * b.h, b.w * (1 + 2 * m), b.h * (1 + 2 * m))
        x0, y0, x1, y1 = grown.clipped(w, h)
        keep[y0:y1, x0:x1] = 0
    out = img.copy()
    if keep.any() and not keep.all():
        out[keep == 0] = img[keep == 1].mean(0).astype(np.uint8)
    out = cv2.resize(out, (WORK_SIDE, WORK_SIDE), interpolation=cv2.INTER_AREA)
    keep = cv2.resize(keep, (WORK_SIDE, WORK_SIDE), interpolation=cv2.INTER_NEAREST)
    return out, keep


@dataclass(frozen=True)
class _Features:
    phash: imagehash.ImageHash
    hist: np.ndarray
    thumb: np.ndarray


def _features(img: np.ndarray, keep: np.ndarray) -> _Features:
    ph = imagehash.phash(to_pil_rgb(img))
    hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV)
    mask = keep if keep.any() else None
    hist = cv2.calcHist([hsv], [0, 1, 2], mask, [8, 4, 4], [0, 180, 0, 256, 0, 256])
    hist = cv2.normalize(hist, None).flatten()
    g = (
        cv2.resize(
            cv2.cvtColor(img, cv2.COLOR_BGR2GRAY), (THUMB, THUMB), interpolation=cv2.INTER_AREA
        )
        .astype(np.float32)
        .ravel()
    )
    g -= g.mean()
    n = float(np.linalg.norm(g))
    return _Features(ph, hist, g / n if n > 0 else g)


def pair_similarity(a: _Features, b: _Features) -> float:
    s_hash = 1.0 - (a.phash - b.phash) / float(a.phash.hash.size)
    s_hist = 1.0 - float(cv2.compareHist(a.hist, b.hist, cv2.HISTCMP_BHATTACHARYYA))
    # two flat thumbnails (zero vectors) are identical content, not uncorrelated
    if not a.thumb.any() and not b.thumb.any():
        s_thumb = 1.0
    else:
        s_thumb = (float(np.dot(a.thumb, b.thumb)) + 1.0) / 2.0
    return float(np.clip((s_hash + s_hist + s_thumb) / 3.0, 0.0, 1.0))


def score_diversity(
    renders: Sequence[ImageLike],
    face_boxes: Sequence[Sequence[Box]] | None = None,
    backend: FaceBackend | None = None,
    threshold: float = COLLAPSE_THRESHOLD,
) -> DiversityScore:
    """Mean pairwise non-face similarity; ``collapsed`` when it reaches ``threshold``.

    Face boxes come from the identity pass (``IdentityScore.per_render[i].boxes``) to avoid
    detecting twice; without them the backend detects; with neither nothing is masked (fine for
    LoRA types without a person: style, background, lighting).
    """
    imgs = to_bgr_list(renders)
    if face_boxes is not None and len(face_boxes) != len(imgs):
        raise ValueError(f"{len(face_boxes)} face box lists for {len(imgs)} renders")
    if face_boxes is None:
        face_boxes = (
            [[f.box for f in backend.detect(i, embed_largest=False)] for i in imgs]
            if backend is not None
            else [[] for _ in imgs]
        )
    feats = [_features(*_masked(i, b)) for i, b in zip(imgs, face_boxes, strict=True)]
    sims = [pair_similarity(a, b) for a, b in combinations(feats, 2)]
    if not sims:
        return DiversityScore(len(imgs), None, None, 0.0, False, threshold)
    mean = float(np.mean(sims))
    return DiversityScore(
        n_renders=len(imgs),
        mean_pairwise=mean,
        max_pairwise=float(np.max(sims)),
        duplicate_pair_rate=sum(s >= DUPLICATE_PAIR for s in sims) / len(sims),
        collapsed=mean >= threshold,
        threshold=threshold,
    )
