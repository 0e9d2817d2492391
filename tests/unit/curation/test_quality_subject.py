"""Light, clipping, sharpness and noise judged on the subject, on footage made from real photos
and encoded with libx264: a low-key close-up is kept, an underexposed face is rejected with its
numbers, sensor noise is flagged or rejected, faceless policies keep judging the frame."""

from __future__ import annotations

import dataclasses

import curation_media as M
import cv2
import numpy as np
import pytest
import quality_media as Q

from loraforge.curation.decision import decide
from loraforge.curation.frames import load_media
from loraforge.curation.metrics import measure
from loraforge.curation.people import PeopleDetector
from loraforge.curation.policy import CurationPolicy
from loraforge.curation.quality import black_bars, noise_sigma

POLICY = CurationPolicy(min_short_side_px=256, frames_per_clip=6)


def _window_behind(t: int) -> np.ndarray:
    """Backlit: a blown-out window fills the left quarter of the frame, beside the shoulder."""
    f = Q.portrait(t)
    f[:, : Q.W // 4] = 255
    return f


def _lowkey(t: int) -> np.ndarray:
    # one key light on the face, the room falling to 4 % (frame mean ~45/255 against a floor of 50)
    return Q.spotlight(Q.portrait(t), floor=0.04, radius=0.18)


CLIPS = {
    "portrait": Q.portrait,
    "lowkey": _lowkey,
    # the same shot a quarter as bright: an underexposed interview
    "under": lambda t: Q.gain(_lowkey(t), 0.25),
    # at 35 %: a dim face (~54/255), but as sharp as ever
    "dim": lambda t: Q.gain(_lowkey(t), 0.35),
    "window": _window_behind,
    # two stops over: the face itself burns out
    "overexposed": lambda t: Q.gain(Q.portrait(t), 2.2),
    # exposed at 15 % with sensor noise sigma 3, gained back up in post
    "pushed": lambda t: Q.pushed(Q.portrait(t), 0.15, 3.0, seed=t),
    # exposed at 20 % with sigma 2: visible grain, still usable
    "grainy": lambda t: Q.pushed(Q.portrait(t), 0.2, 2.0, seed=t),
    # a bright, evenly lit frame slightly out of focus (a missed focus pull): face still found
    "bright_soft": lambda t: cv2.GaussianBlur(Q.gain(Q.portrait(t), 1.15), (0, 0), 2.2),
}


@pytest.fixture(scope="module")
def measured(tmp_path_factory, backend):
    d = tmp_path_factory.mktemp("light")
    people = PeopleDetector()
    out = {}
    for name, fn in CLIPS.items():
        media = load_media(Q.write_h264(d / f"{name}.mp4", fn), POLICY.frames_per_clip)
        out[name] = measure(media, backend, people, clip_id=name, source_id=name).metrics
    return out


def test_noise_sigma_reads_gaussian_noise_and_ignores_texture():
    rng = np.random.default_rng(0)
    for sigma in (2.0, 6.0, 12.0):
        flat = np.clip(120 + rng.normal(0, sigma, (360, 640)), 0, 255).astype(np.uint8)
        assert noise_sigma(flat) == pytest.approx(sigma, rel=0.1)
    # real photos are textured (hair, fabric, the flag) and still read low: the astronaut and
    # the coffee below 1, Grace Hopper's scanned print (its film grain) about 1.4
    for img in (M.astronaut(), M.hopper(), Q.coffee()):
        assert noise_sigma(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)) < 2.0
    # crushed blacks carry no noise and must not pull the estimate down
    half = np.clip(120 + rng.normal(0, 6.0, (360, 640)), 0, 255).astype(np.uint8)
    half[:, :400] = 0
    assert noise_sigma(half) == pytest.approx(6.0, rel=0.15)


def test_dark_surroundings_are_not_black_bars():
    dark = cv2.cvtColor(Q.gain(_lowkey(0), 0.25), cv2.COLOR_BGR2GRAY)
    assert black_bars(dark) == (0, 0, 0, 0)
    bars = cv2.cvtColor(M.letterbox(Q.portrait(0), 0.15), cv2.COLOR_BGR2GRAY)
    top, bottom, left, right = black_bars(bars)
    assert top == bottom == pytest.approx(0.15 * bars.shape[0], abs=2) and left == right == 0


def test_low_key_close_up_is_kept(measured):
    m = measured["lowkey"]
    # the old whole-frame rule would have rejected it
    assert m.mean_luma < POLICY.min_mean_luma
    assert m.subject_source == "face" and m.subject_luma > 120
    assert m.letterbox_fraction == 0
    d = decide(m, POLICY)
    assert d.keep, d.reasons
    assert "low_key" in d.flag_codes
    x, _y, w, _h = m.subject_box
    assert 0.2 < x + w / 2 < 0.8 and 0 < w < 1  # around the face, not the whole frame


