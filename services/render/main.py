"""Composition root of the render service: settings -> clients -> service -> server."""

from __future__ import annotations

from loraforge.render.servicer import RenderServicer
from loraforge.render.worker import RenderRequests, RenderWork
from loraforge.runtime.grpc_server import GrpcServer
from loraforge.runtime.host import Clients, run_service
from loraforge.runtime.job_service import JobService, JobWorker

NAME = "render"


async def mount(clients: Clients, server: GrpcServer) -> None:
    jobs = JobService(NAME, clients.jobs, clients.bus)
    server.add(RenderServicer(jobs))
    work = RenderWork(clients.store, models_dir=clients.settings.models.dir)
    requests = RenderRequests(jobs, JobWorker(NAME, clients.jobs, clients.bus, work))
    # One durable consumer for every replica: `render.requests` is a work queue.
    await clients.bus.subscribe(f"{NAME}-workers", f"{NAME}.requests", requests.handle)


def main() -> None:
    run_service(NAME, mount)


if __name__ == "__main__":
    main()
