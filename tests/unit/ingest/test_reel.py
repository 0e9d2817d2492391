"""End-to-end on a generated multi-shot reel with known cuts, pans, zooms and a fade."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from footage import REEL, Footage, read_frames
from PIL import Image

from loraforge.ingest import ClipOptions, IngestOptions, ShotOptions, process_source
from loraforge.ingest.probe import probe
from loraforge.ingest.shots import analyse, build_shots
from loraforge.ingest.tools import MediaTools
from loraforge.runtime.errors import Cancelled


@pytest.fixture(scope="module")
def result(reel: Footage, tmp_path_factory: pytest.TempPathFactory):
    stages: list[tuple[str, float]] = []
    res = process_source(
        reel.path,
        IngestOptions(),
        tmp_path_factory.mktemp("out"),
        progress_cb=lambda stage, f: stages.append((stage, f)),
    )
    return res, stages


def _cut_frames(shots) -> list[int]:
    return [s.start_frame for s in shots if s.starts_with == "cut"]


def test_hard_cuts_found_within_two_frames(reel: Footage, result) -> None:
    res, _ = result
    found = _cut_frames(res.shots)
    for truth in reel.hard_cuts:
        assert min(abs(f - truth) for f in found) <= 2, (truth, found)
    # And nothing spurious: each detected cut matches a real one.
    for f in found:
        assert min(abs(f - t) for t in reel.hard_cuts) <= 2, (f, reel.hard_cuts)


def test_no_shot_spans_the_fade(reel: Footage, result) -> None:
    res, _ = result
    ((b0, b1),) = reel.black_ranges
    fade_out_start = reel.shot_ranges[3][1] - REEL[3].fade_out
    fade_in_end = reel.shot_ranges[4][0] + REEL[4].fade_in
    for shot in res.shots:
        assert shot.end_frame <= b0 or shot.start_frame >= b1, shot
    # The shots on both sides end/start at the fade, and the dim ramp is trimmed off
    # (allowing a couple of frames near full brightness).
    before = [s for s in res.shots if s.end_frame <= b0][-1]
    after = next(s for s in res.shots if s.start_frame >= b1)
    assert before.ends_with == "fade" and after.starts_with == "fade"
    assert fade_out_start - 3 <= before.end_frame <= fade_out_start + 3
    assert fade_in_end - 3 <= after.start_frame <= fade_in_end + 3
    assert not any(c.source_start_frame < b1 and c.source_end_frame > b0 for c in res.clips)


def test_clip_lengths_within_bounds_and_short_shot_skipped(reel: Footage, result) -> None:
    res, _ = result
    opts = ClipOptions()
    assert len(res.clips) >= 5
    for clip in res.clips:
        assert opts.min_seconds - 1e-6 <= clip.frames / clip.fps <= opts.max_seconds + 1e-6, clip
        assert clip.source_end - clip.source_start >= opts.min_seconds - 1e-6
    # The 2-second shot (index 2 in the truth) yields no clip, and says why.
    s0, s1 = reel.shot_ranges[2]
    assert not any(s0 <= c.source_start_frame < s1 for c in res.clips)
    reasons = [s.reason for s in res.skipped if s0 / reel.fps - 0.2 <= s.start < s1 / reel.fps]
    assert reasons and "too short" in reasons[0]
    # The 7-second rocket shot (index 3) is split into two clips.
    r0, r1 = reel.shot_ranges[3]
    assert len([c for c in res.clips if r0 <= c.source_start_frame < r1]) == 2


def test_every_clip_frame_belongs_to_one_shot(reel: Footage, result) -> None:
    res, _ = result
    for clip in res.clips:
        truth_shot = reel.shot_of_frame(clip.source_start_frame)
        assert truth_shot >= 0
        # Source window lies within that shot.
        s0, s1 = reel.shot_ranges[truth_shot]
        assert s0 <= clip.source_start_frame and clip.source_end_frame <= s1
        frames = read_frames(clip.path)
        assert len(frames) == clip.frames
        labels = {reel.nearest_shot(f) for f in frames}
        assert labels == {truth_shot}, (clip.path.name, labels)


def test_clip_encoding_and_keyframes(reel: Footage, result) -> None:
    res, _ = result
    tools = MediaTools.discover()
    for clip in res.clips:
        info = probe(clip.path, tools)
        assert info.codec == "h264" and info.pixel_format == "yuv420p"
        assert not info.has_audio
        assert math.isclose(info.fps, 16.0)
        assert (info.width, info.height) == (clip.width, clip.height) == reel.size
        assert [k.name.rsplit("_", 1)[1] for k in clip.keyframes] == [
            "first.jpg",
            "middle.jpg",
            "last.jpg",
        ]
        frames = read_frames(clip.path)
        for key, idx in zip(clip.keyframes, (0, clip.frames // 2, clip.frames - 1), strict=False):
            img = np.asarray(
                Image.open(key).convert("RGB").resize((32, 24), Image.Resampling.BOX), np.float32
            )
            errors = [np.abs(img - f).mean() for f in frames]
            assert int(np.argmin(errors)) in (idx - 1, idx, idx + 1) or errors[idx] < 3.0


def test_progress_reported_in_order(result) -> None:
    _, stages = result
    fractions = [f for _, f in stages]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert {"probe", "detect", "cut", "done"} <= {s for s, _ in stages}


def test_content_detector_finds_the_same_cuts(reel: Footage) -> None:
    tools = MediaTools.discover()
    opts = ShotOptions(detector="content")
    info = probe(reel.path, tools)
    shots = build_shots(analyse(reel.path, info, opts, tools), opts)
    found = _cut_frames(shots)
    for truth in reel.hard_cuts:
        assert min(abs(f - truth) for f in found) <= 2, (truth, found)


def test_detection_threshold_is_honoured(reel: Footage) -> None:
    # A threshold nothing can reach finds no cuts: the option really reaches the detector.
    tools = MediaTools.discover()
    opts = ShotOptions(detector="content", content_threshold=250.0)
    info = probe(reel.path, tools)
    assert analyse(reel.path, info, opts, tools).cuts == ()


def test_longer_clips_and_smaller_size_and_source_fps(reel: Footage, tmp_path: Path) -> None:
    from loraforge.ingest import CutOptions

    opts = IngestOptions(
        clips=ClipOptions.for_model("wan2.5"),
        cut=CutOptions(fps=None, max_long_side=161, keyframe_format="png"),
    )
    res = process_source(reel.path, opts, tmp_path)
    for clip in res.clips:
        assert clip.fps == pytest.approx(30.0)
        assert 3.0 <= clip.frames / clip.fps <= 10.0
        assert clip.width % 2 == 0 and clip.height % 2 == 0 and max(clip.width, clip.height) <= 161
        assert len(clip.keyframes) == 3
        for key in clip.keyframes:
            assert key.suffix == ".png" and Image.open(key).size == (clip.width, clip.height)
    # The 7-second shot now fits in one clip.
    r0, r1 = reel.shot_ranges[3]
    assert len([c for c in res.clips if r0 <= c.source_start_frame < r1]) == 1


def test_cancel_stops_processing(reel: Footage, tmp_path: Path) -> None:
    calls = {"n": 0}

    def cancel() -> bool:
        calls["n"] += 1
        return calls["n"] > 3

    with pytest.raises(Cancelled):
        process_source(reel.path, IngestOptions(), tmp_path, cancel_check=cancel)
    assert not list(tmp_path.glob("*.mp4"))
