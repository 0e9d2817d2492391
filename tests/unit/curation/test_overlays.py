"""Text, subtitles, logos and watermarks on footage made from real photos (libx264): camera
pans and animation are not overlays; hard subtitles and a corner logo are, with their evidence
in the metrics, the decision, the manifest and the report."""

from __future__ import annotations

import json

import curation_media as M
import cv2
import numpy as np
import pytest
import quality_media as Q

from loraforge.curation.decision import decide
from loraforge.curation.frames import load_media
from loraforge.curation.metrics import measure
from loraforge.curation.overlays import camera_motion, camera_shifts, measure_overlays, static_logos
from loraforge.curation.people import PeopleDetector
from loraforge.curation.pipeline import MediaItem, curate
from loraforge.curation.policy import CurationPolicy
from loraforge.curation.quality import frame_views
from loraforge.curation.report import annotate
from loraforge.curation.text import default_reader

POLICY = CurationPolicy(min_short_side_px=256, frames_per_clip=6)
FACELESS = POLICY.model_copy(
    update={"require_face": False, "max_people": None, "light_on": "frame"}
)

CLIPS = {
    # 1.5 px a frame (~4 px between samples): horizontal edges stay put, everything else crawls
    "slow_pan": lambda t: Q.pan(Q.coffee(), t, 1.5),
    "gradient": Q.animated_gradient,
    "subtitles": lambda t: Q.subtitles(Q.portrait(t), t),
    "logo": lambda t: Q.corner_logo(Q.portrait(t)),
    # a painted sign on the photo: text that moves with the camera
    "sign": lambda t: Q.pan(Q.with_sign(Q.coffee()), t, 5),
}


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("overlays")
    return {name: Q.write_h264(d / f"{name}.mp4", fn) for name, fn in CLIPS.items()}


@pytest.fixture(scope="module")
def measured(clips, backend):
    people = PeopleDetector()
    return {
        name: measure(
            load_media(p, POLICY.frames_per_clip), backend, people, clip_id=name, source_id=name
        ).metrics
        for name, p in clips.items()
    }


@pytest.mark.parametrize("name", ["slow_pan", "gradient"])
def test_pans_and_animation_are_not_overlays(measured, name):
    m = measured[name]
    assert not m.burned_in_text and not m.logo_or_watermark
    assert m.text_evidence == [] and m.watermark_evidence == []
    d = decide(m, FACELESS)
    assert "watermark" not in d.reason_codes and "burned_in_text" not in d.reason_codes


def test_camera_motion_is_measured(measured):
    # 1.5 px a frame at 640 px, samples ~3 frames apart: about 0.7 % of the width per sample
    assert 0.003 < measured["slow_pan"].camera_shift < 0.015
    assert measured["gradient"].camera_shift == 0  # bands sweeping are no camera motion


def test_hard_subtitles_are_burned_in_text_with_evidence(measured):
    m = measured["subtitles"]
    assert m.burned_in_text and not m.logo_or_watermark
    ev = m.text_evidence[0]
    x, y, w, _h = ev["box"]
    assert ev["kind"] == "subtitle" and y > 0.75 and 0.3 < w < 0.9 and abs(x + w / 2 - 0.5) < 0.1
    assert len(ev["frames"]) >= 2 and set(ev["frames"]) <= set(m.ocr_frames)
    assert any(word in ev["text"] for word in ("Where", "night", "home", "swear"))
    d = decide(m, POLICY)
    assert d.reason_codes == ["burned_in_text"], d.reasons
    assert d.reasons[0].evidence[0]["box"] == ev["box"]
    assert "subtitle" in d.reasons[0].message and "frames" in d.reasons[0].message


def test_corner_logo_is_a_watermark_with_its_box(measured):
    m = measured["logo"]
    assert m.logo_or_watermark and not m.burned_in_text
    x, y, w, h = m.watermark_evidence[0]["box"]
    # drawn centred at (582, 46) of 640x360 with a 26 px ring: the top-right corner
    assert 0.8 < x + w / 2 < 0.97 and y + h / 2 < 0.25 and w < 0.2 and h < 0.3
    d = decide(m, POLICY)
    assert d.reason_codes == ["watermark"], d.reasons
    assert "x=0.8" in d.reasons[0].message or "x=0.9" in d.reasons[0].message


