"""Zip safety, photos (EXIF), content sniffing, hashing, URL sources and clip planning."""

from __future__ import annotations

import hashlib
import io
import itertools
import struct
import sys
from pathlib import Path

import numpy as np
import pillow_heif
import pytest
from footage import ShotSpec, photo, render_shot
from PIL import Image, ImageCms, TiffImagePlugin

from loraforge.ingest import ArchiveLimits, ClipOptions, IngestOptions, Shot, process_source
from loraforge.ingest import errors as E
from loraforge.ingest.archive import extract_zip
from loraforge.ingest.hashing import sha256_file
from loraforge.ingest.plan import plan_clips
from loraforge.ingest.shots import Analysis
from loraforge.ingest.sniff import MediaKind, Sniffed, sniff

# --- zip -----------------------------------------------------------------------------------


def test_zip_with_parent_entries_is_rejected(tmp_path: Path, make_zip) -> None:
    z = make_zip("evil.zip", {"ok.jpg": b"fine", "photos/../../escape.txt": b"pwned"})
    dest = tmp_path / "x" / "dest"
    with pytest.raises(E.UnsafeArchive, match=r"evil\.zip: entry .*outside"):
        extract_zip(z, dest)
    assert not (tmp_path / "x" / "escape.txt").exists() and not (tmp_path / "escape.txt").exists()
    assert not list(dest.rglob("*")) if dest.exists() else True  # nothing extracted at all


@pytest.mark.parametrize("name", ["/etc/cron.d/evil", "C:/Windows/evil.jpg", "..\\..\\evil.jpg"])
def test_zip_absolute_and_windows_paths_rejected(tmp_path: Path, make_zip, name: str) -> None:
    z = make_zip("abs.zip", {name: b"x"})
    with pytest.raises(E.UnsafeArchive):
        extract_zip(z, tmp_path / "dest")


def test_zip_symlink_rejected(tmp_path: Path, make_zip) -> None:
    z = make_zip("link.zip", {"a.jpg": b"x"}, symlinks={"b.jpg": "/etc/passwd"})
    with pytest.raises(E.UnsafeArchive, match="symbolic link"):
        extract_zip(z, tmp_path / "dest")


def test_zip_expanding_past_limit(tmp_path: Path, make_zip) -> None:
    z = make_zip("big.zip", {"a.bin": b"\x00" * 3_000_000, "b.bin": b"\x00" * 3_000_000})
    assert z.stat().st_size < 100_000
    with pytest.raises(E.ArchiveTooLarge, match=r"limit of 5.0 MB"):
        extract_zip(z, tmp_path / "dest", ArchiveLimits(max_total_bytes=5_000_000))
    assert not list((tmp_path / "dest").rglob("*.bin"))


def test_zip_bomb_ratio_caught_while_streaming(tmp_path: Path, make_zip) -> None:
    z = make_zip("bomb.zip", {"zeros.bin": b"\x00" * 40_000_000})
    with pytest.raises(E.ArchiveTooLarge, match="zip bomb"):
        extract_zip(z, tmp_path / "dest")
    assert not (tmp_path / "dest" / "zeros.bin").exists()


def test_zip_entry_count_limit(tmp_path: Path, make_zip) -> None:
    z = make_zip("many.zip", {f"f{i}.jpg": b"x" for i in range(11)})
    with pytest.raises(E.ArchiveTooLarge, match="11 entries"):
        extract_zip(z, tmp_path / "dest", ArchiveLimits(max_entries=10))


def test_zip_good_extraction_skips_junk(tmp_path: Path, make_zip) -> None:
    z = make_zip(
        "ok.zip", {"a/b/c.jpg": b"1", "d.png": b"2", "__MACOSX/a/._c.jpg": b"j", ".DS_Store": b"j"}
    )
    out = extract_zip(z, tmp_path / "dest")
    assert sorted(p.relative_to(tmp_path / "dest").as_posix() for p in out) == [
        "a/b/c.jpg",
        "d.png",
    ]
    assert (tmp_path / "dest" / "a/b/c.jpg").read_bytes() == b"1"


def test_corrupt_zip(tmp_path: Path) -> None:
    p = tmp_path / "broken.zip"
    p.write_bytes(b"PK\x03\x04" + b"\x00" * 50)
    with pytest.raises(E.CorruptArchive, match=r"broken.zip"):
        extract_zip(p, tmp_path / "dest")


# --- photos ----------------------------------------------------------------------------------


