"""The gateway over real NATS + S3, with every backend in-process on a free gRPC port and
the app served by a real uvicorn on a free HTTP port (same event loop as the test)."""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from loraforge.gateway.app import create_app
from loraforge.gateway.auth import create_api_key
from loraforge.gateway.clients import BackendClients
from loraforge.gateway.config import GatewayConfig, gateway_bucket
from loraforge.gateway.state import GatewayState
from loraforge.runtime.events import EventBus
from loraforge.runtime.host import Clients, ServiceProcess
from loraforge.runtime.job_service import JobContext, JobOutcome, JobService, JobWorker
from loraforge.runtime.jobs import Job, JobStore
from loraforge.runtime.metrics import Metrics
from loraforge.runtime.settings import EgressSettings
from loraforge.stack.binaries import free_port

TEST_CONFIG = GatewayConfig(
    max_upload_bytes=256 * 1024,
    rate_per_s=1000,
    rate_burst=1000,
    webhook_backoff_s=0.05,
    sse_poll_s=0.1,
)


async def fake_ingest_work(job: Job, ctx: JobContext) -> JobOutcome:
    """Stands in for ingest's media work: three progress reports, then success."""
    for step in (1, 2, 3):
        await asyncio.sleep(0.05)
        await ctx.progress(step / 4, f"step {step} of 3")
    return JobOutcome(message="ingested (fake)")


async def _ingest_mount(clients: Clients, server: Any) -> None:
    from loraforge.ingest.servicer import IngestServicer

    jobs = JobService("ingest", clients.jobs, clients.bus)
    server.add(IngestServicer(jobs))
    await JobWorker("ingest", clients.jobs, clients.bus, fake_ingest_work).start()


def _servicer_mount(name: str) -> Callable[[Clients, Any], Awaitable[None]]:
    """The backend's servicer without its worker: jobs stay PENDING (no media stack needed).
    Captioning's servicer also serves the caption review calls, so it gets the object store
    (as in `loraforge.captioning.main.mount`); render's serves deployments (store and bus)."""

    async def mount(clients: Clients, server: Any) -> None:
        module = importlib.import_module(f"loraforge.{name}.servicer")
        cls = getattr(module, f"{name.capitalize()}Servicer")
        jobs = JobService(name, clients.jobs, clients.bus)
        if name == "captioning":
            server.add(cls(jobs, clients.store))
        elif name == "render":  # deployments: records in S3, warm requests and calls on NATS
            server.add(cls(jobs, clients.store, bus=clients.bus, job_store=clients.jobs))
        else:
            server.add(cls(jobs))

    return mount


@dataclass
class GatewayStack:
    url: str
    state: GatewayState
    backends: BackendClients
    procs: dict[str, ServiceProcess]
    app: Any
    keys: dict[str, str] = field(default_factory=dict)

    async def key(self, tenant: str) -> str:
        if tenant not in self.keys:
            self.keys[tenant] = await create_api_key(self.state, tenant, name="test")
        return self.keys[tenant]

    async def client(self, tenant: str | None = None) -> httpx.AsyncClient:
        headers = {"X-API-Key": await self.key(tenant)} if tenant else {}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=30)


async def start_gateway(
    settings: Any,
    store: Any,
    cleanups: list[Callable[[], Awaitable[None]]],
    config: GatewayConfig = TEST_CONFIG,
    ingest_mount: Callable[[Clients, Any], Awaitable[None]] = _ingest_mount,
    mounts: dict[str, Callable[[Clients, Any], Awaitable[None]]] | None = None,
) -> GatewayStack:
    """Every backend in-process (ingest with `ingest_mount`, `mounts` by name, the others
    servicer-only), then the app on uvicorn; what needs undoing is appended to `cleanups`."""
    import uvicorn

    procs: dict[str, ServiceProcess] = {}
    for name in ("ingest", "curation", "captioning", "trainer", "render"):
        mount = (mounts or {}).get(name) or (
            ingest_mount if name == "ingest" else _servicer_mount(name)
        )
        proc = ServiceProcess(name, settings, mount, drain_delay_s=0)
        await proc.start()
        procs[name] = proc
        cleanups.append(proc.stop)
    bus = await EventBus.connect(settings.nats, name="gateway-test")
    cleanups.append(bus.close)
    jobs = await JobStore.open(bus.jetstream, settings.nats.jobs_bucket)
    state = await GatewayState.open(bus.jetstream, gateway_bucket(settings), jobs.projects)
    backends = BackendClients({n: f"127.0.0.1:{p.port}" for n, p in procs.items()}, timeout_s=5)
    cleanups.append(backends.close)
    # The tests' webhook receivers listen on 127.0.0.1, which the egress guard refuses unless
    # listed; only that one address, so the refusal tests still see 127.0.0.2, ::1, 10/8 ...
    settings = settings.model_copy(update={"egress": EgressSettings(allow="127.0.0.1/32")})
    app = create_app(
        settings,
        Metrics("gateway"),
        backends=backends,
        store=store,
        jobs_store=jobs,
        state=state,
        bus=bus,
        config=config,
    )
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
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
    return GatewayStack(f"http://127.0.0.1:{port}", state, backends, procs, app)


@pytest.fixture
async def make_gateway(settings, store) -> AsyncIterator[Callable[..., Awaitable[GatewayStack]]]:
    cleanups: list[Callable[[], Awaitable[None]]] = []

    async def make(
        config: GatewayConfig = TEST_CONFIG,
        ingest_mount: Callable[[Clients, Any], Awaitable[None]] = _ingest_mount,
        mounts: dict[str, Callable[[Clients, Any], Awaitable[None]]] | None = None,
    ) -> GatewayStack:
        return await start_gateway(settings, store, cleanups, config, ingest_mount, mounts)

    try:
        yield make
    finally:
        for cleanup in reversed(cleanups):
            try:
                await cleanup()
            except Exception as exc:
                logging.getLogger(__name__).warning("teardown step failed: %s", exc)


@pytest.fixture
async def gateway(make_gateway) -> GatewayStack:
    return await make_gateway()
