"""Composition root of the ingest service: settings -> clients -> service -> server + worker."""

from __future__ import annotations

from loraforge.ingest.servicer import IngestServicer
from loraforge.ingest.worker import IngestWork
from loraforge.runtime.egress import EgressPolicy
from loraforge.runtime.grpc_server import GrpcServer
from loraforge.runtime.host import Clients, run_service
from loraforge.runtime.job_service import JobService, JobWorker

NAME = "ingest"


async def mount(clients: Clients, server: GrpcServer) -> None:
    jobs = JobService(NAME, clients.jobs, clients.bus)
    server.add(IngestServicer(jobs))
    work = IngestWork(clients.store, egress=EgressPolicy.from_settings(clients.settings))
    await JobWorker(NAME, clients.jobs, clients.bus, work.run).start()


def main() -> None:
    run_service(NAME, mount)


if __name__ == "__main__":
    main()