def test_scene_text_is_flagged_not_rejected(measured):
    m = measured["sign"]
    assert m.scene_text and not m.burned_in_text and not m.logo_or_watermark
    assert "HOTEL" in m.scene_text_evidence[0]["text"].replace(" ", "").upper()
    d = decide(m, FACELESS)
    assert d.keep and "scene_text" in d.flag_codes


def test_static_scenery_beside_a_moving_subject_is_no_logo():
    # a locked-off shot: the coffee stays, Grace Hopper's portrait slides across its left half;
    # the cup's edges are static and the picture changes next to them, but not all around
    bg = cv2.resize(Q.coffee(), (Q.W, Q.H))
    face = cv2.resize(M.hopper(), (160, 200))
    grays = []
    for t in range(6):
        f = bg.copy()
        x = 20 + 40 * t
        f[80:280, x : x + 160] = face
        grays.append(cv2.cvtColor(f, cv2.COLOR_BGR2GRAY))
    motions = camera_motion(grays)
    assert motions == [None] * 5  # the sliding portrait is not camera motion
    assert camera_shifts(grays) == [(0.0, 0.0)] * 5
    assert static_logos(grays, motions) == []


def test_evidence_reaches_manifest_and_report(clips, backend, tmp_path):
    items = [MediaItem(clips["subtitles"]), MediaItem(clips["logo"])]
    res = curate(items, POLICY, backend=backend, out_dir=tmp_path)
    doc = json.loads((tmp_path / "manifest.json").read_text())
    rows = {r["clip_id"]: r for r in doc["clips"]}
    sub = rows["subtitles"]
    assert sub["text_evidence"] and sub["evidence"][0]["code"] == "burned_in_text"
    assert sub["evidence"][0]["box"] == sub["text_evidence"][0]["box"]
    assert rows["logo"]["evidence"][0]["code"] == "watermark"
    html = (tmp_path / "report.html").read_text()
    for c in res.clips:
        for r in c.decision.reasons:
            assert r.message in html.replace("&#x27;", "'")
    # the thumbnails carry the evidence box in red, where the logo is (top right)
    c = res.clip("logo")
    drawn = annotate(c.thumbnail, c)
    red = np.all(drawn == (40, 40, 220), axis=-1) & ~np.all(c.thumbnail == (40, 40, 220), axis=-1)
    ys, xs = np.nonzero(red)
    th, tw = drawn.shape[:2]
    assert len(xs) > 20 and xs.min() > 0.7 * tw and ys.max() < 0.4 * th
    assert (tmp_path / "thumbs" / "logo.jpg").stat().st_size > 1000


def _zoom(img: np.ndarray, t: int, rate: float = 0.012) -> np.ndarray:
    """A slow push-in on the photo's centre (1.2 % a frame), as a dolly or zoom lens does."""
    ih, iw = img.shape[:2]
    s = (Q.W / iw) * (1 + rate * t)
    m = np.float32([[s, 0, Q.W / 2 - s * iw / 2], [0, s, Q.H / 2 - s * ih / 2]])
    return cv2.warpAffine(img, m, (Q.W, Q.H), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)


def test_zoom_is_camera_motion_and_a_logo_over_it_is_still_found(tmp_path):
    # static-edge cue only (no OCR): a zoom moves every edge but the one at its centre
    out = {}
    for name, fn in (
        ("zoom", lambda t: _zoom(Q.coffee(), t)),
        ("zoom_logo", lambda t: Q.corner_logo(_zoom(Q.coffee(), t))),
    ):
        media = load_media(Q.write_h264(tmp_path / f"{name}.mp4", fn, seconds=3), 8)
        grays = [frame_views(f.image).gray for f in media.frames]
        motions = camera_motion(grays)
        assert sum(m is not None for m in motions) >= 5  # the zoom is seen as camera motion
        out[name] = measure_overlays(grays, indices=[f.index for f in media.frames])
    assert not out["zoom"].logo_or_watermark and out["zoom"].watermarks == []
    assert out["zoom_logo"].logo_or_watermark
    x, y, w, _h = out["zoom_logo"].watermarks[0].box
    assert x > 0.75 and y < 0.15 and w < 0.2


