"""Process lifecycle shared by every backend: connect clients, serve, shut down once.

A service's composition root (its `main.py`) only says what to mount:

    async def mount(clients: Clients, server: GrpcServer) -> None:
        server.add(IngestServicer(JobService("ingest", clients.jobs, clients.bus)))

    def main() -> None:
        run_service("ingest", mount)

Shutdown is one path for SIGTERM, SIGINT and tests: health NOT_SERVING -> a short drain
delay so load balancers notice -> stop gRPC with grace -> stop consumers and drain NATS.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from loraforge.runtime.errors import ConfigurationError, Unavailable
from loraforge.runtime.events import EventBus
from loraforge.runtime.grpc_server import GrpcServer
from loraforge.runtime.jobs import JobStore
from loraforge.runtime.logging import configure_logging
from loraforge.runtime.metrics import Metrics
from loraforge.runtime.retry import retry_startup
from loraforge.runtime.settings import Settings, load_settings
from loraforge.runtime.storage import ObjectStore, sweep_staging_forever

log = logging.getLogger(__name__)

# Seconds between NOT_SERVING and closing the port, so probes and balancers see it first.
DRAIN_DELAY_S = 1.0


@dataclass
class Clients:
    settings: Settings
    bus: EventBus
    store: ObjectStore
    jobs: JobStore
    metrics: Metrics


Mount = Callable[[Clients, GrpcServer], Awaitable[None]]


async def connect_clients(name: str, settings: Settings) -> Clients:
    attempts, backoff = settings.server.startup_attempts, settings.server.startup_backoff_s
    bus = await EventBus.connect(settings.nats, name=name, attempts=attempts, backoff_s=backoff)
    try:
        store = ObjectStore.connect(settings.s3)

        async def ready_store() -> ObjectStore:
            await asyncio.to_thread(store.ensure_buckets)
            return store

        await retry_startup(
            ready_store, what=f"S3 at {settings.s3.endpoint}", attempts=attempts, backoff_s=backoff
        )
        jobs = await JobStore.open(bus.jetstream, settings.nats.jobs_bucket)
    except BaseException:
        await bus.close()
        raise
    return Clients(settings, bus, store, jobs, Metrics(name))


def _start_sweeper(clients: Clients) -> None:
    """Every service process sweeps abandoned `_staging/` uploads (storage.py); the task is
    cancelled with the consumers, on the one shutdown path."""
    clients.bus.background(
        sweep_staging_forever(clients.store, clients.settings.s3), name="staging-sweeper"
    )


class ServiceProcess:
    """One running service; `stop()` is the single shutdown path."""

    def __init__(
        self, name: str, settings: Settings, mount: Mount, *, drain_delay_s: float = DRAIN_DELAY_S
    ):
        self.name = name
        self.settings = settings
        self._mount = mount
        self._drain_delay_s = drain_delay_s
        self._stopped = asyncio.Event()
        self.clients: Clients | None = None
        self.server: GrpcServer | None = None
        self.port = 0

    async def start(self) -> int:
        self.clients = await connect_clients(self.name, self.settings)
        self.server = GrpcServer(self.settings.server, metrics=self.clients.metrics)
        try:
            await self._mount(self.clients, self.server)
            _start_sweeper(self.clients)
            self.port = await self.server.start()
            self.clients.metrics.serve(self.settings.server.host, self.settings.server.metrics_port)
        except BaseException:
            await self.clients.bus.close()
            raise
        return self.port

    async def stop(self) -> None:
        if self._stopped.is_set() or self.server is None or self.clients is None:
            return
        self._stopped.set()
        log.info("%s shutting down", self.name)
        await self.server.set_not_serving()
        await asyncio.sleep(self._drain_delay_s)
        await self.server.stop()
        await self.clients.bus.close()
        self.clients.metrics.close()
        log.info("%s stopped", self.name)

    async def wait_stopped(self) -> None:
        await self._stopped.wait()


async def serve_until_signalled(process: ServiceProcess) -> None:
    loop = asyncio.get_running_loop()
    stop_requested = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop_requested.set)
    await process.start()
    log.info("%s ready on port %d", process.name, process.port)
    await stop_requested.wait()
    await process.stop()


def run_service(name: str, mount: Mount, **overrides: Any) -> None:
    """Entry point for `python -m loraforge.<name>`: exits 2 with a clear message when
    settings are wrong or NATS/S3 stay unreachable."""
    try:
        settings = load_settings(**overrides)
    except ConfigurationError as exc:
        sys.stderr.write(f"{name}: {exc}\n")
        raise SystemExit(2) from None
    configure_logging(settings.log, name)
    try:
        asyncio.run(serve_until_signalled(ServiceProcess(name, settings, mount)))
    except (Unavailable, ConfigurationError) as exc:
        log.error("%s cannot start: %s", name, exc)
        sys.stderr.write(f"{name}: cannot start: {exc}\n")
        raise SystemExit(2) from None


# ------------------------------------------------------------------ queue workers (no gRPC)

WorkerMount = Callable[[Clients], Awaitable[None]]


class WorkerProcess:
    """A queue worker: the clients and consumers of a service without its gRPC server (the GPU
    render worker). Serves only Prometheus /metrics, which is also its health check. Shutdown:
    stop consumers (a job in progress finishes or is redelivered) -> drain NATS."""

    def __init__(self, name: str, settings: Settings, mount: WorkerMount):
        self.name = name
        self.settings = settings
        self._mount = mount
        self._stopped = asyncio.Event()
        self.clients: Clients | None = None

    async def start(self) -> None:
        self.clients = await connect_clients(self.name, self.settings)
        try:
            await self._mount(self.clients)
            _start_sweeper(self.clients)
            self.clients.metrics.serve(self.settings.server.host, self.settings.server.metrics_port)
        except BaseException:
            await self.clients.bus.close()
            raise

    async def stop(self) -> None:
        if self._stopped.is_set() or self.clients is None:
            return
        self._stopped.set()
        log.info("%s shutting down", self.name)
        await self.clients.bus.close()
        self.clients.metrics.close()
        log.info("%s stopped", self.name)


async def work_until_signalled(process: WorkerProcess) -> None:
    loop = asyncio.get_running_loop()
    stop_requested = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop_requested.set)
    await process.start()
    log.info("%s worker ready", process.name)
    await stop_requested.wait()
    await process.stop()


def run_worker(name: str, mount: WorkerMount, **overrides: Any) -> None:
    """Entry point of a queue worker (`python -m loraforge.render.worker`): exits 2 with a
    clear message when settings are wrong or NATS/S3 stay unreachable, like run_service."""
    try:
        settings = load_settings(**overrides)
    except ConfigurationError as exc:
        sys.stderr.write(f"{name}: {exc}\n")
        raise SystemExit(2) from None
    configure_logging(settings.log, f"{name}-worker")
    try:
        asyncio.run(work_until_signalled(WorkerProcess(name, settings, mount)))
    except (Unavailable, ConfigurationError) as exc:
        log.error("%s worker cannot start: %s", name, exc)
        sys.stderr.write(f"{name}: cannot start: {exc}\n")
        raise SystemExit(2) from None
