"""Fixtures: ingested clips made once per session, the curation service in-process."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable

import grpc
import pytest

from loraforge.curation.main import mount
from loraforge.runtime.host import ServiceProcess
from loraforge.v1 import curation_pb2_grpc

from .seed import LocalClip, make_clips


@pytest.fixture(scope="session")
def local_clips(tmp_path_factory) -> list[LocalClip]:
    return make_clips(tmp_path_factory.mktemp("ingested"))


@pytest.fixture
async def curation_service(settings) -> AsyncIterator[Callable]:
    started: list[tuple[ServiceProcess, grpc.aio.Channel]] = []

    async def start(auto_curate: bool = True, measure_concurrency: int | None = None):
        proc = ServiceProcess(
            "curation",
            settings,
            functools.partial(
                mount, auto_curate=auto_curate, measure_concurrency=measure_concurrency
            ),
            drain_delay_s=0.0,
        )
        await proc.start()
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{proc.port}")
        started.append((proc, channel))
        return proc, curation_pb2_grpc.CurationServiceStub(channel)

    yield start
    for proc, channel in started:
        await channel.close()
        await proc.stop()