def test_underexposed_face_is_rejected_with_the_numbers(measured):
    m = measured["under"]
    d = decide(m, POLICY)
    assert "too_dark" in d.reason_codes
    msg = next(r.message for r in d.reasons if r.code == "too_dark")
    assert m.subject_luma < POLICY.min_subject_luma
    assert f"face brightness {m.subject_luma:.0f}/255 (min 45)" in msg
    assert f"frame {m.mean_luma:.0f}/255" in msg
    # its evidence: the region the light was read on, and on which frames
    ev = next(r.evidence for r in d.reasons if r.code == "too_dark")[0]
    assert ev["kind"] == "face" and ev["box"] == m.subject_box and ev["frames"] == m.subject_frames
    assert len(m.subject_frames) >= 4


def test_a_dim_sharp_face_is_not_called_blurry(measured):
    m = measured["dim"]
    assert POLICY.min_subject_luma < m.subject_luma < 70
    d = decide(m, POLICY)
    assert d.keep and "face_blurry" not in d.reason_codes, d.reasons
    # sharpness is read as if exposed properly: the dim face reads like the lit one, within
    # the spread of the encode
    lit = measured["lowkey"].face_sharpness
    assert 0.5 * lit < m.face_sharpness < 2 * lit


def test_clean_portrait_has_no_light_or_noise_findings(measured):
    m = measured["portrait"]
    d = decide(m, POLICY)
    assert d.keep and not d.flags, (d.reasons, d.flags)
    assert m.subject_noise < 1.0 and m.noise < 1.0


def test_heavy_sensor_noise_rejects_and_grain_is_flagged(measured):
    pushed, grainy = measured["pushed"], measured["grainy"]
    assert pushed.subject_noise > POLICY.max_noise
    d = decide(pushed, POLICY)
    assert d.reason_codes == ["noisy"], d.reasons
    assert "heavy noise on the subject: sigma" in d.reasons[0].message
    assert POLICY.flag_noise < grainy.subject_noise < POLICY.max_noise
    g = decide(grainy, POLICY)
    assert g.keep and "noisy" in g.flag_codes


def test_faceless_types_judge_the_frame(measured):
    # style, background, lighting and effect datasets set light_on="frame": the dark frame
    # of the low-key shot is what counts there
    frame_policy = POLICY.model_copy(update={"light_on": "frame", "require_face": False})
    d = decide(measured["lowkey"], frame_policy)
    assert "too_dark" in d.reason_codes
    assert "mean brightness" in next(r.message for r in d.reasons if r.code == "too_dark")


def test_clipping_is_judged_on_the_subject(measured):
    # a blown window behind a well exposed face: flagged, not rejected
    w = measured["window"]
    assert w.highlights_clipped > POLICY.max_highlights_clipped > w.subject_highlights_clipped
    d = decide(w, POLICY)
    assert d.keep and "highlights_clipped" in d.flag_codes, d.reasons
    # the face itself blown out: rejected, with the subject's share in the message
    o = measured["overexposed"]
    d = decide(o, POLICY)
    assert not d.keep and "highlights_clipped" in d.reason_codes
    msg = next(r.message for r in d.reasons if r.code == "highlights_clipped")
    assert f"{o.subject_highlights_clipped:.0%} of the subject blown out" in msg


def test_ranking_is_on_the_subject_for_face_types(measured):
    """A dim-background close-up with a well-lit sharp face outranks a bright soft one (the
    frame's brightness used to decide: the low-key frame reads ~45/255); faceless policies
    rank on the frame."""
    from loraforge.curation.metrics import quality_score

    low, soft = measured["lowkey"], measured["bright_soft"]
    assert low.mean_luma < 60 < soft.mean_luma and soft.face_frames_fraction > 0.5
    assert low.face_sharpness > soft.face_sharpness
    assert low.quality_score > soft.quality_score + 0.05, (low.quality_score, soft.quality_score)
    # the room's light does not rank a face type's clip (it did: 15 % of the score was the
    # frame's mean luma); a faceless type's ranking is the frame's, dim here
    lit_room = dataclasses.replace(low, mean_luma=125.0)
    assert quality_score(lit_room) == quality_score(low) == low.quality_score
    assert quality_score(low, "frame") < quality_score(lit_room, "frame")
    assert quality_score(low, "frame") < low.quality_score
    # an underexposed face ranks below the same shot well exposed
    assert measured["under"].quality_score < low.quality_score