def _exif_jpeg(path: Path, pixels: np.ndarray, orientation: int) -> None:
    im = Image.fromarray(pixels)
    exif = Image.Exif()
    exif[0x0112] = orientation
    im.save(path, "JPEG", quality=95, exif=exif.tobytes())


def test_photo_exif_orientation_applied(tmp_path: Path) -> None:
    pixels = photo("astronaut")[100:300, 50:350]  # 300 wide, 200 high
    src = tmp_path / "portrait.jpg"
    _exif_jpeg(src, pixels, orientation=6)  # 6: display rotated 90 degrees clockwise
    res = process_source(src, IngestOptions(), tmp_path / "out")
    (item,) = res.clips
    assert res.kind == "photo" and item.frames == 1 and item.keyframes == (item.path,)
    out = np.asarray(Image.open(item.path).convert("RGB"), np.float32)
    assert out.shape == (300, 200, 3)
    cw = np.rot90(pixels, k=-1).astype(np.float32)
    ccw = np.rot90(pixels, k=1).astype(np.float32)
    assert np.abs(out - cw).mean() < 8 < np.abs(out - ccw).mean()
    assert 0x0112 not in Image.open(item.path).getexif()


@pytest.mark.parametrize("fmt", ["heic", "avif"])
def test_phone_photos_heic_and_avif_come_out_upright(tmp_path: Path, fmt: str) -> None:
    """An iPhone's HEIC (or an AVIF) of a portrait shot: stored sideways with the turn to
    display it (libheif writes EXIF orientation 6 as the HEIF rotation an iPhone stores)."""
    pixels = photo("astronaut")[100:300, 50:350]  # 300 wide, 200 high
    src = tmp_path / "IMG_0001.bin"  # the content decides
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise
    pillow_heif.register_heif_opener()  # the writer (ingest registers the reader)
    saver = {"heic": "HEIF", "avif": "AVIF"}[fmt]
    Image.fromarray(pixels).save(src, saver, quality=95, exif=exif.tobytes())
    assert sniff(src) == Sniffed(MediaKind.PHOTO, fmt)
    res = process_source(src, IngestOptions(), tmp_path / "out")
    assert res.kind == "photo" and res.format == fmt
    out = np.asarray(Image.open(res.clips[0].path).convert("RGB"), np.float32)
    assert out.shape == (300, 200, 3)
    cw = np.rot90(pixels, k=-1).astype(np.float32)
    ccw = np.rot90(pixels, k=1).astype(np.float32)
    assert np.abs(out - cw).mean() < 8 < np.abs(out - ccw).mean()


def test_a_truncated_heic_says_it_is_damaged_on_one_line(tmp_path: Path) -> None:
    """An upload cut short: the header sniffs as HEIC, the image data ends early."""
    pillow_heif.register_heif_opener()
    whole = tmp_path / "whole.heic"
    Image.fromarray(photo("astronaut")).save(whole, "HEIF", quality=90)
    src = tmp_path / "IMG_0002.HEIC"
    src.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(E.CorruptMedia) as err:
        process_source(src, IngestOptions(), tmp_path / "out")
    msg = str(err.value)
    # libheif's own reason ends in a newline; the message stays one line
    assert msg.startswith("IMG_0002.HEIC: the image data is damaged or truncated (")
    assert "upload it again" in msg and "\n" not in msg


def test_16_bit_greyscale_photo_keeps_its_tones(tmp_path: Path) -> None:
    """A scan or a raw converter's 16-bit greyscale PNG: not turned white by an 8-bit clip."""
    grey = photo("camera")[..., 0]
    src = tmp_path / "scan.png"
    Image.fromarray(grey.astype(np.uint16) * 257).save(src)
    assert Image.open(src).mode.startswith("I")
    res = process_source(src, IngestOptions(), tmp_path / "out")
    out = np.asarray(Image.open(res.clips[0].path).convert("L"), np.float32)
    assert np.abs(out - grey).mean() < 1.0


def _s15(v: float) -> bytes:
    return struct.pack(">i", round(v * 65536))


