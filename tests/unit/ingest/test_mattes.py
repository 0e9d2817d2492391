"""Black mattes cut away at ingest (ingest/matte.py): a scope film letterboxed into 16:9, a 4:3
programme pillarboxed, an anamorphic SD letterbox; and what must not be cut: a low-key shot's
dark, grainy surroundings, a dark sky over a lit street, bars that come and go."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from footage import ShotSpec, encode, read_frames, render_shot

from loraforge.curation.quality import measure_frame
from loraforge.ingest import IngestOptions, process_source
from loraforge.ingest.cut import output_size
from loraforge.ingest.matte import frame_size, matte_crop
from loraforge.ingest.models import ProbeResult

W, H = 640, 360


def _matted(picture: list[np.ndarray], box: tuple[int, int, int, int]) -> list[np.ndarray]:
    """Each picture (RGB) scaled into ``box`` (x, y, w, h) of a black W x H frame."""
    x, y, w, h = box
    out = []
    for p in picture:
        f = np.zeros((H, W, 3), np.uint8)
        f[y : y + h, x : x + w] = cv2.resize(p, (w, h), interpolation=cv2.INTER_AREA)
        out.append(f)
    return out


def _ingest(tmp_path: Path, frames: list[np.ndarray], name: str, **kw) -> list:
    src = tmp_path / f"{name}.mp4"
    encode(iter(frames), src, (W, H), 25.0, **kw)
    return list(process_source(src, IngestOptions(), tmp_path / name).clips)


def test_scope_film_letterboxed_in_16_9_is_cut_to_its_picture(tmp_path: Path) -> None:
    # 2.39:1 inside 640x360: a 268-row picture, 46 black rows above and below
    pic = render_shot(ShotSpec("astronaut", 100, "pan"), (640, 268))
    clips = _ingest(tmp_path, _matted(pic, (0, 46, 640, 268)), "scope")
    assert clips
    for c in clips:
        assert c.crop == (640, 268, 0, 46)
        assert (c.width, c.height) == (640, 268)
        frames = read_frames(c.path, (c.width, c.height))
        q = measure_frame(
            cv2.cvtColor(frames[len(frames) // 2].astype(np.uint8), cv2.COLOR_RGB2BGR)
        )
        assert q.bar_top == q.bar_bottom == 0  # curation sees no bars now
        assert frames[:, :2].mean() > 30 and frames[:, -2:].mean() > 30  # and no dark line


@pytest.mark.parametrize(("grain", "black"), [(10.0, 0), (16.0, 0), (8.0, 16)])
def test_mattes_under_film_grain_or_a_lifted_black_are_cut(
    tmp_path: Path, grain: float, black: int
) -> None:
    # a film scan or a graded master: grain over the whole frame, bars included, and bars at
    # a dark grey rather than black (16 of 255 here). Before, cropdetect's default threshold
    # (24) missed the grey bars and grain broke the bars' flatness on some frames; the clips
    # kept their bars and curation refused them as `letterbox`
    rng = np.random.default_rng(1)
    pic = render_shot(ShotSpec("astronaut", 100, "pan"), (640, 268))
    frames = []
    for f in _matted(pic, (0, 46, 640, 268)):
        f[:46] = f[-46:] = black
        frames.append(_grain(rng, f, grain))
    clips = _ingest(tmp_path, frames, "grainy")
    assert clips and all(c.crop == (640, 268, 0, 46) for c in clips)


def test_black_bars_beside_a_night_scene_are_cut(tmp_path: Path) -> None:
    # the picture's edge rows are dark (RGB ~23-28): a cropdetect threshold loose enough for
    # grey bars takes them for bars too; the strict one still finds the matte's edge
    rng = np.random.default_rng(2)
    pic = render_shot(ShotSpec("astronaut", 100, "pan"), (640, 268))
    frames = [_grain(rng, (f * 0.2).astype(np.uint8), 3.0) for f in _matted(pic, (0, 46, 640, 268))]
    clips = _ingest(tmp_path, frames, "night")
    assert clips and all(c.crop == (640, 268, 0, 46) for c in clips)


def test_pillarboxed_4_3_is_cut_and_anamorphic_sd_keeps_its_shape(tmp_path: Path) -> None:
    pic = render_shot(ShotSpec("chelsea", 100, "zoom"), (480, 360))
    (clip,) = _ingest(tmp_path, _matted(pic, (80, 0, 480, 360)), "pillar")[:1]
    assert clip.crop == (480, 360, 80, 0) and (clip.width, clip.height) == (480, 360)
    # a phone's vertical video reposted in a 16:9 frame
    pic = render_shot(ShotSpec("astronaut", 100, "pan"), (202, 360))
    (clip,) = _ingest(tmp_path, _matted(pic, (219, 0, 202, 360)), "vertical")[:1]
    assert clip.crop == (200, 360, 220, 0) and (clip.width, clip.height) == (200, 360)

    # PAL 16:9 anamorphic (720x576 stored, 64:45 pixels) carrying a 2.35:1 letterbox
    pic = render_shot(ShotSpec("coffee", 100, "pan"), (720, 436))
    frames = [np.zeros((576, 720, 3), np.uint8) for _ in pic]
    for f, p in zip(frames, pic, strict=True):
        f[70:506] = p
    src = tmp_path / "pal.mp4"
    encode(iter(frames), src, (720, 576), 25.0, extra=["-vf", "setsar=64/45"])
    (clip,) = process_source(src, IngestOptions(), tmp_path / "pal").clips[:1]
    assert clip.crop == (720, 436, 0, 70)
    # displayed 1024 wide; the picture's aspect as shown: 1024 / 436 = 2.35
    assert clip.width == 1024 and abs(clip.width / clip.height - 1024 / 436) < 0.01


def test_subtitles_in_the_bottom_bar_go_with_the_crop(tmp_path: Path) -> None:
    """A letterboxed film with its subtitles in the bottom bar, shown on 40 % of the frames."""
    pic = render_shot(ShotSpec("astronaut", 100, "pan"), (640, 268))
    frames = _matted(pic, (0, 46, 640, 268))
    for f in frames[20:60]:
        cv2.putText(f, "Where are you going?", (150, 340), cv2.FONT_HERSHEY_SIMPLEX, 0.8,
                    (235, 235, 235), 2, cv2.LINE_AA)  # fmt: skip
    clips = _ingest(tmp_path, frames, "subs")
    assert clips and all(c.crop == (640, 268, 0, 46) for c in clips)


def _grain(rng: np.random.Generator, frame: np.ndarray, sigma: float) -> np.ndarray:
    noisy = frame.astype(np.float32) + rng.normal(0, sigma, frame.shape)
    return np.clip(noisy, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("grain", [3.0, 10.0])
def test_dark_surroundings_of_a_low_key_shot_are_picture_not_matte(
    tmp_path: Path, grain: float
) -> None:
    """The astronaut lit by a spot, the room around her falling to near black above and below
    (symmetric), with film grain: the dark rows are picture, nothing is cut."""
    rng = np.random.default_rng(0)
    pic = render_shot(ShotSpec("astronaut", 100, "still"), (W, H))
    yy = np.abs(np.linspace(-1, 1, H))[:, None, None]
    light = np.clip(1.6 - 1.8 * yy, 0.02, 1.0)  # near black over the top and bottom fifth
    frames = [_grain(rng, (p * light).astype(np.uint8), grain) for p in pic]
    clips = _ingest(tmp_path, frames, "lowkey")
    assert clips and all(c.crop is None and (c.width, c.height) == (W, H) for c in clips)


def test_a_dark_sky_is_not_a_letterbox(tmp_path: Path) -> None:
    """Flat black over the top of the frame only (a night sky): not a centred matte."""
    pic = render_shot(ShotSpec("coffee", 100, "pan"), (W, H))
    for p in pic:
        p[:60] = 0
    clips = _ingest(tmp_path, pic, "sky")
    assert clips and all(c.crop is None for c in clips)


@pytest.mark.parametrize(
    ("bars", "want"),
    [
        ([(46, 46, 0, 0)] * 5, (640, 268, 0, 46)),  # letterbox
        # something in a bar on some frames (subtitles): the other bar holds on every frame
        ([(46, 46, 0, 0)] * 3 + [(46, 12, 0, 0)] * 2, (640, 268, 0, 46)),
        ([(46, 46, 0, 0)] * 4 + [(0, 46, 0, 0)], (640, 268, 0, 46)),
        ([(46, 12, 0, 0)] * 3 + [(46, 46, 0, 0)] * 2, None),  # ... on most frames: not a matte
        ([(46, 46, 0, 0), (0, 46, 0, 0), (46, 0, 0, 0)], None),  # neither holds on every frame
        ([(46, 40, 0, 0)] * 5, (640, 274, 0, 46)),  # off by 6 rows: an encoder's rounding
        ([(46, 10, 0, 0)] * 5, None),  # not centred
        ([(5, 5, 0, 0)] * 5, None),  # a few rows of overscan
        ([(150, 150, 0, 0)] * 5, None),  # 60 rows of "picture" left: a dark shot
        ([(0, 0, 219, 219)] * 5, (200, 360, 220, 0)),  # a 9:16 phone video pillarboxed in 16:9
        ([None, (46, 46, 0, 0), None], (640, 268, 0, 46)),  # black frames say nothing
        ([None, None], None),
        ([(45, 47, 81, 79)] * 3, (478, 266, 82, 46)),  # windowbox: even sizes, bars rounded up
    ],
)
def test_matte_crop_rules(bars, want) -> None:
    assert matte_crop(bars, (W, H)) == want


def test_a_turned_picture_is_cropped_in_the_frame_the_filters_see() -> None:
    """A phone's portrait video stored sideways (1920x1080, turned 90 degrees to display): the
    graph's frames are 1080x1920, the crop is in those, and so is the clip's size."""
    turned = ProbeResult(
        path=Path("p.mp4"), container="mov", codec="h264", width=1080, height=1920,
        coded_width=1920, coded_height=1080, rotation=90, fps=30.0, variable_frame_rate=False,
        duration=5.0, frame_count=150, frame_count_exact=True, bitrate=None, has_audio=False,
    )  # fmt: skip
    assert frame_size(turned) == (1080, 1920)
    assert output_size(turned, None, (1080, 1400, 0, 260)) == (1080, 1400)
    assert output_size(turned, 1280, (1080, 1400, 0, 260)) == (986, 1280)
