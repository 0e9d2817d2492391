"""Synthetic datasets for the trainer tests (generated, never downloaded)."""

from __future__ import annotations

from pathlib import Path

import pytest

from loraforge.trainer.synthetic import write_image_dataset, write_video_dataset


@pytest.fixture(scope="session")
def video_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_video_dataset(tmp_path_factory.mktemp("videos"), clips=3, frames=17)


@pytest.fixture(scope="session")
def image_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_image_dataset(tmp_path_factory.mktemp("images"), images=4)


@pytest.fixture(scope="session")
def one_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_video_dataset(tmp_path_factory.mktemp("oneclip"), clips=1, frames=9)


@pytest.fixture(scope="session")
def one_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_image_dataset(tmp_path_factory.mktemp("oneimage"), images=1)


@pytest.fixture(scope="session")
def two_clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two clips: one trains, one is split off for validation (seed 004's rule, at least one)."""
    return write_video_dataset(tmp_path_factory.mktemp("twoclips"), clips=2, frames=9)