def _matrix_profile(desc: str, colorants: list[tuple[float, float, float]]) -> bytes:
    """A minimal ICC v2 display profile (no profile file ships in any package here): RGB
    colorants as D50-adapted XYZ, a 2.2 gamma, D50 white."""

    def xyz(v: tuple[float, float, float]) -> bytes:
        return b"XYZ " + b"\0" * 4 + b"".join(_s15(c) for c in v)

    ascii_desc = desc.encode() + b"\0"
    tags = [
        (b"desc", b"desc" + b"\0" * 4 + struct.pack(">I", len(ascii_desc)) + ascii_desc
         + struct.pack(">IIHB", 0, 0, 0, 0) + b"\0" * 67),
        (b"wtpt", xyz((0.9642, 1.0, 0.8249))),
        (b"rXYZ", xyz(colorants[0])),
        (b"gXYZ", xyz(colorants[1])),
        (b"bXYZ", xyz(colorants[2])),
        *((sig, b"curv" + b"\0" * 4 + struct.pack(">IH", 1, round(2.2 * 256)) + b"\0\0")
          for sig in (b"rTRC", b"gTRC", b"bTRC")),
        (b"cprt", b"text" + b"\0" * 4 + b"none\0"),
    ]  # fmt: skip
    start = 128 + 4 + 12 * len(tags)
    table, data = b"", b""
    for sig, body in tags:
        data += b"\0" * (-(start + len(data)) % 4)
        table += sig + struct.pack(">II", start + len(data), len(body))
        data += body
    header = (
        struct.pack(">I", start + len(data)) + b"\0" * 4 + struct.pack(">I", 0x02100000)
        + b"mntrRGB XYZ " + b"\0" * 12 + b"acsp" + b"\0" * 28
        + _s15(0.9642) + _s15(1.0) + _s15(0.8249) + b"\0" * 48
    )  # fmt: skip
    return header + struct.pack(">I", len(tags)) + table + data


# Display P3 (an iPhone's photos), D50-adapted as in Apple's profile
DISPLAY_P3 = [(0.5151, 0.2412, -0.0011), (0.2919, 0.6922, 0.0419), (0.1572, 0.0666, 0.7841)]


@pytest.mark.parametrize("fmt", ["JPEG", "HEIF"])
def test_a_display_p3_photo_is_converted_to_srgb(tmp_path: Path, fmt: str) -> None:
    """Its pixels read as sRGB are dull (the astronaut's orange suit and the flag lose a fifth
    of their saturation); through its embedded profile they come back to the sRGB original."""
    icc = _matrix_profile("Display P3", DISPLAY_P3)
    p3 = ImageCms.ImageCmsProfile(io.BytesIO(icc))
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
    original = Image.fromarray(photo("astronaut"))
    encoded = ImageCms.profileToProfile(original, srgb, p3, outputMode="RGB")
    assert encoded is not None
    src = tmp_path / "IMG_0002.bin"
    pillow_heif.register_heif_opener()
    encoded.save(src, fmt, quality=98, icc_profile=icc)
    res = process_source(src, IngestOptions(), tmp_path / "out")
    out = np.asarray(Image.open(res.clips[0].path).convert("RGB"), np.float32)
    want = np.asarray(original, np.float32)
    as_srgb = np.abs(np.asarray(encoded, np.float32) - want).mean()
    assert np.abs(out - want).mean() < 0.5 * as_srgb, (np.abs(out - want).mean(), as_srgb)


def test_tiff_photos_and_scans_are_taken_and_camera_raws_refused(tmp_path: Path) -> None:
    """TIFF is what scanners and photo editors write (8-bit LZW, 16-bit greyscale); a DNG or
    NEF is a TIFF too, holding the camera's small preview: refused, naming the fix."""
    rgb = tmp_path / "print.tif"
    Image.fromarray(photo("astronaut")).save(rgb, "TIFF", compression="tiff_lzw")
    scan = tmp_path / "scan.tiff"
    Image.fromarray(photo("camera")[..., 0].astype(np.uint16) * 257).save(scan, "TIFF")
    for src, want in ((rgb, photo("astronaut")), (scan, photo("camera"))):
        assert sniff(src) == Sniffed(MediaKind.PHOTO, "tiff")
        res = process_source(src, IngestOptions(), tmp_path / src.stem)
        out = np.asarray(Image.open(res.clips[0].path).convert("RGB"), np.float32)
        assert res.format == "tiff" and np.abs(out - want).mean() < 1.0

    dng_tags = TiffImagePlugin.ImageFileDirectory_v2()
    dng_tags[50706] = b"\x01\x04\x00\x00"  # DNGVersion
    dng_tags.tagtype[50706] = 1
    dng = tmp_path / "IMG_0003.bin"
    Image.fromarray(photo("astronaut")).save(dng, "TIFF", tiffinfo=dng_tags)
    nef = tmp_path / "DSC_0004.NEF"
    Image.fromarray(photo("astronaut")).save(nef, "TIFF")
    for raw in (dng, nef):
        with pytest.raises(
            E.UnsupportedFormat, match=r"RAW .*export the photo as JPEG, PNG or TIFF"
        ):
            process_source(raw, IngestOptions(), tmp_path / "raw")
    cr2 = tmp_path / "IMG_0005.CR2"
    cr2.write_bytes(b"II*\x00\x10\x00\x00\x00CR\x02\x00" + b"\x00" * 200)
    with pytest.raises(E.UnsupportedFormat, match="RAW"):
        sniff(cr2)


