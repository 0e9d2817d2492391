"""The face backend interface: detection, 68 landmarks and an identity embedding per face.

Embeddings are always returned L2-normalised so that every backend compares with the same
euclidean distance; each backend states the distance below which two faces are the same person
(and below which two shots are near-copies), because those numbers are model-specific.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from loraforge.curation.errors import BackendUnavailable
from loraforge.curation.geometry import Box


@dataclass(frozen=True)
class DetectedFace:
    box: Box  # in full-resolution frame pixels
    score: float
    landmarks: np.ndarray | None  # (68, 2) float32, iBUG 300-W order, frame pixels
    embedding: np.ndarray | None  # L2-normalised; only computed for the largest face


@runtime_checkable
class FaceBackend(Protocol):
    name: str
    # euclidean distance between L2-normalised embeddings
    same_person_distance: float
    duplicate_distance: float

    def detect(self, image_bgr: np.ndarray, embed_largest: bool = True) -> list[DetectedFace]:
        """Faces in the frame, largest first."""
        ...


def normalize(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float32).ravel()
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else v


def embedding_distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(normalize(a) - normalize(b)))


def make_backend(name: str = "dlib", model_dir: Path | str | None = None) -> FaceBackend:
    """Build a backend by name. ``model_dir`` is the insightface model pack folder."""
    if name == "dlib":
        from loraforge.curation.dlib_backend import DlibBackend

        return DlibBackend()
    if name == "insightface":
        from loraforge.curation.insightface_backend import InsightFaceBackend

        return InsightFaceBackend(model_dir)
    raise BackendUnavailable(f"unknown face backend {name!r}; use 'dlib' or 'insightface'")
