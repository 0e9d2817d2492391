"""Who is in the frame, and the LoRA type's policy: scenes built from real photos."""

from __future__ import annotations

from dataclasses import replace

import curation_media as M
import cv2
import numpy as np
import people_media as PM
import pytest
import skimage.data

from loraforge.curation.decision import dataset_context, decide
from loraforge.curation.errors import InvalidPolicy
from loraforge.curation.metrics import ClipMetrics
from loraforge.curation.motion import direction
from loraforge.curation.people import PeopleDetector
from loraforge.curation.pipeline import MediaItem, curate
from loraforge.curation.policy import LORA_TYPES, CurationPolicy
from loraforge.curation.selection import select


@pytest.fixture(scope="module")
def people() -> PeopleDetector:
    return PeopleDetector()


def _count(people, backend, img):
    faces = [f.box for f in backend.detect(img, embed_largest=False)]
    return people.detect(img, faces)


# -- people in one frame ---------------------------------------------------------------------


def test_subject_body_is_not_a_second_person(people, backend):
    for t in (0, 12):
        found = _count(people, backend, PM.subject(t))
        assert len(found) == 1, found
        # the detector saw her body too (it carries the body fields) and merged it with the face
        assert found[0].has_face and found[0].full_body is False


@pytest.mark.parametrize(
    "scene",
    [
        "second_person_cut_by_edge",
        "profile_person_beside",
        "second_person_blurred_far",
        "second_person_from_behind",
    ],
)
def test_second_person_found(people, backend, scene):
    img = getattr(PM, scene)(10)
    faces = [f.box for f in backend.detect(img, embed_largest=False)]
    assert len(faces) == 1  # the face detector alone sees only the subject
    found = people.detect(img, faces)
    assert len(found) == 2, found
    other = next(p for p in found if not p.has_face)
    assert other.box.center[0] > 330  # the second person is in the right third, not her body
    # frames may come at another analysis size: the same count, boxes in that frame's pixels
    big = cv2.resize(img, (1280, 960), interpolation=cv2.INTER_CUBIC)
    found_big = people.detect(big, [f.scaled(1280 / M.W) for f in faces])
    assert (
        len(found_big) == 2
        and next(p for p in found_big if not p.has_face).box.center[0] > 330 * 1280 / M.W
    )


def test_body_keypoints_tell_a_portrait_from_a_whole_body(people, backend):
    img = M.astronaut()
    faces = [f.box for f in backend.detect(img, embed_largest=False)]
    (ast,) = people.detect(img, faces, keypoints=True)
    assert ast.has_face and ast.full_body is False  # waist-up portrait: no knees, no feet
    assert {"nose", "shoulder"} <= set(
        ast.visible_keypoints
    ) and "ankle" not in ast.visible_keypoints
    # the keypoints land on her: the nose inside the face box, shoulders below it
    rgb = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    d = people.persons(rgb, 0.5)[0]
    xy, vis = people.keypoints(rgb, d)
    face = faces[0]
    assert face.x < xy[0, 0] < face.x2 and face.y < xy[0, 1] < face.y2 and vis[0] > 0.9
    assert min(xy[11, 1], xy[12, 1]) > face.y2
    # the cameraman is seen down to the knees (his feet are behind the frame edge)
    cam = cv2.cvtColor(skimage.data.camera(), cv2.COLOR_GRAY2BGR)
    (man,) = people.detect(cam, [], keypoints=True)
    assert (
        man.full_body is False
        and "knee" in man.visible_keypoints
        and "ankle" not in man.visible_keypoints
    )


def test_neighbours_in_a_crowd_are_not_hidden_by_a_face_owners_band(people, backend):
    # five people side by side: HOG finds two faces, the detector the neighbours beside them.
    # Its rounds black out each known person's face band; the wider band (the detector's head
    # box) clears only the mask's regions: used in the rounds, it hid a neighbour on every frame
    for t in (0.0, 0.5, 1.0):
        found = _count(people, backend, PM.crowd(t))
        assert sum(p.has_face for p in found) == 2
        assert len(found) >= 3, found


@pytest.mark.parametrize("scene", ["landscape", "cat"])
def test_nobody_in_a_landscape_or_a_cat(people, backend, scene):
    # the person segmenter alone paints the cat as a person; the detectors must not
    assert _count(people, backend, getattr(PM, scene)(4)) == []


def test_missing_model_runtime_is_a_clear_error(monkeypatch, tmp_path):
    import importlib.resources

    import loraforge.curation.people as P
    from loraforge.curation.dlib_backend import DlibBackend
    from loraforge.curation.errors import BackendUnavailable

    # the package's data folder without its model files, as a broken install leaves it
    monkeypatch.setattr(importlib.resources, "files", lambda package: tmp_path)
    with pytest.raises(BackendUnavailable, match=r"pose_detection.*reinstall loraforge"):
        P.PeopleDetector()
    with pytest.raises(BackendUnavailable, match=r"face_detection.*reinstall loraforge"):
        DlibBackend()


