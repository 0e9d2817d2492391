from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import evaluation_media as M

from loraforge.curation.dlib_backend import DlibBackend
from loraforge.evaluation.identity import build_references


class MemoBackend:
    """The real dlib backend, remembering its answer per image: tests score the same renders
    in several places and detection is deterministic, so this only saves time (~0.25 s per
    face embedding on a small CPU)."""

    def __init__(self) -> None:
        self._b = DlibBackend()
        self.name = self._b.name
        self.same_person_distance = self._b.same_person_distance
        self.duplicate_distance = self._b.duplicate_distance
        self._memo: dict = {}

    def detect(self, image_bgr, embed_largest: bool = True):
        key = (hashlib.sha1(image_bgr.tobytes()).hexdigest(), image_bgr.shape, embed_largest)
        if key not in self._memo:
            self._memo[key] = self._b.detect(image_bgr, embed_largest)
        return self._memo[key]


@pytest.fixture(scope="session")
def backend() -> MemoBackend:
    return MemoBackend()


@pytest.fixture(scope="session")
def ref_dir(tmp_path_factory) -> Path:
    """The user's reference photos on disk: the astronaut portrait, and a mirrored copy."""
    import cv2

    d = tmp_path_factory.mktemp("refs")
    cv2.imwrite(str(d / "astronaut.png"), M.astronaut())
    cv2.imwrite(str(d / "astronaut_mirror.png"), M.astronaut()[:, ::-1])
    return d


@pytest.fixture(scope="session")
def references(backend, ref_dir):
    return build_references(sorted(ref_dir.glob("*.png")), backend)
