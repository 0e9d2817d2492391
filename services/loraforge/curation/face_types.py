"""What every face backend returns and promises (faces.py builds one by name).

A module of its own so that the backends (dlib_backend.py, insightface_backend.py) and
faces.make_backend, which imports them, do not import each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

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
