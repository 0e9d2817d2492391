"""Composition root of the render service: settings -> clients -> service -> server.

The GPU queue worker (`python -m loraforge.render.worker`, compose `render-worker`) mounts
the same queue without the gRPC server (:func:`mount_queue`)."""

from __future__ import annotations

from typing import Any

from loraforge.render.executor import Placement
from loraforge.render.servicer import RenderServicer
from loraforge.render.warm import WarmPool, start_call
from loraforge.render.worker import RenderRequests, RenderWork
from loraforge.runtime.grpc_server import GrpcServer
from loraforge.runtime.host import Clients, run_service
from loraforge.runtime.job_service import JobService, JobWorker

NAME = "render"


async def mount_queue(clients: Clients, jobs: JobService, kubernetes: Any = None) -> None:
    """Consume `render.requests` (one durable consumer for every replica: a work queue).
    `kubernetes` (a KubernetesRender): run each job as a GPU Job instead of here."""
    settings = clients.settings
    placement = Placement.from_settings(settings)
    work = RenderWork(
        clients.store,
        models_dir=settings.models.dir,
        placement=placement,
        kubernetes=kubernetes,
        captioning=settings.captioning,
    )
    worker = JobWorker(NAME, clients.jobs, clients.bus, work)

    async def call(params: Any, tenant: str, project: str, request_id: str) -> Any:
        return await start_call(
            clients.jobs, clients.bus, clients.store, tenant, project, params, request_id
        )

    requests = RenderRequests(jobs, worker, calls=call)
    # on_dead_letter: a job request given up on (missing LoRA, dead worker) fails its job.
    await clients.bus.subscribe(
        f"{NAME}-workers", f"{NAME}.requests", requests.handle, on_dead_letter=worker.on_dead_letter
    )
    # Deployments kept warm here (LORAFORGE_RENDER__WARM_SLOTS; 0 = this process only renders
    # jobs, e.g. the render service in front of Kubernetes render Jobs).
    slots = 0 if kubernetes is not None else settings.render.warm_slots
    pool = WarmPool(
        clients.bus,
        clients.store,
        clients.jobs,
        slots=slots,
        models_dir=settings.models.dir,
        placement=placement,
        captioning=settings.captioning,
    )
    await pool.start()


async def mount(clients: Clients, server: GrpcServer, *, kubernetes: Any = None) -> None:
    """`kubernetes`: the KubernetesRender to use (tests); by default one is built from the
    settings when LORAFORGE_K8S__RENDER_JOBS is on."""
    jobs = JobService(NAME, clients.jobs, clients.bus)
    server.add(RenderServicer(jobs, clients.store, bus=clients.bus, job_store=clients.jobs))
    if kubernetes is None and clients.settings.k8s.render_jobs:
        from loraforge.render.k8s_run import KubernetesRender

        kubernetes = KubernetesRender.from_settings(clients.settings, clients.store)
    await mount_queue(clients, jobs, kubernetes)


def main() -> None:
    run_service(NAME, mount)


if __name__ == "__main__":
    main()
