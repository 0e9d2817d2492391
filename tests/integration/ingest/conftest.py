"""The ingest service in-process (real NATS + S3 from tests/conftest.py) and small footage.

The footage generators live in tests/unit/ingest/footage.py; that folder is put on sys.path
here so these tests run on their own too.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "unit" / "ingest"))

from footage import ShotSpec, lavfi_video, make_footage, photo
from PIL import Image

from loraforge.ingest.main import mount
from loraforge.runtime.events import Delivery, Event
from loraforge.runtime.host import ServiceProcess
from loraforge.v1 import common_pb2, ingest_pb2_grpc

TENANT, PROJECT = "acme", "jane"
SCOPE = common_pb2.ProjectScope(tenant=TENANT, project=PROJECT)
TERMINAL = {
    common_pb2.JOB_STATE_SUCCEEDED,
    common_pb2.JOB_STATE_FAILED,
    common_pb2.JOB_STATE_CANCELLED,
}


@dataclass
class Ingest:
    process: ServiceProcess
    stub: ingest_pb2_grpc.IngestServiceStub
    events: list[Event]
    arrived: asyncio.Event = field(default_factory=asyncio.Event)  # set on every event

    async def wait(self, job_id: str, timeout: float = 40.0, scope=SCOPE) -> common_pb2.Job:
        deadline = time.monotonic() + timeout
        while True:
            job = await self.stub.GetJob(
                common_pb2.GetJobRequest(scope=scope, job_id=job_id), timeout=5
            )
            if job.state in TERMINAL or time.monotonic() > deadline:
                return job
            await asyncio.sleep(0.2)

    async def wait_events(self, count: int, timeout: float = 5.0) -> list[Event]:
        """The events so far, once `count` have arrived or `timeout` has passed."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while len(self.events) < count:
                    self.arrived.clear()
                    await self.arrived.wait()
        return self.events


@pytest.fixture
async def ingest(settings, bus, store) -> AsyncIterator[Ingest]:
    events: list[Event] = []
    arrived = asyncio.Event()

    async def collect(event: Event, delivery: Delivery) -> None:
        events.append(event)
        arrived.set()

    await bus.subscribe("test-ingested", "clips.ingested", collect)
    proc = ServiceProcess("ingest", settings, mount, drain_delay_s=0.0)
    await proc.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{proc.port}")
    try:
        yield Ingest(proc, ingest_pb2_grpc.IngestServiceStub(channel), events, arrived)
    finally:
        await channel.close()
        await proc.stop()


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder: a two-shot video (3.5 s per shot, 16 fps, 128x96), a photo, a text file named
    .mp4 and a zero-byte .mp4."""
    root = tmp_path_factory.mktemp("ingest-media")
    make_footage(
        root / "two_shots.mp4",
        [ShotSpec("astronaut", 56, "pan"), ShotSpec("coffee", 56, "zoom")],
        size=(128, 96),
        fps=16,
    )
    Image.fromarray(photo("chelsea")).resize((160, 120)).save(root / "cat.jpg", quality=90)
    (root / "notes.mp4").write_text("this is not a video\n")
    (root / "empty.mp4").write_bytes(b"")
    return root


@pytest.fixture(scope="session")
def long_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four minutes of small test pattern: long enough to cancel mid-way."""
    return lavfi_video(
        tmp_path_factory.mktemp("ingest-long") / "long.mp4", 240, size="160x120", fps=16
    )
