"""What cameras and recorders write, beside phone and web files: MPEG transport streams (a
broadcast recording with its clock an hour in, an AVCHD camcorder's M2TS, a stream cut
mid-packet), MPEG-2 program streams, MXF, FLV, ASF/WMV; and interlaced footage, which must
come out without comb teeth while progressive footage comes out bit for bit as before."""

from __future__ import annotations

import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
from footage import ShotSpec, ffmpeg, lavfi_video, make_footage, photo, read_frames

from loraforge.ingest import IngestOptions, cut, process_source, remux
from loraforge.ingest.errors import AudioOnly
from loraforge.ingest.probe import probe
from loraforge.ingest.proxy import read_proxy
from loraforge.ingest.sniff import MediaKind, Sniffed, sniff
from loraforge.ingest.tools import MediaTools
from loraforge.ingest.upload import expand_paths

TOOLS = MediaTools.discover()


def _ff(*args: str) -> None:
    subprocess.run([ffmpeg(), "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


@pytest.mark.parametrize(
    ("fmt", "args"),
    [
        ("ts", ["-c:v", "libx264", "-preset", "ultrafast", "-f", "mpegts"]),
        (
            "m2ts",
            ["-c:v", "libx264", "-preset", "ultrafast", "-mpegts_m2ts_mode", "1", "-f", "mpegts"],
        ),
        ("mpg", ["-c:v", "mpeg2video", "-f", "mpeg"]),
        ("mxf", ["-c:v", "mpeg2video", "-f", "mxf"]),
        ("flv", ["-c:v", "flv1", "-f", "flv"]),
        ("wmv", ["-c:v", "wmv2", "-f", "asf"]),
    ],
)
def test_camera_and_recorder_containers_are_sniffed(
    tmp_path: Path, fmt: str, args: list[str]
) -> None:
    # named .dat: the content decides, not the name
    p = lavfi_video(tmp_path / "a.dat", 0.3, extra=args)
    assert sniff(p) == Sniffed(MediaKind.VIDEO, fmt)


def test_a_transport_stream_cut_mid_packet_is_still_one(tmp_path: Path) -> None:
    p = lavfi_video(tmp_path / "a.ts", 0.5, extra=["-c:v", "libx264", "-preset", "ultrafast"])
    cut = tmp_path / "cut.ts"
    cut.write_bytes(p.read_bytes()[101:])
    assert sniff(cut) == Sniffed(MediaKind.VIDEO, "ts")
    # a text file is not a stream because it has a "G" somewhere
    text = tmp_path / "notes.ts"
    text.write_bytes(b"G" + b"hello world\n" * 200)
    with pytest.raises(Exception, match="text"):
        sniff(text)


def test_a_transport_stream_without_video_says_so(tmp_path: Path) -> None:
    radio = tmp_path / "radio.ts"
    _ff(
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:duration=4",
        "-c:a",
        "mp2",
        "-f",
        "mpegts",
        str(radio),
    )
    with pytest.raises(AudioOnly, match=r"radio\.ts: .*no video"):
        process_source(radio, IngestOptions(), tmp_path / "out")
    assert not (tmp_path / "out" / "seekable" / "radio.ts").exists()  # the copy is gone


def _clips(res) -> list[tuple[float, float, int]]:
    return [(round(c.source_start, 2), round(c.source_end, 2), c.frames) for c in res.clips]


def test_broadcast_stream_with_a_late_clock_cuts_like_the_mp4(tmp_path: Path) -> None:
    """A recording's timestamps start where the broadcaster's clock was (here an hour in), and
    an AVCHD file's at ~1 s: shots and clips are found at the same times as in an MP4 of the
    same pictures, and hold the same frames."""
    specs = [ShotSpec("astronaut", 100, "pan"), ShotSpec("coffee", 100, "zoom")]
    src = make_footage(tmp_path / "src.mp4", specs, fps=25.0)
    _ff(
        "-i",
        str(src.path),
        "-c",
        "copy",
        "-output_ts_offset",
        "3600",
        "-f",
        "mpegts",
        str(tmp_path / "rec.ts"),
    )
    _ff(
        "-i",
        str(src.path),
        "-c",
        "copy",
        "-mpegts_m2ts_mode",
        "1",
        "-f",
        "mpegts",
        str(tmp_path / "cam.m2ts"),
    )
    base = process_source(src.path, IngestOptions(), tmp_path / "o-mp4")
    assert len(base.clips) == 2
    for name in ("rec.ts", "cam.m2ts"):
        res = process_source(tmp_path / name, IngestOptions(), tmp_path / f"o-{name}")
        assert res.format == name.split(".")[1]
        assert _clips(res) == _clips(base), name
        for a, b in zip(res.clips, base.clips, strict=True):
            fa, fb = read_frames(a.path), read_frames(b.path)
            assert fa.shape == fb.shape and np.abs(fa - fb).mean() < 2.0, name


def test_a_cut_that_decodes_nothing_is_a_failed_segment_not_a_clip(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cut straight from a transport stream whose only keyframe is its first frame (no stream
    copy), the second shot's seek decodes nothing: ffmpeg exits 0 with an empty file. That is
    reported as a failed segment, not as a clip."""
    specs = [ShotSpec("astronaut", 100, "pan"), ShotSpec("coffee", 100, "zoom")]
    one_gop = ["-c:v", "libx264", "-preset", "ultrafast", "-g", "1000", "-sc_threshold", "0"]
    src = make_footage(tmp_path / "src.mp4", specs, fps=25.0, codec=one_gop)
    _ff("-i", str(src.path), "-c", "copy", "-f", "mpegts", str(tmp_path / "rec.ts"))
    monkeypatch.setattr(remux, "UNINDEXED_FORMATS", frozenset())
    res = process_source(tmp_path / "rec.ts", IngestOptions(), tmp_path / "out")
    assert len(res.clips) == 1 and res.clips[0].source_start < 1.0
    (failed,) = [s for s in res.skipped if s.reason.startswith("encode failed")]
    assert "no frame decoded" in failed.reason and failed.start > 3.0
    assert not (tmp_path / "out" / "clip_0001.mp4").exists()


def _combing(frames: np.ndarray) -> float:
    """Comb teeth: how much each row differs from the mean of its neighbours (one field against
    the other) over how much rows two apart do (within one field). ~1 for progressive
    pictures, several times that where woven fields of a moving picture disagree."""
    g = frames.mean(axis=-1)
    one = np.abs(g[:, 1:-1] - (g[:, :-2] + g[:, 2:]) / 2).mean()
    two = np.abs(g[:, 2:-2] - (g[:, :-4] + g[:, 4:]) / 2).mean()
    return float(one / two)


def test_interlaced_footage_is_deinterlaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """50 pictures a second of a fast pan, woven two at a time into 25 interlaced frames and
    stored as MPEG-2 in a program stream, as a DV or broadcast SD recording has it."""
    size = (720, 576)
    # the astronaut three times side by side, scrolled 5 px a picture (125 px a second)
    strip = np.tile(
        cv2.resize(photo("astronaut"), (576, 576), interpolation=cv2.INTER_AREA), (1, 3, 1)
    )
    pics = [np.ascontiguousarray(strip[:, 5 * i : 5 * i + 720]) for i in range(200)]
    raw = tmp_path / "pics.rgb"
    raw.write_bytes(b"".join(p.tobytes() for p in pics))
    src = tmp_path / "tape.mpg"
    _ff(
        "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", "720x576", "-r", "50", "-i", str(raw),
        "-vf", "tinterlace=mode=interleave_top,setfield=tff",
        "-c:v", "mpeg2video", "-flags", "+ilme+ildct", "-b:v", "12M", "-f", "mpeg", str(src),
    )  # fmt: skip
    woven = read_frames(src, size)
    assert _combing(woven) > 3.0  # the source is combed: the test can fail

    res = process_source(src, IngestOptions(), tmp_path / "out")
    assert res.clips
    for c in res.clips:
        assert _combing(read_frames(c.path, size)) < 1.5
        # the analysis proxy curation reads comes out of the same filter graph
        proxy = read_proxy(c.analysis)
        assert proxy is not None
        assert _combing(np.stack(list(proxy.frames.values())).astype(np.float32)) < 1.5
    # cut as before (fps and scale straight on the woven frames): combed, so the measure above
    # is what the deinterlacer changes
    monkeypatch.setattr(cut, "DEINTERLACE", "null")
    res = process_source(src, IngestOptions(), tmp_path / "combed")
    assert min(_combing(read_frames(c.path, size)) for c in res.clips) > 2.0


def test_progressive_footage_passes_the_deinterlacer_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prog = make_footage(tmp_path / "prog.mp4", [ShotSpec("astronaut", 100, "pan")], fps=25.0)
    with_filter = process_source(prog.path, IngestOptions(), tmp_path / "a")
    monkeypatch.setattr(cut, "DEINTERLACE", "null")
    without = process_source(prog.path, IngestOptions(), tmp_path / "b")
    assert with_filter.clips
    assert [c.sha256 for c in with_filter.clips] == [c.sha256 for c in without.clips]


@pytest.mark.parametrize("transfer", ["arib-std-b67", "smpte2084"], ids=["HLG", "PQ"])
def test_hdr_footage_is_tone_mapped_to_sdr(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, transfer: str
) -> None:
    """A phone's HLG video (or HDR10's PQ) of the same pictures as an SDR file gives clips that
    look like the SDR file's, not dim and washed out. The HDR file is made from the SDR one the
    way a grading tool would (BT.2020 primaries, the HDR curve, SDR white at BT.2408's 203
    cd/m2), as 10-bit HEVC with its colour tags."""
    sdr = make_footage(tmp_path / "sdr.mp4", [ShotSpec("astronaut", 100, "pan")], fps=25.0)
    hdr = tmp_path / "hdr.mp4"
    _ff(
        "-i", str(sdr.path),
        "-vf", f"zscale=tin=bt709:t={transfer}:pin=bt709:p=bt2020:min=bt709:m=bt2020nc:r=tv"
        ":npl=203,format=yuv420p10le",
        "-c:v", "libx265", "-x265-params", "log-level=error",
        "-color_primaries", "bt2020", "-color_trc", transfer, "-colorspace", "bt2020nc",
        str(hdr),
    )  # fmt: skip
    for tools in (TOOLS, TOOLS.without_ffprobe()):
        assert probe(hdr, tools).color_transfer == transfer
    want = read_frames(process_source(sdr.path, IngestOptions(), tmp_path / "s").clips[0].path)

    def error(out: str) -> float:
        clips = process_source(hdr, IngestOptions(), tmp_path / out).clips
        return float(np.abs(read_frames(clips[0].path) - want).mean())

    mapped = error("mapped")
    monkeypatch.setattr(cut, "HDR_TRANSFERS", frozenset())
    as_sdr = error("as-sdr")
    assert mapped < 5.0 and as_sdr > 2 * mapped, (mapped, as_sdr)


def test_a_folder_of_camera_and_phone_files_is_found(tmp_path: Path) -> None:
    """`loraforge ingest FOLDER` picks media by name (upper-case camera names included)."""
    names = ["IMG_0001.HEIC", "00001.MTS", "BDMV/STREAM/00002.M2TS", "VTS_01_1.VOB", "C0001.MXF"]
    for n in [*names, "notes.txt", ".hidden.mp4", "IMG_0001.AAE"]:
        (tmp_path / n).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / n).write_bytes(b"x")
    assert sorted(p.relative_to(tmp_path).as_posix() for p in expand_paths([tmp_path])) == sorted(
        names
    )