# -- motion direction ------------------------------------------------------------------------


def _photo(name: str) -> np.ndarray:
    return (
        M.hopper()
        if name == "hopper"
        else cv2.cvtColor(getattr(skimage.data, name)(), cv2.COLOR_RGB2BGR)
    )


def _turning(deg_per_frame: float, photo: str = "coffee"):
    """A real photo turning about its centre (positive: counter-clockwise on screen)."""
    img = cv2.resize(_photo(photo), (M.W, M.H))

    def frame(t: int) -> np.ndarray:
        rot = cv2.getRotationMatrix2D((M.W / 2, M.H / 2), deg_per_frame * t, 1.1)
        return cv2.warpAffine(img, rot, (M.W, M.H), borderMode=cv2.BORDER_REFLECT)

    return frame


def _zooming(rate: float):
    img = cv2.resize(cv2.cvtColor(skimage.data.coffee(), cv2.COLOR_RGB2BGR), (M.W, M.H))

    def frame(t: int) -> np.ndarray:
        z = cv2.getRotationMatrix2D((M.W / 2, M.H / 2), 0, 1.2 + rate * t)
        return cv2.warpAffine(img, z, (M.W, M.H), borderMode=cv2.BORDER_REFLECT)

    return frame


def _grey_pairs(fn, n=6):
    g = lambda t: cv2.resize(cv2.cvtColor(fn(t), cv2.COLOR_BGR2GRAY), (160, 120))  # noqa: E731
    return [(g(2 * t), g(2 * t + 1)) for t in range(n)]


@pytest.mark.parametrize(
    ("fn", "label"),
    [
        (_turning(-2.0), "rotate_cw"),
        (_turning(2.0), "rotate_ccw"),
        (_zooming(0.012), "zoom_in"),
        (_zooming(-0.012), "zoom_out"),
        (lambda t: M.astronaut_frame(t, dx=4), "moves_left"),  # the window pans right
        (lambda t: M.astronaut_frame(0), None),
    ],
)
def test_motion_direction(fn, label):
    assert direction(_grey_pairs(fn), 16).label == label


# -- policies by LoRA type -------------------------------------------------------------------


def test_type_policies_and_errors():
    assert set(LORA_TYPES) == {
        "character",
        "expression",
        "pose",
        "style",
        "background",
        "lighting",
        "effect",
    }
    ch, bg = CurationPolicy.for_type("character"), CurationPolicy.for_type("background")
    assert ch == CurationPolicy() and ch.require_face and ch.max_people == 1
    # background: people are filled in by its builder (builders/background.py)
    assert not bg.require_face and bg.max_people is None and bg.policy_hash != ch.policy_hash
    assert CurationPolicy.for_type("style").max_people is None
    assert CurationPolicy.for_type("pose").require_full_body
    assert CurationPolicy.for_type("effect").motion_direction_rule == "reject"
    assert (
        CurationPolicy.for_type("background", {"min_short_side_px": 256}).min_short_side_px == 256
    )
    with pytest.raises(InvalidPolicy, match="use one of character, expression, pose"):
        CurationPolicy.for_type("portrait")
    with pytest.raises(InvalidPolicy, match="set the type with --type"):
        CurationPolicy.for_type("style", {"lora_type": "character"})
    with pytest.raises(InvalidPolicy, match="max_people"):
        CurationPolicy.for_type("character", {"max_people": 0})


def test_angle_mix_only_for_face_types():
    pool = [
        ClipMetrics(
            f"c{i}", f"c{i}", "s", "photo", 512, 512, 0, 0, 1, quality_score=0.5, angle_bucket=None
        )
        for i in range(3)
    ]
    assert any(
        m.code.startswith("angle:") for m in select(pool, CurationPolicy(target_size=3)).missing
    )
    style = select(pool, CurationPolicy.for_type("style", {"target_size": 3}))
    assert style.angle_quota == {} and not [m for m in style.missing if m.code.startswith("angle:")]
    assert len(style.selected) == 3


# -- whole clips through curate() ------------------------------------------------------------

SMALL = {"min_short_side_px": 256, "frames_per_clip": 6, "target_size": 4}


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("people")
    scenes = {
        "solo": PM.subject,
        "edge": PM.second_person_cut_by_edge,
        "far": PM.second_person_blurred_far,
        "profile": PM.profile_person_beside,
        "behind": PM.second_person_from_behind,
        "land": PM.landscape,
    }
    return {k: MediaItem(M.write_clip(d / f"{k}.mp4", fn), source_id=k) for k, fn in scenes.items()}


@pytest.fixture(scope="module")
def as_character(clips, backend, people):
    return curate(
        list(clips.values()),
        CurationPolicy.for_type("character", SMALL),
        backend=backend,
        people=people,
    )


