"""Composition root of the curation service: settings -> clients -> service -> server."""

from __future__ import annotations

from loraforge.curation.servicer import CurationServicer
from loraforge.runtime.grpc_server import GrpcServer
from loraforge.runtime.host import Clients, run_service
from loraforge.runtime.job_service import JobService

NAME = "curation"


async def mount(clients: Clients, server: GrpcServer) -> None:
    jobs = JobService(NAME, clients.jobs, clients.bus)
    server.add(CurationServicer(jobs))


def main() -> None:
    run_service(NAME, mount)


if __name__ == "__main__":
    main()
