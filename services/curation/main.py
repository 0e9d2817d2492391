"""Composition root of the curation service: settings -> clients -> service -> server."""

from __future__ import annotations

from loraforge.curation.servicer import CurationServicer
from loraforge.curation.worker import AutoCurator, CurationWorker
from loraforge.runtime.grpc_server import GrpcServer
from loraforge.runtime.host import Clients, run_service
from loraforge.runtime.job_service import JobService, JobWorker

NAME = "curation"


async def mount(clients: Clients, server: GrpcServer, *, auto_curate: bool = True) -> None:
    jobs = JobService(NAME, clients.jobs, clients.bus)
    server.add(CurationServicer(jobs))
    await JobWorker(NAME, clients.jobs, clients.bus, CurationWorker(clients.store)).start()
    # `clips.ingested` -> a curation job (turn off with functools.partial(mount, auto_curate=False))
    await AutoCurator(jobs, clients.bus, enabled=auto_curate).start()


def main() -> None:
    run_service(NAME, mount)


if __name__ == "__main__":
    main()
