"""Face backends by name (make_backend) and the interface they share (face_types.py, re-exported
here): detection, 68 landmarks and an identity embedding per face.

Embeddings are always returned L2-normalised so that every backend compares with the same
euclidean distance; each backend states the distance below which two faces are the same person
(and below which two shots are near-copies), because those numbers are model-specific.
"""

from __future__ import annotations

from pathlib import Path

from loraforge.curation.dlib_backend import DlibBackend
from loraforge.curation.errors import BackendUnavailable
from loraforge.curation.face_types import (
    DetectedFace,
    FaceBackend,
    embedding_distance,
    normalize,
)
from loraforge.curation.insightface_backend import InsightFaceBackend

__all__ = ["DetectedFace", "FaceBackend", "embedding_distance", "make_backend", "normalize"]


def make_backend(name: str = "dlib", model_dir: Path | str | None = None) -> FaceBackend:
    """Build a backend by name. ``model_dir`` is the insightface model pack folder."""
    if name == "dlib":
        return DlibBackend()
    if name == "insightface":
        return InsightFaceBackend(model_dir)
    raise BackendUnavailable(f"unknown face backend {name!r}; use 'dlib' or 'insightface'")
