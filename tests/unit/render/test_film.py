"""Joining transition videos with real ffmpeg; frame counts checked on the output."""

from __future__ import annotations

from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image
from skimage import data

from loraforge.render.film import count_frames, join, thumbnail_strip
from loraforge.runtime.errors import InvalidInput

FPS = 16


def _clip(path: Path, frames: int, image: np.ndarray) -> Path:
    base = np.asarray(Image.fromarray(image).resize((128, 96)))
    writer = imageio_ffmpeg.write_frames(
        str(path), (128, 96), fps=FPS, macro_block_size=16, output_params=["-preset", "ultrafast"]
    )
    writer.send(None)
    for i in range(frames):
        writer.send(np.ascontiguousarray(np.roll(base, i * 2, axis=1)))
    writer.close()
    return path


@pytest.fixture
def clips(tmp_path: Path) -> list[Path]:
    return [
        _clip(tmp_path / "a.mp4", 33, data.astronaut()),
        _clip(tmp_path / "b.mp4", 17, data.chelsea()),
        _clip(tmp_path / "c.mp4", 21, data.coffee()),
    ]


def test_cut_join_keeps_every_frame(clips: list[Path], tmp_path: Path) -> None:
    film = join(clips, tmp_path / "film.mp4", fps=FPS)
    assert count_frames(film) == 33 + 17 + 21


def test_crossfade_overlaps_each_join(clips: list[Path], tmp_path: Path) -> None:
    film = join(clips, tmp_path / "film.mp4", fps=FPS, mode="crossfade", crossfade_s=0.5)
    overlap = int(0.5 * FPS)
    assert abs(count_frames(film) - (33 + 17 + 21 - 2 * overlap)) <= 1


def test_crossfade_longer_than_a_clip_is_refused(clips: list[Path], tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="crossfade"):
        join(clips, tmp_path / "film.mp4", fps=FPS, mode="crossfade", crossfade_s=2.0)


def test_thumbnail_strip(clips: list[Path], tmp_path: Path) -> None:
    strip = thumbnail_strip(clips[0], tmp_path / "strip.png", count=4, height=48)
    img = Image.open(strip)
    assert img.height == 48 and img.width == 4 * 64