def test_an_animated_gif_is_a_video_and_a_still_one_a_photo(tmp_path: Path) -> None:
    """Effect and reaction loops come as GIFs: an animated one is cut into clips like any
    video (its rate from the frame delays), a still one is a photo, a broken one is refused."""
    pics = [Image.fromarray(f) for f in render_shot(ShotSpec("astronaut", 60, "pan"), (320, 240))]
    anim = tmp_path / "loop.gif"
    pics[0].save(anim, save_all=True, append_images=pics[1:], duration=66, loop=0)  # ~15 fps
    assert sniff(anim) == Sniffed(MediaKind.VIDEO, "gif")
    res = process_source(anim, IngestOptions(), tmp_path / "anim")
    assert res.kind == "video" and res.clips and res.clips[0].duration >= 3.0
    still = tmp_path / "still.gif"
    pics[0].save(still)
    assert sniff(still) == Sniffed(MediaKind.PHOTO, "gif")
    assert process_source(still, IngestOptions(), tmp_path / "still").kind == "photo"
    # a header claiming 60000 x 60000: refused with the size, not an internal error
    bomb = tmp_path / "bomb.gif"
    bomb.write_bytes(
        b"GIF89a" + struct.pack("<HH", 60000, 60000) + b"\x00\x00\x00,"
        + struct.pack("<HHHH", 0, 0, 60000, 60000) + b"\x00\x02\x02\x44\x01\x00;"
    )  # fmt: skip
    with pytest.raises(E.VideoTooLarge, match=r"bomb\.gif: .*too large"):
        process_source(bomb, IngestOptions(), tmp_path / "bomb")
    broken = tmp_path / "broken.gif"
    broken.write_bytes(b"GIF89a" + b"\x00" * 100)
    with pytest.raises(E.IngestError, match=r"broken\.gif"):
        process_source(broken, IngestOptions(), tmp_path / "broken")


def test_photo_detected_by_content_and_resized(tmp_path: Path) -> None:
    src = tmp_path / "actually_png.jpg"
    Image.fromarray(photo("coffee")).save(src, "PNG")
    webp = tmp_path / "pic.bin"
    Image.fromarray(photo("chelsea")).save(webp, "WEBP")
    bmp = tmp_path / "pic.bmp"
    Image.fromarray(photo("rocket")).save(bmp, "BMP")
    assert (
        sniff(src).format == "png" and sniff(webp).format == "webp" and sniff(bmp).format == "bmp"
    )
    res = process_source(
        src, IngestOptions(photo_format="jpg", photo_max_long_side=300), tmp_path / "o"
    )
    assert res.format == "png" and res.clips[0].path.suffix == ".jpg"
    assert (res.clips[0].width, res.clips[0].height) == (300, 200)
    assert process_source(webp, IngestOptions(), tmp_path / "w").format == "webp"


def test_photo_with_alpha_goes_on_white(tmp_path: Path) -> None:
    rgba = np.zeros((100, 100, 4), np.uint8)
    rgba[25:75, 25:75] = (255, 0, 0, 255)
    src = tmp_path / "logo.png"
    Image.fromarray(rgba, "RGBA").save(src)
    out = np.asarray(Image.open(process_source(src, IngestOptions(), tmp_path / "o").clips[0].path))
    assert (
        out.shape == (100, 100, 3)
        and tuple(out[0, 0]) == (255, 255, 255)
        and tuple(out[50, 50]) == (255, 0, 0)
    )


def test_truncated_and_tiny_photos(tmp_path: Path) -> None:
    buf = io.BytesIO()
    Image.fromarray(photo("astronaut")).save(buf, "JPEG")
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 3])
    with pytest.raises(E.CorruptMedia, match=r"cut.jpg: .*truncated"):
        process_source(cut, IngestOptions(), tmp_path / "o")
    tiny = tmp_path / "tiny.png"
    Image.new("RGB", (16, 16)).save(tiny)
    with pytest.raises(E.VideoTooSmall, match="16x16"):
        process_source(tiny, IngestOptions(), tmp_path / "o2")


