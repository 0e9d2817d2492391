"""Composition root of the trainer service: settings -> clients -> service -> server."""

from __future__ import annotations

from loraforge.runtime.grpc_server import GrpcServer
from loraforge.runtime.host import Clients, run_service
from loraforge.runtime.job_service import JobService, JobWorker
from loraforge.trainer.servicer import TrainerServicer
from loraforge.trainer.worker import TrainingWork

NAME = "trainer"


async def mount(clients: Clients, server: GrpcServer) -> None:
    jobs = JobService(NAME, clients.jobs, clients.bus)
    server.add(TrainerServicer(jobs))
    work = TrainingWork(clients.store, models_dir=clients.settings.models.dir)
    # One durable consumer for every replica: `trainer.requests` is a work queue.
    await JobWorker(NAME, clients.jobs, clients.bus, work).start()


def main() -> None:
    run_service(NAME, mount)


if __name__ == "__main__":
    main()
