from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from captioning_footage import make_clips


@pytest.fixture(scope="session")
def clips(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """12 two-second 128x128 H.264 clips (the hosted Wan service wants >= 10 samples)."""
    return make_clips(tmp_path_factory.mktemp("clips"), 12)
