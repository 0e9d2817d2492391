from __future__ import annotations

import curation_media as M
import cv2
import numpy as np
import pytest

from loraforge.curation.errors import BackendUnavailable, InvalidReference
from loraforge.curation.faces import embedding_distance, make_backend
from loraforge.curation.identity import assign, reference_embedding
from loraforge.curation.metrics import ClipMetrics
from loraforge.curation.pose import HeadPose, bucket, estimate_pose


def test_dlib_finds_one_face_with_landmarks(backend):
    faces = backend.detect(M.astronaut())
    assert len(faces) == 1
    f = faces[0]
    assert f.landmarks.shape == (68, 2) and f.embedding.shape == (128,)
    assert np.linalg.norm(f.embedding) == pytest.approx(1.0, abs=1e-4)
    assert 150 < f.box.x < 220 and f.box.w > 60


def test_small_frames_are_upsampled(backend):
    # face ~45 px: below HOG's ~80 px floor without the upsampling step
    small = cv2.resize(M.astronaut(), (256, 256), interpolation=cv2.INTER_AREA)
    assert len(backend.detect(small, embed_largest=False)) == 1


def test_identity_distances(backend):
    a = backend.detect(M.astronaut())[0].embedding
    h = backend.detect(M.hopper())[0].embedding
    crop = backend.detect(cv2.resize(M.astronaut()[20:-20, 20:-20], (512, 512)))[0].embedding
    assert embedding_distance(a, h) > backend.same_person_distance
    assert embedding_distance(a, crop) < backend.duplicate_distance


def _m(cid, emb):
    return ClipMetrics(cid, cid, cid, "photo", 512, 512, 0, 0, 1, embedding=list(map(float, emb)))


def test_reference_match_and_dbscan(backend, tmp_path):
    a = backend.detect(M.astronaut())[0].embedding
    a2 = backend.detect(M.astronaut()[:, ::-1].copy())[0].embedding
    h = backend.detect(M.hopper())[0].embedding
    clips = [_m("a1", a), _m("a2", a2), _m("h1", h)]
    t = backend.same_person_distance
    dom = assign(clips, t)
    assert dom["a1"].match and dom["a2"].match and dom["h1"].match is False
    ref_path = tmp_path / "hopper.jpg"
    cv2.imwrite(str(ref_path), M.hopper())
    ref = reference_embedding([ref_path], backend)
    res = assign(clips, t, ref)
    assert res["h1"].match and not res["a1"].match and not res["a2"].match


def test_reference_without_face_is_invalid(backend, tmp_path):
    p = tmp_path / "wall.png"
    cv2.imwrite(str(p), np.full((200, 200, 3), 128, np.uint8))
    with pytest.raises(InvalidReference, match="no face"):
        reference_embedding([p], backend)


def test_insightface_needs_provisioned_models(tmp_path):
    with pytest.raises(BackendUnavailable, match="model pack"):
        make_backend("insightface", None)
    with pytest.raises(BackendUnavailable, match="onnx"):
        make_backend("insightface", tmp_path)
    with pytest.raises(BackendUnavailable):
        make_backend("nope")


def test_mirrored_face_flips_yaw_and_profile_bucket(backend):
    a = M.astronaut()
    h, w = a.shape[:2]
    # squeeze the right side of the picture in depth: the head reads as turned
    src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    dst = np.float32([[0, 0], [w * 0.75, h * 0.12], [w * 0.75, h * 0.88], [0, h]])
    turned = cv2.warpPerspective(a, cv2.getPerspectiveTransform(src, dst), (w, h))
    p = estimate_pose(backend.detect(turned)[0].landmarks, w, h)
    q = estimate_pose(backend.detect(turned[:, ::-1].copy())[0].landmarks, w, h)
    assert abs(p.yaw) > 20 and abs(q.yaw) > 20
    assert np.sign(p.yaw) == -np.sign(q.yaw)
    assert bucket(HeadPose(60, p.pitch, 0)) == "profile_right"
    assert bucket(HeadPose(-60, q.pitch, 0)) == "profile_left"
    # the untouched photo is frontal, and so is its mirror, with yaw of opposite sign
    f = estimate_pose(backend.detect(a)[0].landmarks, w, h)
    g = estimate_pose(backend.detect(a[:, ::-1].copy())[0].landmarks, w, h)
    assert bucket(f) == bucket(g) == "frontal" and np.sign(f.yaw) == -np.sign(g.yaw)


def test_buckets():
    assert bucket(HeadPose(0, 0, 0)) == "frontal"
    assert bucket(HeadPose(30, 0, 0)) == bucket(HeadPose(-30, 0, 0)) == "three_quarter"
    assert bucket(HeadPose(-50, 0, 0)) == "profile_left"
    assert bucket(HeadPose(0, 25, 0)) == "below" and bucket(HeadPose(0, -25, 0)) == "above"
