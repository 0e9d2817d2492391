"""Copies against other moments filmed the same way: ingest's motion signatures through
dedup.shared_footage and the curation decision.

The set-up is what a user films for a character LoRA: a phone on a tripod in one room, the
subject swaying a little while she talks, several short takes uploaded as separate files. The
takes look alike (keyframe pHash and face both match) but are different moments; a re-upload
of one of them (re-encoded, re-scaled and graded, trimmed, or converted to another frame rate)
is a copy. Every file goes through ingest (real ffmpeg), so the signatures are the ones the
analysis proxy stores and the decoded clips give.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import curation_media as M
import cv2
import imageio_ffmpeg
import numpy as np
import people_media as PM
import pytest
import quality_media as Q

from loraforge.curation.dedup import footage_match, shared_footage
from loraforge.curation.frames import load_media
from loraforge.curation.metrics import ClipMetrics
from loraforge.curation.pipeline import MediaItem, curate
from loraforge.curation.policy import CurationPolicy
from loraforge.ingest import IngestOptions, process_source

W, H = 854, 480
FPS = 24


def _sway(seed: int):
    """Where she is at t seconds: a sum of slow sines with random rates and phases (a person
    is never periodic), a few pixels each way."""
    r = np.random.default_rng(seed)
    rate, phase, amp = (
        r.uniform(0.08, 0.9, (2, 4)),
        r.uniform(0, 6.3, (2, 4)),
        r.uniform(2, 6, (2, 4)),
    )

    def at(t: float) -> tuple[float, float]:
        dx, dy = (amp * np.sin(2 * np.pi * rate * t + phase)).sum(axis=1)
        return float(dx), float(dy)

    return at


def _take(
    path: Path,
    seed: int,
    seconds: float = 5.0,
    start: float = 0.0,
    fade_s: float = 0.0,
    fps: int = FPS,
    sway_scale: float = 1.0,
) -> Path:
    bg = cv2.resize(PM.room(), (W, H), interpolation=cv2.INTER_AREA)
    face = M.astronaut()
    sway = _sway(seed)

    def frame(i: int) -> np.ndarray:
        dx, dy = (sway_scale * v for v in sway(start + i / fps))
        s = 470 + round(dy)
        f = PM.paste(bg, face, 200 + round(dx), H - s, s)
        if fade_s:  # fading in from near black
            f = (f * min(1.0, 0.15 + i / (fade_s * fps))).astype(np.uint8)
        return f

    return Q.write_h264(path, frame, seconds=seconds, fps=fps)


def _ffmpeg(src: Path, out: Path, *args: str) -> Path:
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y"]
    subprocess.run([*cmd, *args[:2], "-i", str(src), *args[2:], str(out)], check=True)
    return out


@pytest.fixture(scope="module")
def footage(tmp_path_factory):
    """name -> the clips ingest cut from that upload."""
    d = tmp_path_factory.mktemp("takes")
    take = _take(d / "take.mp4", seed=1)
    files = {
        "take": take,
        "later": _take(d / "later.mp4", seed=1, start=40.0),  # the same person, 40 s on
        "other": _take(d / "other.mp4", seed=7),  # another take of the same set-up
        # copies of the first take
        "regraded": _ffmpeg(
            take,
            d / "regraded.mp4",
            "-ss",
            "0",
            "-vf",
            "scale=640:360,eq=brightness=0.05:contrast=1.15",
            "-crf",
            "28",
        ),
        "trimmed": _ffmpeg(take, d / "trimmed.mp4", "-ss", "1.0", "-crf", "23"),
        # trimmed by 25 frames: its 16 fps clip keeps other source frames than the first's
        "nudged": _ffmpeg(take, d / "nudged.mp4", "-ss", f"{25 / FPS:.5f}", "-crf", "23"),
        "at30": _ffmpeg(take, d / "at30.mp4", "-ss", "0", "-vf", "fps=30", "-crf", "20"),
    }
    return {
        k: process_source(f, IngestOptions(), d / f"ingest-{k}").clips for k, f in files.items()
    }


def _metrics(clip, name: str, path: str = "proxy") -> ClipMetrics:
    return _measured(clip.path, clip.analysis if path == "proxy" else None, name)


def _measured(clip: Path, analysis: Path | None, name: str) -> ClipMetrics:
    """What dedup reads of a clip: its motion signature (the rest is left at its defaults)."""
    media = load_media(clip, analysis=analysis)
    assert media.signature is not None
    rate = media.signature_fps or media.fps  # the source's from the proxy, the clip's decoded
    assert abs(len(media.signature) - media.duration_s * rate) <= 2 + rate / 8
    return ClipMetrics(
        clip_id=f"{name}-{clip.stem}",
        path=str(clip),
        source_id=name,
        kind="video",
        width=media.width,
        height=media.height,
        fps=media.fps,
        duration_s=media.duration_s,
        frames_sampled=len(media.frames),
        signature=media.signature.tobytes(),
        signature_fps=rate,
    )


@pytest.mark.parametrize("path", ["proxy", "decoded"])
def test_copies_share_footage_and_other_moments_do_not(footage, path) -> None:
    def shared(a: str, b: str) -> bool:
        verdicts = [
            shared_footage(_metrics(x, a, path), _metrics(y, b, path))
            for x in footage[a]
            for y in footage[b]
        ]
        assert None not in verdicts  # she moves enough to tell
        return any(verdicts)

    for copy in ("regraded", "trimmed", "at30"):
        assert shared("take", copy), copy
    for moment in ("later", "other"):
        assert not shared("take", moment), moment
        assert not shared("regraded", moment), moment


def test_a_copy_cut_between_the_clip_rates_frames_is_found_at_the_source_rate(footage) -> None:
    # the proxy's signature holds every source frame (0.98 here); the 16 fps clips of the two
    # uploads drop different source frames, and decoded they correlate at under 0.8
    pairs = [(x, y) for x in footage["take"] for y in footage["nudged"]]
    assert any(shared_footage(_metrics(x, "a"), _metrics(y, "b")) for x, y in pairs)
    assert not any(
        shared_footage(_metrics(x, "a", "decoded"), _metrics(y, "b", "decoded")) for x, y in pairs
    )


def test_a_policy_sampling_other_frames_still_compares_the_stored_signature(footage) -> None:
    # frames decoded from the clip (the proxy holds 8), the signature still the source-rate one
    for clip in footage["take"]:
        stored = load_media(clip.path, analysis=clip.analysis)
        other = load_media(clip.path, 12, analysis=clip.analysis)
        assert len(other.frames) == 12 and other.signature_fps == stored.signature_fps == FPS
        assert np.array_equal(other.signature, stored.signature)


def test_signatures_that_cannot_be_compared_tell_nothing() -> None:
    # too short to have changes, or a rate that is no rate (a damaged record): None, so looks
    # decide, never an exception in the middle of a curation job
    moving = np.random.default_rng(0).integers(0, 60000, (48, 64)).astype("<u2").tobytes()
    assert footage_match(moving, FPS, moving, FPS) is not None
    for short in (b"", np.zeros((1, 64), "<u2").tobytes()):
        assert footage_match(short, FPS, moving, FPS) is None
    for rate in (0.0, -24.0, float("nan"), float("inf")):
        assert footage_match(moving, rate, moving, FPS) is None


def test_a_still_shot_cannot_be_told_and_looks_decide(tmp_path) -> None:
    # nothing moves but film grain, which does not add up over time the way motion does: no
    # footage to compare, so two uploads that look alike stay near-copies
    still = cv2.resize(PM.room(), (W, H), interpolation=cv2.INTER_AREA)
    rng = np.random.default_rng(0)

    def grainy(i: int) -> np.ndarray:
        return np.clip(still + rng.normal(0, 6, still.shape), 0, 255).astype(np.uint8)

    a = Q.write_h264(tmp_path / "a.mp4", grainy, seconds=2.0, fps=FPS)
    b = _ffmpeg(a, tmp_path / "b.mp4", "-ss", "0", "-vf", "scale=640:360", "-crf", "28")
    assert shared_footage(_measured(a, None, "a"), _measured(b, None, "b")) is None


def test_a_person_barely_moving_at_60_fps_still_tells_footage(tmp_path) -> None:
    # swaying by 1-2 px she changes a cell less per frame than grain does; over 1/8 s she moves
    # three times as much, so her takes are compared by footage, not by looks
    take = _take(tmp_path / "take.mp4", seed=1, seconds=4.0, fps=60, sway_scale=0.3)
    later = _take(tmp_path / "later.mp4", seed=1, seconds=4.0, start=40, fps=60, sway_scale=0.3)
    copy = _ffmpeg(take, tmp_path / "copy.mp4", "-ss", "0", "-vf", "scale=640:360", "-crf", "28")
    clips = {
        name: process_source(path, IngestOptions(), tmp_path / name).clips[0]
        for name, path in (("take", take), ("later", later), ("copy", copy))
    }
    first = _metrics(clips["take"], "take")
    assert shared_footage(first, _metrics(clips["copy"], "copy")) is True
    assert shared_footage(first, _metrics(clips["later"], "later")) is False


def test_a_trimmed_reupload_of_a_long_take_is_a_copy_clip_by_clip(tmp_path) -> None:
    # ingest splits a long shot into ~4 s clips; trimmed by 2 s, the second upload's clips
    # straddle the first's (half of each overlaps one of them), and every one is still a copy
    take = _take(tmp_path / "long.mp4", seed=3, seconds=14.0)
    trimmed = _ffmpeg(take, tmp_path / "trimmed.mp4", "-ss", "2.0", "-crf", "23")
    first = process_source(take, IngestOptions(), tmp_path / "first").clips
    again = process_source(trimmed, IngestOptions(), tmp_path / "again").clips
    assert len(first) >= 3 and len(again) >= 2
    for clip in again:
        assert any(
            shared_footage(_metrics(clip, "again"), _metrics(other, "first")) for other in first
        ), clip.path.name


def test_two_takes_that_both_fade_in_are_not_copies(tmp_path) -> None:
    # a fade moves every cell at once: on the raw changes these two moments correlated at 0.86
    clips = [
        process_source(
            _take(tmp_path / f"{k}.mp4", seed, seconds=4.0, start=start, fade_s=2.0),
            IngestOptions(),
            tmp_path / f"ingest-{k}",
        ).clips[0]
        for k, (seed, start) in enumerate([(1, 40.0), (7, 0.0)])
    ]
    assert shared_footage(_metrics(clips[0], "a"), _metrics(clips[1], "b")) is False


def test_takes_filmed_the_same_way_are_kept_and_a_reupload_is_a_copy(footage, backend) -> None:
    # before the signatures, pHash and face matched across the takes and all but one of them
    # were rejected as near-copies of each other
    names = ("take", "later", "other", "regraded")
    items = [
        MediaItem(c.path, f"{name}-{i}", name, analysis=c.analysis)
        for name in names
        for i, c in enumerate(footage[name])
    ]
    res = curate(items, CurationPolicy(min_short_side_px=256), backend=backend)
    codes = {i.clip_id: res.clip(i.clip_id).decision.reason_codes for i in items}
    for name in ("later", "other"):
        for i in range(len(footage[name])):
            assert "near_duplicate" not in codes[f"{name}-{i}"], codes
    # of each moment of the first take, one upload's clip is kept
    for i in range(len(footage["take"])):
        pair = [codes[f"take-{i}"], codes[f"regraded-{i}"]]
        assert sorted(pair, key=len) == [[], ["near_duplicate"]], codes
