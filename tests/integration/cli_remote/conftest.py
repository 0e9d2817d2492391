"""The gateway on a real uvicorn (free port, this test's event loop) in front of the real
ingest service in-process, over real NATS + S3 (tests/conftest.py); the other backends are
servicers without workers (jobs stay PENDING). The CLI runs as its own process, as a user runs
it: `python -m loraforge.cli.main --api URL --key KEY ...`."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from ..gateway.conftest import GatewayStack, make_gateway  # noqa: F401 (fixture)

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "unit" / "ingest"))


@pytest.fixture
async def remote_gateway(make_gateway) -> GatewayStack:  # noqa: F811 (the fixture)
    """The gateway stack with the real ingest service (media work included)."""
    from loraforge.ingest.main import mount as ingest_mount

    return await make_gateway(ingest_mount=ingest_mount)


@dataclass
class Ran:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


@pytest.fixture
def lf() -> Callable[..., Awaitable[Ran]]:
    """`python -m loraforge.cli.main ARGS` with no LORAFORGE_* / LF_* variables of ours: the
    remote path must not need the local stack's settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LORAFORGE_", "LF_"))}
    env["COLUMNS"] = "200"

    async def run(*args: str, timeout: float = 60, **extra: str) -> Ran:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "loraforge.cli.main",
            *args,
            env={**env, **extra},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
        return Ran(proc.returncode or 0, out.decode(), err.decode())

    return run


@pytest.fixture(scope="session")
def two_shot_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two 3.5 s shots at 16 fps, 128x96: two clips with --min-s 2 --max-s 3."""
    from footage import ShotSpec, make_footage

    path = tmp_path_factory.mktemp("cli-remote-media") / "two_shots.mp4"
    make_footage(
        path,
        [ShotSpec("astronaut", 56, "pan"), ShotSpec("coffee", 56, "zoom")],
        size=(128, 96),
        fps=16,
    )
    return path
