"""One real local stack for the whole fault suite: nats-server, SeaweedFS and every service as
its own process (`loraforge.stack.LocalStack`, what `loraforge stack up` runs), on free ports
in a temporary data dir. Faults are injected from outside, as an operator or a crash would:
SIGKILL of a service's process group, SIGTERM + restart of NATS, SIGKILL of the S3 server.

Redelivery settings are shortened so a dead worker's request comes back in seconds: ack_wait
6 s (the in-progress heartbeat every 2 s still gets through on a 2-core machine at load 20;
3 s did not, and redelivered live work), job beats every second, back-off 1/4/8/16 s over 8
deliveries (the defaults' shape, 1/5/15/60; the ~77 s they span outlast a 10 s store outage
plus the store's restart, which took up to 21 s at load 16). The staging sweeper removes what a
killed upload left after 20 s. Everything else is the services' own code and defaults.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from loraforge.runtime.settings import Settings, load_settings
from loraforge.stack.binaries import free_port, free_port_block

FAST_REDELIVERY = {
    "LORAFORGE_NATS__ACK_WAIT_S": "6",
    "LORAFORGE_NATS__BACKOFF_S": "[1, 4, 8, 16]",
    "LORAFORGE_NATS__MAX_DELIVER": "8",
    "LORAFORGE_NATS__JOB_BEAT_S": "1",
    "LORAFORGE_NATS__REAP_EVERY_S": "2",
    "LORAFORGE_S3__STAGING_MAX_AGE_S": "20",
    "LORAFORGE_S3__STAGING_SWEEP_EVERY_S": "5",
}
STAGING_SWEPT_WITHIN_S = 20 + 5 * 1.2 + 10  # bound + a jittered pass + slack


@dataclass
class FaultStack:
    settings: Settings  # a client's settings for this stack (ports, credentials)
    stack: Any  # LocalStack
    log: list[str] = field(default_factory=list)

    # -- faults ---------------------------------------------------------------------------

    def pid(self, name: str) -> int:
        return self.stack._load()[name].pid

    def kill(self, name: str) -> float:
        """kill -9 of the component's whole process group (the service and its ffmpeg)."""
        pid = self.pid(name)
        os.killpg(pid, signal.SIGKILL)
        _reap(pid)
        self.log.append(f"killed {name} (pid {pid})")
        return time.monotonic()

    def terminate(self, name: str) -> None:
        pid = self.pid(name)
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and _running(pid):
            time.sleep(0.05)
        if _running(pid):
            os.killpg(pid, signal.SIGKILL)
        _reap(pid)
        self.log.append(f"stopped {name} (pid {pid})")

    def restart(self) -> float:
        """Start whatever is not running (what an orchestrator does); returns when healthy."""
        self.stack.up(timeout_s=120)
        return time.monotonic()

    # -- inspection -----------------------------------------------------------------------

    def run(self, coro_fn, *args: Any) -> Any:
        """Run `coro_fn(bus, jobs, store, *args)` on fresh clients of this stack."""
        from loraforge.runtime.events import EventBus
        from loraforge.runtime.jobs import JobStore
        from loraforge.runtime.storage import ObjectStore

        async def main() -> Any:
            bus = await EventBus.connect(self.settings.nats, name="fault-suite")
            try:
                jobs = await JobStore.open(bus.jetstream, self.settings.nats.jobs_bucket)
                return await coro_fn(bus, jobs, ObjectStore.connect(self.settings.s3), *args)
            finally:
                await bus.close()

        return asyncio.run(main())

    def stored_events(self, event_type: str) -> int:
        async def count(bus, jobs, store) -> int:
            subject = bus.subject(event_type)
            info = await bus.jetstream.stream_info(bus.settings.stream, subjects_filter=subject)
            return (info.state.subjects or {}).get(subject, 0)

        return self.run(count)

    def job(self, tenant: str, project: str, job_id: str):
        async def get(bus, jobs, store):
            return await jobs.get(tenant, project, job_id)

        return self.run(get)

    def staging_swept(self) -> list[str]:
        """Wait until no `_staging/` object is left (the services' sweeper removes what a
        killed upload abandoned once it is older than the bound); returns what is left."""
        deadline = time.monotonic() + STAGING_SWEPT_WITHIN_S
        left = self.staging_objects()
        while left and time.monotonic() < deadline:
            time.sleep(1)
            left = self.staging_objects()
        return left

    def staging_objects(self) -> list[str]:
        from loraforge.runtime.storage import STAGING_PREFIX, Bucket, ObjectStore

        store = ObjectStore.connect(self.settings.s3)
        return [
            f"{b.value}/{o.object_name}"
            for b in Bucket
            for o in store._client.list_objects(
                store.bucket_name(b), prefix=STAGING_PREFIX, recursive=True
            )
        ]


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in {"Z", "X"}


def _reap(pid: int) -> None:
    """Collect the killed child so its pid reads as gone (the stack spawned it from here)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            if not _running(pid):
                return
            done = 0
        if done:
            return
        time.sleep(0.02)


@pytest.fixture(scope="session")
def fault_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultStack]:
    from loraforge.stack.local import LocalStack

    root = tmp_path_factory.mktemp("faults")
    env = {
        "LORAFORGE_ENV": "test",
        "LORAFORGE_STACK__DATA_DIR": str(root / "data"),
        "LORAFORGE_STACK__NATS_PORT": str(free_port()),
        "LORAFORGE_STACK__NATS_MONITOR_PORT": str(free_port()),
        "LORAFORGE_STACK__S3_PORT": str(free_port()),
        "LORAFORGE_STACK__WEED_BASE_PORT": str(free_port_block(7)),
        "LORAFORGE_STACK__GATEWAY_PORT": str(free_port()),
        "LORAFORGE_STACK__SERVICE_BASE_PORT": str(free_port_block(5)),
        "LORAFORGE_STACK__METRICS_BASE_PORT": str(free_port_block(5)),
        **FAST_REDELIVERY,
    }
    saved = {k: v for k, v in os.environ.items() if k.startswith("LORAFORGE_")}
    for key in saved:
        del os.environ[key]
    os.environ.update(env)  # LocalStack hands LORAFORGE_* of this process to the services
    stack = LocalStack(load_settings())
    try:
        stack.up(timeout_s=120)
        yield FaultStack(stack.client_settings(), stack)
    finally:
        try:
            stack.down()
        finally:
            for key in env:
                os.environ.pop(key, None)
            os.environ.update(saved)


def write_footage(
    dest: Path, names: tuple[str, ...] = ("pan", "zoom"), seconds: float = 2.5
) -> list[Path]:
    """Short H.264 takes of the packaged astronaut photo (the example footage's pan and zoom),
    shorter than the demo's so each stage stays in seconds."""
    import imageio_ffmpeg

    from loraforge.stack.examples import FPS, SIZE, _frames

    dest.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in names:
        path = dest / f"{name}.mp4"
        paths.append(path)
        if path.exists():
            continue
        writer = imageio_ffmpeg.write_frames(
            str(path),
            SIZE,
            fps=FPS,
            codec="libx264",
            pix_fmt_out="yuv420p",
            quality=None,
            output_params=["-crf", "20", "-preset", "veryfast"],
            macro_block_size=16,
        )
        writer.send(None)
        for frame in _frames(name, int(seconds * FPS)):
            writer.send(frame)
        writer.close()
    return paths


def report(name: str, **figures: Any) -> None:
    """One line per case for the README's reliability table (shown with `pytest -s`)."""
    print(f"\nFAULT {name}: {json.dumps(figures, default=str)}")
