from __future__ import annotations

import curation_media as M
import cv2
import numpy as np
import pytest

from loraforge.curation.errors import InvalidPolicy, UnreadableMedia, UnsupportedMedia
from loraforge.curation.frames import load_media, sample_indices, sample_video
from loraforge.curation.metrics import ClipMetrics
from loraforge.curation.motion import classify
from loraforge.curation.policy import CurationPolicy
from loraforge.curation.quality import black_bars, blockiness, lighting_bucket, measure_frame
from loraforge.curation.selection import select


def test_sampling_spreads_over_whole_clip(tmp_path):
    assert sample_indices(100, 4) == [12, 37, 62, 87]
    assert sample_indices(3, 8) == [0, 1, 2]
    s = sample_video(M.write_clip(tmp_path / "c.mp4", M.astronaut_frame, seconds=3), 5)
    idx = [f.index for f in s.frames]
    assert len(idx) == 5 and idx[0] < 5 and idx[-1] >= 19
    assert s.duration_s == pytest.approx(3.0, abs=0.2) and s.fps == pytest.approx(8)
    assert all(f.next_small_gray is not None for f in s.frames[:-1])


def test_bad_media(tmp_path):
    with pytest.raises(UnsupportedMedia, match="unsupported file type"):
        load_media(tmp_path / "x.txt")
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    with pytest.raises(UnreadableMedia):
        load_media(bad)
    with pytest.raises(UnreadableMedia, match="not found"):
        load_media(tmp_path / "missing.jpg")


def test_policy_defaults_and_overrides():
    p = CurationPolicy()
    assert p.max_people == 1 and p.min_short_side_px == 512
    assert (p.min_duration_s, p.max_duration_s) == (2.0, 10.0)
    assert p.target_range("video") == (50, 80) and p.target_range("photo") == (20, 30)
    assert sum(p.angle_mix.values()) == pytest.approx(1.0)
    assert CurationPolicy.from_overrides({"min_short_side_px": 128}).min_short_side_px == 128
    with pytest.raises(InvalidPolicy, match="fix or remove"):
        CurationPolicy.from_overrides({"no_such_field": 1})
    with pytest.raises(InvalidPolicy):
        CurationPolicy.from_overrides({"angle_mix": {"frontal": 0.5}})


def test_quality_measures():
    a = M.astronaut_frame(0)
    q = measure_frame(a)
    dark = measure_frame(M.darken(a))
    assert dark.mean_luma < q.mean_luma / 3 and dark.contrast < q.contrast
    assert measure_frame(M.blur(a)).sharpness < q.sharpness / 5
    lb = measure_frame(M.letterbox(a, 0.2))
    assert lb.bar_top == pytest.approx(0.2, abs=0.02) and lb.bar_bottom == pytest.approx(
        0.2, abs=0.02
    )
    assert black_bars(np.zeros((50, 50), np.uint8)) == (0, 0, 0, 0)
    _, jpg = cv2.imencode(".jpg", a, [cv2.IMWRITE_JPEG_QUALITY, 5])
    gray = cv2.cvtColor(a, cv2.COLOR_BGR2GRAY)
    blocky = cv2.cvtColor(cv2.imdecode(jpg, cv2.IMREAD_COLOR), cv2.COLOR_BGR2GRAY)
    assert blockiness(blocky) > 1.3 > blockiness(gray) - 0.2
    assert lighting_bucket(30, 20, 1.0) == "low_light"
    assert lighting_bucket(100, 40, 1.5) == "evening"


def test_motion_static_vs_shaky():
    g = cv2.cvtColor(cv2.resize(M.astronaut(), (160, 160)), cv2.COLOR_BGR2GRAY)
    assert classify([(g, g), (g, g)], 25).label == "static"
    rng = np.random.default_rng(0)
    pairs = []
    for _ in range(6):
        dx, dy = rng.integers(-6, 7, size=2)
        pairs.append((g, np.roll(g, (int(dy), int(dx)), axis=(0, 1))))
    assert classify(pairs, 25).label == "shaky"


def _clip(cid, bucket, q, smiling=0.0, source="s1"):
    return ClipMetrics(
        cid,
        cid,
        source,
        "photo",
        512,
        512,
        0,
        0,
        1,
        face_frames_fraction=1.0,
        angle_bucket=bucket,
        quality_score=q,
        smiling_fraction=smiling,
        expression="smiling" if smiling else "neutral",
    )


def test_selection_steers_to_angle_mix_and_reports_missing():
    pool = [_clip(f"f{i:02d}", "frontal", 0.9 - i * 0.01, smiling=1.0) for i in range(20)]
    pool += [_clip(f"p{i}", "profile_left", 0.3) for i in range(5)]
    pool += [_clip("t0", "three_quarter", 0.2)]
    policy = CurationPolicy(target_size=10)
    sel = select(pool, policy, "photo")
    assert len(sel.selected) == 10
    assert sel.angle_counts["profile"] == 2 and sel.angle_counts["three_quarter"] == 1
    msgs = [m.message for m in sel.missing]
    assert "2 more three-quarter photos would reach the target (30% of 10)" in msgs
    assert "1 more from above/below photos would reach the target (10% of 10)" in msgs
    assert select(list(reversed(pool)), policy, "photo").selected == sel.selected  # deterministic
    # all frontal candidates smile: the set is told to get non-smiling ones
    assert any(m.code == "expression" for m in sel.missing)


def test_a_clip_set_is_told_where_it_stands_against_its_types_range():
    """Seed 000's range for a character's clips (20 minimum, 50-100 recommended): a set of 12
    is told how many to add; a project's own min_items/max_items replace the documents'."""

    def clip(i):
        return ClipMetrics(
            f"c{i:02d}",
            f"c{i:02d}",
            "s1",
            "video",
            512,
            512,
            16,
            3.0,
            48,
            face_frames_fraction=1.0,
            angle_bucket="frontal",
            quality_score=0.5,
        )

    pool = [clip(i) for i in range(12)]
    [msg] = [
        m.message for m in select(pool, CurationPolicy(), "video").missing if m.code == "size_range"
    ]
    assert "12 usable clips, below the minimum of 20" in msg and "add at least 8 more clips" in msg
    own = CurationPolicy(build_options={"min_items": 5, "max_items": 12})
    assert not [m for m in select(pool, own, "video").missing if m.code == "size_range"]
    assert not [
        m for m in select(pool, CurationPolicy(), "photo").missing if m.code == "size_range"
    ]