@pytest.mark.parametrize(
    ("head", "error", "word"),
    [
        (b"ID3\x03\x00" + b"\x00" * 100, E.UnsupportedFormat, "MP3"),
        (b"\x7fELF" + b"\x00" * 100, E.UnsupportedFormat, "not a recognised"),
    ],
)
def test_sniff_explains_what_it_saw(tmp_path: Path, head: bytes, error: type, word: str) -> None:
    p = tmp_path / "upload.mp4"
    p.write_bytes(head)
    with pytest.raises(error, match=word):
        sniff(p)


def test_sniff_video_containers(tmp_path: Path) -> None:
    from footage import lavfi_video

    for name, fmt in [("a.mkv", "mkv"), ("a.webm", "webm"), ("a.avi", "avi"), ("a.mov", "mov")]:
        codec = (
            ["-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8"]
            if fmt == "webm"
            else ["-c:v", "mpeg4"]
            if fmt == "avi"
            else ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]
        )
        p = lavfi_video(tmp_path / name, 0.2, extra=codec)
        # Renamed to a misleading extension: content still decides.
        q = p.rename(p.with_suffix(".dat"))
        assert sniff(q) == Sniffed(MediaKind.VIDEO, fmt)


def test_sha256_streams_whole_file(tmp_path: Path) -> None:
    p = tmp_path / "blob"
    data = np.random.default_rng(0).bytes(3 * 1024 * 1024 + 17)
    p.write_bytes(data)
    assert sha256_file(p) == hashlib.sha256(data).hexdigest()


def test_url_source_without_yt_dlp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from loraforge.ingest.url import fetch_url

    monkeypatch.setitem(sys.modules, "yt_dlp", None)  # makes the import fail like a missing package
    # URL ingest is off by default (the egress guard); with it on, a page without yt-dlp is
    # tests/unit/runtime/test_egress.py's case.
    with pytest.raises(E.UrlSourceUnavailable, match=r"URL ingest is off.*upload the file"):
        fetch_url("https://example.com/v", tmp_path)
    with pytest.raises(E.UrlFetchFailed, match="http"):
        fetch_url("file:///etc/passwd", tmp_path)


# --- planning (pure) -------------------------------------------------------------------------


def _analysis(n: int, fps: float = 30.0) -> Analysis:
    return Analysis(
        cuts=(),
        luma=np.full(n, 100.0),
        pts=np.arange(n) / fps,
        fps=fps,
        variable_frame_rate=False,
        frame_count=n,
    )


def _shot(i: int, s: int, e: int, a: Analysis, starts="cut", ends="cut") -> Shot:
    return Shot(i, s, e, a.time_at(s), a.time_at(e), ends_with=ends, starts_with=starts)


@pytest.mark.parametrize(
    ("seconds", "expected"), [(3.2, 1), (5.0, 1), (9.0, 2), (12.0, 3), (20.0, 5), (31.0, 8)]
)
def test_long_shots_split_within_bounds(seconds: float, expected: int) -> None:
    n = int(seconds * 30) + 4
    a = _analysis(n)
    plans, skipped = plan_clips([_shot(0, 0, n, a)], a, ClipOptions(), 16.0)
    assert len(plans) == expected and not skipped
    for p in plans:
        assert 3.0 <= p.out_frames / 16 <= 5.0 and p.duration <= 5.0 + 1 / 30
    # Contiguous, inside the trimmed shot, no overlap.
    assert plans[0].start_frame == 2 and plans[-1].end_frame == n - 2
    assert all(x.end_frame == y.start_frame for x, y in itertools.pairwise(plans))


def test_awkward_length_keeps_max_clip_and_reports_rest() -> None:
    a = _analysis(5 * 30 + 15 + 4)  # 5.5 s after trimming: neither one nor two clips of 3-5 s fit
    clips = ClipOptions(min_seconds=3.0)
    plans, skipped = plan_clips([_shot(0, 0, a.frame_count, a)], a, clips, 16.0)
    assert len(plans) == 1 and plans[0].out_frames == 80
    assert skipped and all("remainder" in s.reason for s in skipped)


def test_trim_only_at_cuts_and_short_shots_skipped() -> None:
    a = _analysis(300)
    shots = [
        _shot(0, 0, 120, a, starts="start"),
        _shot(1, 120, 200, a),
        _shot(2, 200, 300, a, ends="end"),
    ]
    # shot 1 is 80 frames (2.67 s at 30 fps), under a 3 s minimum
    plans, skipped = plan_clips(shots, a, ClipOptions(min_seconds=3.0, trim_frames=3), 16.0)
    assert [(p.start_frame, p.end_frame) for p in plans] == [(0, 117), (203, 300)]
    assert len(skipped) == 1 and skipped[0].shot_index == 1 and "too short" in skipped[0].reason
