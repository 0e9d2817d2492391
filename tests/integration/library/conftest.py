"""The gateway stack of tests/integration/gateway plus a real trainer worker (tiny presets),
and seed 004 zips built once per module from real photos."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
from tests.integration.gateway.conftest import gateway, make_gateway  # noqa: F401 (fixtures)
from tests.integration.library.seed004_zip import _photo, build_kf2v_zip, effect_clip

from loraforge.runtime.job_service import JobWorker
from loraforge.runtime.jobs import JobStore


@pytest.fixture
async def trainer_worker(bus, settings, store, tmp_path):
    """The trainer's work on the job store the gateway's trainer servicer writes to."""
    from loraforge.trainer.worker import TrainingWork

    jobs = await JobStore.open(bus.jetstream, settings.nats.jobs_bucket)
    await JobWorker(
        "trainer", jobs, bus, TrainingWork(store, workdir_root=tmp_path / "trainer", tick_s=0.2)
    ).start()
    return jobs


@pytest.fixture(scope="module")
def kf2v_zip(tmp_path_factory) -> Path:
    return build_kf2v_zip(tmp_path_factory.mktemp("seed004") / "wan-kf2v-training-dataset.zip")


def zip_variant(
    src: Path,
    dest: Path,
    *,
    keep: int | None = None,
    rename: dict[str, str] | None = None,
    replace: dict[str, bytes] | None = None,
) -> Path:
    """A copy of a seed 004 zip with the first `keep` samples, data.jsonl fields renamed, or
    members replaced."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dest, "w", zipfile.ZIP_STORED) as zout:
        lines = [json.loads(x) for x in zin.read("data.jsonl").decode().splitlines() if x.strip()]
        lines = lines[:keep] if keep is not None else lines
        for line in lines:
            for old, new in (rename or {}).items():
                line[new] = line.pop(old)
        zout.writestr(
            "data.jsonl", "".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines)
        )
        for name in zin.namelist():
            if name != "data.jsonl":
                zout.writestr(name, (replace or {}).get(name) or zin.read(name))
    return dest


def long_clip_bytes(tmp: Path, seconds: float = 6.0) -> bytes:
    """A clip of the same effect, `seconds` long (over seed 004's 5 s)."""
    return effect_clip(_photo("astronaut"), tmp / "long.mp4", frames=int(8 * seconds)).read_bytes()
