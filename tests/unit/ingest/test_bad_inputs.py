"""Every unusable input fails with its own InvalidInput subclass and a message saying what to do."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from footage import ShotSpec, ffmpeg, lavfi_video, make_footage
from PIL import Image

from loraforge.ingest import IngestOptions, MediaLimits, process_many, process_source
from loraforge.ingest import errors as E
from loraforge.ingest.probe import probe
from loraforge.ingest.tools import MediaTools
from loraforge.runtime.errors import InvalidInput

TOOLS = MediaTools.discover()
# Both probe paths: ffprobe (when installed) and the ffmpeg-only fallback.
PROBE_TOOLS = [
    pytest.param(TOOLS, id="ffprobe"),
    pytest.param(TOOLS.without_ffprobe(), id="ffmpeg-only"),
]
if TOOLS.ffprobe is None:
    PROBE_TOOLS = PROBE_TOOLS[1:]


def _fails(
    path: Path,
    error: type[E.IngestError],
    *words: str,
    tools: MediaTools = TOOLS,
    options: IngestOptions | None = None,
) -> str:
    with pytest.raises(error) as info:
        process_source(path, options, path.parent / "out", tools=tools)
    msg = str(info.value)
    assert isinstance(info.value, InvalidInput)
    assert msg.startswith(path.name + ":"), msg
    for w in words:
        assert w in msg, msg
    assert not list((path.parent / "out").glob("*.mp4")) if (path.parent / "out").exists() else True
    return msg


def test_zero_byte_file(tmp_path: Path) -> None:
    p = tmp_path / "clip.mp4"
    p.write_bytes(b"")
    _fails(p, E.EmptyFile, "empty", "upload it again")


@pytest.mark.parametrize("tools", PROBE_TOOLS)
def test_truncated_mp4(tmp_path: Path, tools: MediaTools) -> None:
    good = lavfi_video(tmp_path / "good.mp4", 4)
    data = good.read_bytes()
    p = tmp_path / "cut_short.mp4"
    p.write_bytes(data[: len(data) // 2])  # moov atom is at the end: gone
    _fails(p, E.CorruptMedia, "truncated", "upload", tools=tools)


def test_truncated_faststart_mp4_detected_by_decode(tmp_path: Path) -> None:
    good = lavfi_video(
        tmp_path / "good.mp4",
        8,
        extra=[
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
            "-movflags",
            "+faststart",
        ],
    )
    data = good.read_bytes()
    p = tmp_path / "faststart_cut.mp4"
    p.write_bytes(data[: int(len(data) * 0.3)])  # index intact, most frames missing
    _fails(p, E.CorruptMedia, "truncated")


def test_text_file_named_mp4(tmp_path: Path) -> None:
    p = tmp_path / "notes.mp4"
    p.write_text("this is not a video\nat all\n")
    _fails(p, E.UnsupportedFormat, "text", "upload videos")


@pytest.mark.parametrize("tools", PROBE_TOOLS)
def test_audio_only_file(tmp_path: Path, tools: MediaTools) -> None:
    p = tmp_path / "voice.mp4"
    subprocess.run(
        [
            ffmpeg(),
            "-hide_banner",
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=300:duration=2",
            "-c:a",
            "aac",
            str(p),
        ],
        check=True,
    )
    _fails(p, E.AudioOnly, "no video", tools=tools)


def test_audio_only_m4a_rejected_by_content(tmp_path: Path) -> None:
    p = tmp_path / "voice.mov"  # extension lies; the M4A brand decides
    subprocess.run(
        [
            ffmpeg(),
            "-hide_banner",
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=300:duration=2",
            "-c:a",
            "aac",
            "-f",
            "ipod",
            str(p),
        ],
        check=True,
    )
    _fails(p, E.AudioOnly, "audio")


@pytest.mark.parametrize("tools", PROBE_TOOLS)
def test_tiny_16x16_video(tmp_path: Path, tools: MediaTools) -> None:
    p = lavfi_video(tmp_path / "tiny.mp4", 4, size="16x16")
    _fails(p, E.VideoTooSmall, "16x16", "minimum", tools=tools)


def test_huge_dimensions(tmp_path: Path) -> None:
    p = lavfi_video(tmp_path / "wide.mp4", 0.3, size="9000x128", fps=10)
    _fails(p, E.VideoTooLarge, "9000x128", "downscale")


def test_limits_are_configurable(tmp_path: Path) -> None:
    p = lavfi_video(tmp_path / "small.mp4", 4)
    _fails(
        p,
        E.VideoTooLarge,
        "320x240",
        options=IngestOptions(limits=MediaLimits(min_side=16, max_side=256)),
    )


def test_video_shorter_than_minimum(tmp_path: Path) -> None:
    p = lavfi_video(tmp_path / "short.mp4", 1.5)
    _fails(p, E.VideoTooShort, "1.50 s", "minimum")


def test_only_short_shots(tmp_path: Path) -> None:
    # Long enough overall, but every shot is 2 s, under the 2 s minimum once trimmed at its cuts:
    # nothing to keep, and the error says why.
    foot = make_footage(
        tmp_path / "choppy.mp4",
        [ShotSpec("astronaut", 60), ShotSpec("coffee", 60), ShotSpec("rocket", 60)],
    )
    _fails(foot.path, E.NoUsableClips, "too short", "longer continuous shots")


def test_mixed_batch_keeps_going(tmp_path: Path, make_zip) -> None:
    good = make_footage(tmp_path / "good.mp4", [ShotSpec("astronaut", 100, "pan")]).path
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    text = tmp_path / "readme.mp4"
    text.write_text("hello")
    photo = tmp_path / "face.jpg"
    from footage import photo as load

    Image.fromarray(load("astronaut")).save(photo)
    bad_zip = make_zip("evil.zip", {"../escape.jpg": b"x"})
    missing = tmp_path / "gone.mp4"
    short = lavfi_video(tmp_path / "short.mp4", 1)

    out = process_many(
        [empty, good, text, bad_zip, photo, missing, short], IngestOptions(), tmp_path / "job"
    )
    by_name = {o.source.name: o for o in out}
    assert [o.source.name for o in out] == [
        "empty.mp4",
        "good.mp4",
        "readme.mp4",
        "evil.zip",
        "face.jpg",
        "gone.mp4",
        "short.mp4",
    ]
    assert by_name["good.mp4"].ok and len(by_name["good.mp4"].result.clips) == 1
    assert by_name["face.jpg"].ok and by_name["face.jpg"].result.kind == "photo"
    expected = {
        "empty.mp4": "EmptyFile",
        "readme.mp4": "UnsupportedFormat",
        "evil.zip": "UnsafeArchive",
        "gone.mp4": "MissingFile",
        "short.mp4": "VideoTooShort",
    }
    for name, kind in expected.items():
        o = by_name[name]
        assert not o.ok and o.result is None and o.error_type == kind, o
        assert o.error.startswith(name + ":"), o.error
    assert not (tmp_path / "escape.jpg").exists() and not (tmp_path / "job" / "escape.jpg").exists()
    # Results serialise for events/protobuf.
    assert by_name["good.mp4"].to_dict()["result"]["clips"][0]["path"].endswith(".mp4")


def test_zip_batch_members_processed_individually(tmp_path: Path, make_zip) -> None:
    good = make_footage(tmp_path / "a.mp4", [ShotSpec("coffee", 100, "zoom")]).path
    z = make_zip(
        "upload.zip",
        {
            "trip/a.mp4": good.read_bytes(),
            "trip/broken.mp4": b"\x00" * 100,
            "__MACOSX/trip/._a.mp4": b"junk",
        },
    )
    out = process_many([z], IngestOptions(), tmp_path / "job")
    assert [o.source.name for o in out] == ["a.mp4", "broken.mp4"]
    assert out[0].ok and out[0].archive == z and len(out[0].result.clips) == 1
    assert not out[1].ok and out[1].error_type == "UnsupportedFormat"


def test_options_validation() -> None:
    from loraforge.ingest import ClipOptions, CutOptions, ShotOptions

    with pytest.raises(E.InvalidOptions, match="max_seconds"):
        ClipOptions(min_seconds=6, max_seconds=5, target_seconds=5)
    with pytest.raises(E.InvalidOptions, match="detector"):
        ShotOptions(detector="magic")  # type: ignore[arg-type]
    with pytest.raises(E.InvalidOptions, match="fps"):
        CutOptions(fps=0)
    with pytest.raises(E.InvalidOptions):
        ClipOptions.for_model("sora")
    assert ClipOptions.for_model("wan2.2").max_seconds == 5.0
    assert ClipOptions.for_model("wan2.5").max_seconds == 10.0


def test_probe_paths_agree_and_see_rotation_audio_vfr(tmp_path: Path) -> None:
    base = lavfi_video(tmp_path / "base.mp4", 4, audio=True)
    rot = tmp_path / "rot.mp4"
    subprocess.run(
        [
            ffmpeg(),
            "-hide_banner",
            "-loglevel",
            "error",
            "-display_rotation",
            "90",
            "-i",
            str(base),
            "-c",
            "copy",
            str(rot),
        ],
        check=True,
    )
    vfr = lavfi_video(
        tmp_path / "vfr.mkv",
        4,
        extra=[
            "-vf",
            "setpts='if(lt(N,60),N/30,2+(N-60)/10)/TB'",
            "-fps_mode",
            "passthrough",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
        ],
    )
    for tools in [p.values[0] for p in PROBE_TOOLS]:
        b = probe(base, tools)
        assert (b.width, b.height, b.rotation, b.codec, b.has_audio) == (320, 240, 0, "h264", True)
        assert b.fps == pytest.approx(30) and b.duration == pytest.approx(4, abs=0.1)
        assert b.frame_count == 120 and b.bitrate and not b.variable_frame_rate
        r = probe(rot, tools)
        # -display_rotation is counter-clockwise; we report the clockwise turn the player makes.
        assert (r.width, r.height, r.coded_width, r.coded_height, r.rotation) == (
            240,
            320,
            320,
            240,
            270,
        )
        v = probe(vfr, tools)
        assert v.container.startswith("matroska") and v.duration == pytest.approx(7.93, abs=0.1)
        if tools.ffprobe:
            assert v.variable_frame_rate
    # Without ffprobe the decode pass measures it. The clip lies in the 10 fps part: it keeps
    # 10 fps (padding it to 16 would repeat frames), and the source is flagged as below 16 fps.
    res = process_source(vfr, IngestOptions(), tmp_path / "out", tools=TOOLS.without_ffprobe())
    assert res.probe.variable_frame_rate and res.probe.frame_count == 120
    assert res.clips and all(c.fps == 10.0 and 3.0 <= c.duration <= 5.0 for c in res.clips)
    assert res.frame_rate["below_target"] and res.frame_rate["clip_fps"] == [10.0]
    assert all(probe(c.path).frame_count == c.frames == round(c.duration * 10) for c in res.clips)
    assert not process_source(base, IngestOptions(), tmp_path / "out2").probe.variable_frame_rate


def test_rotated_video_is_cut_upright(tmp_path: Path) -> None:
    src = make_footage(tmp_path / "src.mp4", [ShotSpec("astronaut", 120, "still")])
    rot = tmp_path / "rot.mp4"
    subprocess.run(
        [
            ffmpeg(),
            "-hide_banner",
            "-loglevel",
            "error",
            "-display_rotation",
            "90",
            "-i",
            str(src.path),
            "-c",
            "copy",
            str(rot),
        ],
        check=True,
    )
    res = process_source(rot, IngestOptions(), tmp_path / "out")
    (clip,) = res.clips
    info = probe(clip.path)
    assert (info.width, info.height, info.rotation) == (240, 320, 0)
    from footage import read_frames

    first = read_frames(clip.path, (24, 32))[0]
    # ffmpeg turns the stored frame 90 degrees counter-clockwise for display.
    expected = np.rot90(src.thumbs[0].astype(np.float32), k=1)
    wrong = np.rot90(src.thumbs[0].astype(np.float32), k=-1)
    assert np.abs(first - expected).mean() < np.abs(first - wrong).mean() / 2
