"""Frame rate (never padded up) and the analysis proxy curation reads instead of the clip."""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from footage import ShotSpec, make_footage, read_frames

from loraforge.curation.dedup import footage_match
from loraforge.curation.frames import load_media, sample_video
from loraforge.ingest import IngestOptions, process_source
from loraforge.ingest.options import CutOptions
from loraforge.ingest.proxy import SIGNATURE_CELLS, proxy_covers, read_proxy


@pytest.fixture(scope="module")
def street10(tmp_path_factory: pytest.TempPathFactory):
    """A 10 fps camera: 5 s panning over a real photo, every frame different."""
    d = tmp_path_factory.mktemp("street10")
    return make_footage(d / "street10.mp4", [ShotSpec("astronaut", 50, "pan")], fps=10.0)


def test_slow_source_keeps_its_rate_and_is_flagged(street10, tmp_path: Path) -> None:
    res = process_source(street10.path, IngestOptions(), tmp_path / "out")
    assert res.frame_rate["below_target"] and res.frame_rate["source_fps"] == pytest.approx(10.0)
    assert res.frame_rate["target_fps"] == 16.0 and res.frame_rate["clip_fps"] == [10.0]
    (clip,) = res.clips
    assert clip.fps == 10.0 and 3.0 <= clip.duration <= 5.0
    # no frame repeated: padding 10 -> 16 fps would make ~6 of every 16 consecutive pairs equal
    frames = read_frames(clip.path, (64, 48))
    assert len(frames) == clip.frames
    steps = np.abs(np.diff(frames, axis=0)).mean(axis=(1, 2, 3))
    assert steps.min() > 0.5, steps


def test_fast_source_is_brought_down_to_the_target(tmp_path: Path) -> None:
    foot = make_footage(tmp_path / "film30.mp4", [ShotSpec("coffee", 120, "pan")], fps=30.0)
    res = process_source(foot.path, IngestOptions(), tmp_path / "out")
    assert not res.frame_rate["below_target"] and res.frame_rate["clip_fps"] == [16.0]
    assert all(c.fps == 16.0 for c in res.clips)


def test_proxy_holds_the_clips_sampled_frames_and_leaves_the_clip_unchanged(
    street10, tmp_path: Path
) -> None:
    res = process_source(street10.path, IngestOptions(), tmp_path / "with")
    plain = process_source(
        street10.path, IngestOptions(cut=CutOptions(analysis_proxy=False)), tmp_path / "without"
    )
    (clip,) = res.clips
    # the proxy branch must not change what the clip is encoded from (format negotiation)
    assert (
        clip.sha256 == plain.clips[0].sha256 == hashlib.sha256(clip.path.read_bytes()).hexdigest()
    )
    assert plain.clips[0].analysis is None and clip.analysis is not None
    with zipfile.ZipFile(clip.analysis) as z:
        assert all(i.compress_type == zipfile.ZIP_STORED for i in z.infolist())

    decoded = sample_video(clip.path, 8)
    proxied = load_media(clip.path, 8, analysis=clip.analysis)
    assert [f.index for f in proxied.frames] == [f.index for f in decoded.frames]
    assert (proxied.width, proxied.height, proxied.frame_count) == (
        decoded.width,
        decoded.height,
        decoded.frame_count,
    )
    assert proxied.fps == decoded.fps == 10.0
    for p, d in zip(proxied.frames, decoded.frames, strict=False):
        # the same pictures: only the clip's x264 error and the proxy's JPEG error apart
        assert np.abs(p.image.astype(float) - d.image).mean() < 3.0
        assert (p.next_small_gray is None) == (d.next_small_gray is None)
        if p.next_small_gray is not None:
            assert np.abs(p.next_small_gray.astype(float) - d.next_small_gray).mean() < 2.0

    # the motion signature: one row a frame, the same changes either way (dedup's copy test)
    # (the proxy's at the source's rate, 10 fps here like the clip's)
    assert proxied.signature_fps == 10.0
    assert proxied.signature.shape == decoded.signature.shape == (clip.frames, SIGNATURE_CELLS)
    match = footage_match(proxied.signature.tobytes(), 10.0, decoded.signature.tobytes(), 10.0)
    assert match is not None and min(match) > 0.95, match

    # a policy sampling other frames than the proxy holds decodes the clip instead
    assert proxy_covers(clip.analysis, 8) and not proxy_covers(clip.analysis, 12)
    assert read_proxy(clip.analysis, 12) is None
    other = load_media(clip.path, 12, analysis=clip.analysis)
    assert [f.index for f in other.frames] == [f.index for f in sample_video(clip.path, 12).frames]


def test_clip_rate_is_the_target_or_the_slower_source_rate() -> None:
    from loraforge.ingest.plan import clip_rate
    from loraforge.ingest.shots import Analysis

    def analysis(pts: np.ndarray) -> Analysis:
        n = len(pts)
        return Analysis(
            cuts=(),
            luma=np.full(n, 100.0),
            pts=pts,
            fps=(n - 1) / (pts[-1] - pts[0]),
            variable_frame_rate=False,
            frame_count=n,
        )

    assert clip_rate(analysis(np.arange(300) / 30.0), 0, 300, 16.0) == 16.0  # film: dropped to 16
    assert clip_rate(analysis(np.arange(100) / 10.0), 0, 100, 16.0) == 10.0  # street camera: kept
    assert (
        clip_rate(analysis(np.arange(100) / 15.9), 0, 100, 16.0) == 16.0
    )  # within 1 %: the target
    # variable rate: 2 s at 30 fps, then 10 fps; each window gets the rate it mostly runs at
    vfr = analysis(np.concatenate([np.arange(60) / 30.0, 2.0 + np.arange(60) / 10.0]))
    assert clip_rate(vfr, 0, 60, 16.0) == 16.0 and clip_rate(vfr, 60, 120, 16.0) == 10.0


def test_a_damaged_signature_names_the_proxy(street10, tmp_path: Path) -> None:
    (clip,) = process_source(street10.path, IngestOptions(), tmp_path / "out").clips
    damaged = tmp_path / "damaged.zip"
    with zipfile.ZipFile(clip.analysis) as src, zipfile.ZipFile(damaged, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            dst.writestr(item, data[:-7] if item.filename == "signature.bin" else data)
    with pytest.raises(ValueError, match=r"damaged.zip: damaged analysis proxy \(signature"):
        read_proxy(damaged)
    # a rate that is no rate: damaged too, not a division by zero in dedup
    for rate in (0, -24, "nan"):
        bad = tmp_path / f"rate-{rate}.zip"
        with zipfile.ZipFile(clip.analysis) as src, zipfile.ZipFile(bad, "w") as dst:
            for item in src.infolist():
                data = src.read(item)
                if item.filename == "proxy.json":
                    data = json.dumps({**json.loads(data), "signature_fps": rate}).encode()
                dst.writestr(item, data)
        with pytest.raises(ValueError, match=r"damaged analysis proxy \(signature_fps"):
            read_proxy(bad)
    # a proxy written before signatures existed still serves its frames, without one
    old = tmp_path / "old.zip"
    with zipfile.ZipFile(clip.analysis) as src, zipfile.ZipFile(old, "w") as dst:
        meta = json.loads(src.read("proxy.json"))
        del meta["signature_frames"]
        dst.writestr("proxy.json", json.dumps(meta))
        for item in src.infolist():
            if item.filename not in ("proxy.json", "signature.bin"):
                dst.writestr(item, src.read(item))
    proxy = read_proxy(old)
    assert proxy is not None and proxy.signature is None and len(proxy.frames) == 8
