from __future__ import annotations

import evaluation_media as M
import numpy as np
import pytest
from PIL import Image

from loraforge.curation.errors import InvalidReference
from loraforge.curation.faces import DetectedFace
from loraforge.evaluation.identity import (
    build_references,
    score_identity,
    similarity_from_distance,
)


def test_similarity_mapping_is_anchored_on_the_backend_threshold(backend):
    t = backend.same_person_distance
    assert similarity_from_distance(0.0, t) == 1.0
    assert similarity_from_distance(t, t) == pytest.approx(0.5)
    assert similarity_from_distance(2 * t, t) == 0.0
    assert similarity_from_distance(1.9, t) == 0.0
    ds = np.linspace(0, 2 * t, 9)
    sims = [similarity_from_distance(d, t) for d in ds]
    assert sims == sorted(sims, reverse=True) and len(set(sims)) == 9


def test_reference_renders_score_above_another_person(backend, references):
    own = score_identity(M.renders("astronaut", range(40, 46)), references, backend)
    other = score_identity(M.renders("hopper", range(30, 36)), references, backend)
    assert own.face_rate == 1.0 and other.face_rate == 1.0
    # same person: above the backend's same-person threshold (0.5 on this scale), the other
    # person below it, for the mean and for the worst renders
    assert own.mean > 0.5 > other.mean
    assert own.p10 > 0.5 > other.p10
    assert own.p10 > other.mean + 0.2
    assert own.match_rate == 1.0 and other.match_rate == 0.0
    assert own.p10 <= own.mean
    assert len(own.per_render) == 6 and all(r.boxes for r in own.per_render)


def test_face_rate_counts_renders_without_a_face(backend, references):
    rng = np.random.default_rng(3)
    empty = [M.background(rng) for _ in range(2)]
    s = score_identity(M.renders("astronaut", range(40, 44)) + empty, references, backend)
    assert s.n_renders == 6 and s.n_faces == 4
    assert s.face_rate == pytest.approx(4 / 6)
    assert s.match_rate == pytest.approx(4 / 6)
    assert s.mean > 0.5  # the mean is over the faces found; choose.py applies the face rate
    none = score_identity(empty, references, backend)
    assert none.face_rate == 0.0 and none.mean is None and none.p10 is None


def test_renders_as_pil_and_paths_give_the_same_score(backend, references, tmp_path):
    import cv2

    img = M.renders("astronaut", [40])[0]
    p = tmp_path / "r.png"
    cv2.imwrite(str(p), img)
    pil = Image.fromarray(img[:, :, ::-1])
    a, b, c = (score_identity([x], references, backend).mean for x in (img, pil, p))
    assert a == pytest.approx(b, abs=1e-6) and a == pytest.approx(c, abs=1e-6)


def test_most_frontal_references_are_used_first(backend):
    # pose metadata says the Hopper photo is a profile and the astronaut frontal: with one
    # reference allowed, the astronaut is used and an astronaut render matches
    refs = build_references(
        [M.hopper(), M.astronaut()],
        backend,
        poses=[{"yaw": 70.0, "pitch": 0.0}, {"bucket": "frontal"}],
        max_refs=1,
    )
    assert refs.sources == ("image[1]",)
    s = score_identity([M.renders("astronaut", [41])[0]], refs, backend)
    assert s.mean > 0.5
    refs2 = build_references(
        [M.hopper(), M.astronaut()],
        backend,
        poses=[{"bucket": "frontal"}, {"yaw": 60.0}],
        max_refs=1,
    )
    assert refs2.sources == ("image[0]",)
    assert score_identity([M.renders("astronaut", [41])[0]], refs2, backend).mean < 0.5


def test_references_without_any_face_are_refused(backend):
    rng = np.random.default_rng(0)
    with pytest.raises(InvalidReference, match="no face"):
        build_references([M.background(rng)], backend)
    with pytest.raises(InvalidReference, match="pose entries"):
        build_references([M.astronaut()], backend, poses=[None, None])


def test_references_from_another_backend_are_refused(backend, references):
    class Other:
        name = "other"
        same_person_distance = 1.0
        duplicate_distance = 0.5

        def detect(self, image_bgr, embed_largest=True) -> list[DetectedFace]:
            return []

    with pytest.raises(InvalidReference, match="rebuild the references"):
        score_identity([M.renders("astronaut", [40])[0]], references, Other())
