"""Fixtures for the ingest tests; the generators themselves live in footage.py (bench/ingest.py
uses them too)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
from footage import REEL, Footage, make_footage


@pytest.fixture(scope="session")
def reel(tmp_path_factory: pytest.TempPathFactory) -> Footage:
    return make_footage(tmp_path_factory.mktemp("reel") / "reel.mp4", REEL)


@pytest.fixture
def make_zip(tmp_path: Path):
    def _make(name: str, entries: dict[str, bytes], symlinks: dict[str, str] | None = None) -> Path:
        path = tmp_path / name
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            for entry, data in entries.items():
                zf.writestr(entry, data)
            for entry, target in (symlinks or {}).items():
                info = zipfile.ZipInfo(entry)
                info.external_attr = 0o120777 << 16
                zf.writestr(info, target)
        return path

    return _make