def test_text_on_a_locked_off_shot_is_scene_text(tmp_path):
    # a shop sign behind someone walking through a locked-off shot: it stays put like a caption
    # would, so position decides: outside the subtitle bands it is scene text (flag only)
    bg = cv2.resize(Q.with_sign(Q.coffee()), (Q.W, Q.H))
    face = cv2.resize(M.hopper(), (150, 190))

    def frame(t: int) -> np.ndarray:
        f = bg.copy()
        x = 480 - 24 * t
        f[150:340, x : x + 150] = face
        return f

    media = load_media(Q.write_h264(tmp_path / "still_sign.mp4", frame), 6)
    views = [frame_views(f.image) for f in media.frames]
    ov = measure_overlays(
        [v.gray for v in views],
        images=[v.small for v in views],
        indices=[f.index for f in media.frames],
        reader=default_reader(),
    )
    assert not ov.burned_in_text and not ov.logo_or_watermark
    assert ov.scene_text and "HOTEL" in ov.scene_text[0].text.replace(" ", "").upper()


def sway_frames(
    background: str = "rocket",
    grain: float = 0.0,
    logo: bool = False,
    corner_object: str | None = None,
    phase: int = 0,
):
    """The astronaut, half the frame's width, sways +-6 px in front of a still camera; behind
    her the launch towers of skimage's rocket photo, or its coffee photo out of focus; in a
    corner of the room, optionally, a textured thing (skimage's clock top left, or its
    motorcycle top right) and a channel bug (top right, over the picture). ``phase``: another
    moment of the same take."""
    import people_media as PM
    import skimage.data

    w, h = 1280, 720
    photo = skimage.data.rocket() if background == "rocket" else skimage.data.coffee()
    bg = cv2.resize(cv2.cvtColor(photo, cv2.COLOR_RGB2BGR), (w, h))
    if background != "rocket":
        bg = cv2.GaussianBlur(bg, (0, 0), 2)
    if corner_object == "clock":
        clock = cv2.cvtColor(skimage.data.clock(), cv2.COLOR_GRAY2BGR)
        bg = PM.paste(bg, clock, 10, 10, 200)
    elif corner_object == "motorcycle":
        bike = cv2.cvtColor(skimage.data.stereo_motorcycle()[0], cv2.COLOR_RGB2BGR)
        bg = PM.paste(bg, bike, w - 290, 10, 200)
    rng = np.random.default_rng(phase)

    def frame(t: int) -> np.ndarray:
        x = 300 + int(6 * np.sin((t + phase) / 5))
        f = PM.paste(bg.copy(), M.astronaut(), x, h - 700, 700)
        f = np.clip(f + rng.normal(0, grain, f.shape), 0, 255).astype(np.uint8)
        return Q.corner_logo(f) if logo else f

    return frame


def _sway(tmp_path, name: str, grain: float = 0.0, logo: bool = False, **scene):
    frame = sway_frames(grain=grain, logo=logo, **scene)
    media = load_media(Q.write_h264(tmp_path / f"{name}.mp4", frame, seconds=3, fps=24), 8)
    grays = [frame_views(f.image).gray for f in media.frames]
    # she is most of the textured picture: her sway passes for a pan
    assert sum(m is not None for m in camera_motion(grays)) >= 4
    return measure_overlays(grays, indices=[f.index for f in media.frames])


@pytest.mark.parametrize("grain", [0.0, 4.0])
def test_a_talking_head_swaying_before_a_locked_off_camera_puts_no_logo_on_the_scenery(
    tmp_path, grain
):
    # a piece of tower lattice at the frame's right edge, static while "the camera moved",
    # was a logo: the clip was rejected as `watermark`. Its surroundings stayed too.
    ov = _sway(tmp_path, "sway", grain)
    assert not ov.logo_or_watermark and ov.watermarks == []