def test_second_person_rejected_for_character(as_character):
    res = as_character
    solo = res.clip("solo")
    assert solo.decision.keep and solo.metrics.people_count == 1, solo.decision.reasons
    for cid in ("edge", "far", "profile", "behind"):
        c = res.clip(cid)
        assert c.metrics.people_count == 2 and c.metrics.bodies_without_face == 1, cid
        assert "people_count" in c.decision.reason_codes, (cid, c.decision.reasons)
        msg = next(r.message for r in c.decision.reasons if r.code == "people_count")
        assert msg == "people_count: 2 persons in frame, 1 without a visible face (max 1)"
    assert "no_face" in res.clip("land").decision.reason_codes
    land = next(r.message for r in res.clip("land").decision.reasons if r.code == "no_face")
    assert "a person is in" not in land  # nobody there: only the face is missing


def test_no_face_says_when_a_person_is_there_without_one():
    # a body the person detector sees on 2 of 3 checked frames, no face on any frame: the
    # reason says so (turned away, face cut by the frame edge), not only "no face"
    m = ClipMetrics("c", "c.mp4", "s", "video", 1280, 720, 25.0, 3.0, 8)
    m.person_frames_fraction, m.people_count = 0.6667, 1
    d = decide(m, CurationPolicy.for_type("character"))
    (msg,) = [r.message for r in d.reasons if r.code == "no_face"]
    assert "a person is in 67% of the checked frames, with no face seen" in msg
    assert "cut by the frame's edge" in msg


def test_landscape_kept_for_background_and_people_rejected(clips, backend, people):
    # max_people=0: only clips with nobody in them (the builder would fill people in otherwise)
    res = curate(
        [clips["land"], clips["solo"]],
        CurationPolicy.for_type("background", {**SMALL, "max_people": 0}),
        backend=backend,
        people=people,
    )
    land, solo = res.clip("land"), res.clip("solo")
    assert land.decision.keep and land.selected, land.decision.reasons
    assert land.metrics.people_count == 0 and land.metrics.quality_score > 0
    assert solo.decision.reason_codes == ["people_count"]
    assert (
        solo.decision.reasons[0].message
        == "people_count: 1 person in frame; a background dataset needs none"
    )
    assert not res.selection.angle_quota


def test_pose_needs_a_whole_body(clips, backend, people):
    res = curate(
        [clips["solo"], clips["land"]],
        CurationPolicy.for_type("pose", SMALL),
        backend=backend,
        people=people,
    )
    solo = res.clip("solo")
    assert "no_full_body" in solo.decision.reason_codes  # a head-and-shoulders shot
    msg = next(r.message for r in solo.decision.reasons if r.code == "no_full_body")
    assert msg.endswith("not seen: hip, knee, ankle"), msg
    assert "no_person" in res.clip("land").decision.reason_codes
    assert "no_face" not in res.clip("land").decision.reason_codes


def test_mixed_motion_directions_flagged_for_effect(tmp_path, backend, people):
    # seed 004: a "spin" effect must turn the same way in every clip
    photos = ("coffee", "chelsea", "astronaut")  # different scenes, so no clip is a near-copy
    items = [
        MediaItem(M.write_clip(tmp_path / f"cw{i}.mp4", _turning(-1.5 - 0.5 * i, p)), source_id=p)
        for i, p in enumerate(photos)
    ]
    items.append(
        MediaItem(M.write_clip(tmp_path / "ccw.mp4", _turning(2.0, "hopper")), source_id="hopper")
    )
    res = curate(items, CurationPolicy.for_type("effect", SMALL), backend=backend, people=people)
    assert [c.metrics.motion_direction for c in res.clips] == ["rotate_ccw"] + ["rotate_cw"] * 3
    ccw = res.clip("ccw")
    assert not ccw.decision.keep and ccw.decision.reason_codes == ["motion_direction"], (
        ccw.decision.reasons
    )
    assert (
        "against the dataset's rotate_cw (3 rotate_cw, 1 rotate_ccw)"
        in ccw.decision.reasons[0].message
    )
    for i in range(3):
        assert res.clip(f"cw{i}").decision.keep, res.clip(f"cw{i}").decision.reasons
    # the same clips for a style LoRA: direction is no rule there
    style = CurationPolicy.for_type("style", SMALL)
    metrics = [c.metrics for c in res.clips]
    d = decide(ccw.metrics, style, context=dataset_context(metrics, style))
    assert "motion_direction" not in d.reason_codes + d.flag_codes
    # two ways, two clips each: no majority, every directed clip is flagged, none rejected
    split = [
        replace(m, motion_direction=w)
        for m, w in zip(
            metrics, ["rotate_cw", "rotate_cw", "rotate_ccw", "rotate_ccw"], strict=True
        )
    ]
    effect = CurationPolicy.for_type("effect", SMALL)
    ctx = dataset_context(split, effect)
    assert ctx.motion_majority is None
    assert all("motion_direction" in decide(m, effect, context=ctx).flag_codes for m in split)
