"""The gateway on a real uvicorn (free port, this test's event loop) in front of the real
ingest service in-process, over real NATS + S3 (tests/conftest.py); the other backends are
servicers without workers (jobs stay PENDING). The CLI runs as its own process, as a user runs
it: `python -m loraforge.cli.main --api URL --key KEY ...`."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from loraforge.gateway.app import create_app
from loraforge.gateway.clients import BackendClients
from loraforge.gateway.config import gateway_bucket
from loraforge.gateway.state import GatewayState
from loraforge.runtime.events import EventBus
from loraforge.runtime.host import ServiceProcess
from loraforge.runtime.jobs import JobStore
from loraforge.runtime.metrics import Metrics
from loraforge.stack.binaries import free_port

from ..gateway.conftest import TEST_CONFIG, GatewayStack, _servicer_mount

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "unit" / "ingest"))


@pytest.fixture
async def remote_gateway(settings, store) -> AsyncIterator[GatewayStack]:
    import uvicorn
    from loraforge.ingest.main import mount as ingest_mount

    cleanups: list[Callable[[], Awaitable[None]]] = []
    try:
        procs: dict[str, ServiceProcess] = {}
        for name in ("ingest", "curation", "captioning", "trainer", "render"):
            mount = ingest_mount if name == "ingest" else _servicer_mount(name)
            proc = ServiceProcess(name, settings, mount, drain_delay_s=0)
            await proc.start()
            procs[name] = proc
            cleanups.append(proc.stop)
        bus = await EventBus.connect(settings.nats, name="cli-remote-test")
        cleanups.append(bus.close)
        jobs = await JobStore.open(bus.jetstream, settings.nats.jobs_bucket)
        state = await GatewayState.open(bus.jetstream, gateway_bucket(settings))
        backends = BackendClients({n: f"127.0.0.1:{p.port}" for n, p in procs.items()}, timeout_s=5)
        cleanups.append(backends.close)
        app = create_app(settings, Metrics("gateway"), backends=backends, store=store,
                         jobs_store=jobs, state=state, bus=bus, config=TEST_CONFIG)
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                               lifespan="on"))
        task = asyncio.create_task(server.serve())
        for _ in range(250):
            if server.started:
                break
            if task.done():
                task.result()
            await asyncio.sleep(0.02)

        async def stop_server() -> None:
            server.should_exit = True
            await asyncio.wait_for(task, timeout=10)

        cleanups.append(stop_server)
        yield GatewayStack(f"http://127.0.0.1:{port}", state, backends, procs, app)
    finally:
        for cleanup in reversed(cleanups):
            try:
                await cleanup()
            except Exception as exc:  # noqa: BLE001 - best-effort teardown
                logging.getLogger(__name__).warning("teardown step failed: %s", exc)


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
            sys.executable, "-m", "loraforge.cli.main", *args, env={**env, **extra},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
        return Ran(proc.returncode or 0, out.decode(), err.decode())

    return run


@pytest.fixture(scope="session")
def two_shot_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two 3.5 s shots at 16 fps, 128x96: two clips with --min-s 2 --max-s 3."""
    from footage import ShotSpec, make_footage

    path = tmp_path_factory.mktemp("cli-remote-media") / "two_shots.mp4"
    make_footage(path, [ShotSpec("astronaut", 56, "pan"), ShotSpec("coffee", 56, "zoom")],
                 size=(128, 96), fps=16)
    return path