@pytest.mark.parametrize("corner_object", ["clock", "motorcycle"])
def test_the_scenery_in_a_corner_of_a_locked_off_interview_is_no_logo(tmp_path, corner_object):
    # a clock on the wall, a motorbike parked in the corner, the edge of a table: static
    # while her sway "moved the camera", and every one of these clips was rejected as
    # `watermark`. They are corner marks now: flagged, with their box
    ov = _sway(tmp_path, "corner", grain=2.0, background="coffee", corner_object=corner_object)
    assert not ov.logo_or_watermark and ov.watermarks == []
    assert ov.corner_marks
    x, y, w, h = ov.corner_marks[0].box
    assert min(x, 1 - x - w) < 0.2 and min(y, 1 - y - h) < 0.2  # where it is, in a corner


def test_a_channel_bug_over_one_locked_off_talking_head_is_a_corner_mark(tmp_path):
    # on one locked-off shot, a channel bug stays put like the scenery in that corner: the clip
    # alone cannot tell them apart, so it is flagged with its box, not rejected (the source's
    # other shots tell: test_pipeline.py's corner-mark test)
    ov = _sway(tmp_path, "sway_bug", logo=True)
    assert not ov.logo_or_watermark
    ((x, y, w, _h),) = [e.box for e in ov.corner_marks]
    assert x > 0.85 and y < 0.1 and w < 0.1


def pan_frames(logo: bool = False):
    """A shot of the same upload where the camera moves: it pans 4 px a frame past the
    astronaut standing before the coffee shop (out of focus); the channel bug stays put."""
    import people_media as PM
    import skimage.data

    w, h = 1280, 720
    canvas = cv2.resize(cv2.cvtColor(skimage.data.coffee(), cv2.COLOR_RGB2BGR), (w + 300, h))
    canvas = PM.paste(cv2.GaussianBlur(canvas, (0, 0), 2), M.astronaut(), 450, h - 700, 700)

    def frame(t: int) -> np.ndarray:
        f = canvas[:, 4 * t : 4 * t + w].copy()
        return Q.corner_logo(f) if logo else f

    return frame


def _upload(tmp_path, source: str, shots: dict[str, dict], logo: bool) -> list[MediaItem]:
    return [
        MediaItem(
            Q.write_h264(
                tmp_path / f"{clip}.mp4",
                pan_frames(logo) if scene.get("pan") else sway_frames(logo=logo, **scene),
                seconds=3,
                fps=24,
            ),
            clip,
            source,
        )
        for clip, scene in shots.items()
    ]


def test_a_corner_mark_where_another_clip_of_the_source_shows_a_logo_is_a_watermark(
    tmp_path, backend
):
    # one upload cut into a shot that pans and two moments of a locked-off take; another
    # upload of the locked-off take only. A channel bug over all. The pan shows it for a logo,
    # and the take's clips of the same upload have their corner mark at that place: they are
    # rejected too. The take-only upload's clips cannot tell a bug from scenery: kept, flagged.
    show = {
        "pan": {"pan": True},
        "take-a": {"background": "rocket"},
        "take-b": {"background": "rocket", "phase": 40},
    }
    take = {"only-a": {"background": "rocket"}, "only-b": {"background": "rocket", "phase": 40}}
    bug = curate(
        _upload(tmp_path, "show", show, True) + _upload(tmp_path, "take", take, True),
        POLICY,
        backend=backend,
    )
    assert bug.clip("pan").metrics.logo_or_watermark
    for clip in ("take-a", "take-b"):
        (r,) = [r for r in bug.clip(clip).decision.reasons if r.code == "watermark"]
        assert "clip pan of the same source shows a logo" in r.message
        x, y, w, _h = r.evidence[0]["box"]
        assert x > 0.85 and y < 0.1 and w < 0.1
    for clip in take:
        d = bug.clip(clip).decision
        assert "watermark" not in d.reason_codes
        assert [f.code for f in d.flags].count("corner_mark") == 1

    (tmp_path / "clean").mkdir()
    clean = curate(_upload(tmp_path / "clean", "show", show, False), POLICY, backend=backend)
    for c in clean.clips:
        assert "watermark" not in c.decision.reason_codes, c.decision.reasons
