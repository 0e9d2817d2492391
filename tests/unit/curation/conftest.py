from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from loraforge.curation.dlib_backend import DlibBackend
from loraforge.curation.policy import CurationPolicy


@pytest.fixture(scope="session")
def backend() -> DlibBackend:
    return DlibBackend()


@pytest.fixture(scope="session")
def small_policy() -> CurationPolicy:
    # test clips are 480x360, 2.5 s at 8 fps: lower the size floor, keep everything else default
    return CurationPolicy(min_short_side_px=256, frames_per_clip=6, target_size=4)
