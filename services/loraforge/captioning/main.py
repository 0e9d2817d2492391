"""Composition root of the captioning service: settings -> clients -> service -> server."""

from __future__ import annotations

from loraforge.captioning.auto import AutoCaptioner
from loraforge.captioning.servicer import CaptioningServicer
from loraforge.captioning.worker import CaptioningWorker, sources_factory
from loraforge.runtime.grpc_server import GrpcServer
from loraforge.runtime.host import Clients, run_service
from loraforge.runtime.job_service import JobService, JobWorker

NAME = "captioning"


async def mount(clients: Clients, server: GrpcServer, *, auto_caption: bool = True) -> None:
    jobs = JobService(NAME, clients.jobs, clients.bus)
    server.add(CaptioningServicer(jobs, clients.store))
    await JobWorker(
        NAME,
        clients.jobs,
        clients.bus,
        CaptioningWorker(clients.store, sources=sources_factory(clients.settings.captioning)),
    ).start()
    # `dataset.curated` -> a captioning job for projects that chose their trigger word.
    await AutoCaptioner(jobs, clients.bus, clients.store, enabled=auto_caption).start()


def main() -> None:
    run_service(NAME, mount)


if __name__ == "__main__":
    main()
