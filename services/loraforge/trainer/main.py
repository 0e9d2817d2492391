"""Composition root of the trainer service: settings -> clients -> service -> server."""

from __future__ import annotations

from loraforge.runtime.grpc_server import GrpcServer
from loraforge.runtime.host import Clients, run_service
from loraforge.runtime.job_service import JobService, JobWorker
from loraforge.trainer.k8s_run import KubernetesTraining
from loraforge.trainer.servicer import TrainerServicer
from loraforge.trainer.worker import TrainingWork

NAME = "trainer"


async def mount(
    clients: Clients, server: GrpcServer, *, kubernetes: KubernetesTraining | None = None
) -> None:
    """`kubernetes`: how on_kubernetes jobs run; by default from settings (None when
    LORAFORGE_K8S__TRAINING_JOBS is off, and such jobs are refused). Tests pass a fake API."""
    kubernetes = kubernetes or KubernetesTraining.from_settings(clients.settings, clients.store)
    jobs = JobService(NAME, clients.jobs, clients.bus)
    server.add(TrainerServicer(jobs, kubernetes=kubernetes is not None))
    work = TrainingWork(
        clients.store, models_dir=clients.settings.models.dir, kubernetes=kubernetes
    )
    # One durable consumer for every replica: `trainer.requests` is a work queue. Progress
    # (with each evaluated step's preview keys) goes out as `training.progress`
    # (job_service.PROGRESS_EVENTS).
    await JobWorker(NAME, clients.jobs, clients.bus, work).start()


def main() -> None:
    run_service(NAME, mount)


if __name__ == "__main__":
    main()
