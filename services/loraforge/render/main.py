"""Composition root of the render service: settings -> clients -> service -> server.

The GPU queue worker (`python -m loraforge.render.worker`, compose `render-worker`) mounts
the same queue without the gRPC server (loraforge.render.worker.mount_queue)."""

from __future__ import annotations

from loraforge.render.k8s_run import KubernetesRender
from loraforge.render.servicer import RenderServicer
from loraforge.render.worker import NAME, mount_queue
from loraforge.runtime.grpc_server import GrpcServer
from loraforge.runtime.host import Clients, run_service
from loraforge.runtime.job_service import JobService


async def mount(
    clients: Clients, server: GrpcServer, *, kubernetes: KubernetesRender | None = None
) -> None:
    """`kubernetes`: the KubernetesRender to use (tests); by default one is built from the
    settings when LORAFORGE_K8S__RENDER_JOBS is on."""
    jobs = JobService(NAME, clients.jobs, clients.bus)
    server.add(RenderServicer(jobs, clients.store, bus=clients.bus, job_store=clients.jobs))
    if kubernetes is None and clients.settings.k8s.render_jobs:
        kubernetes = KubernetesRender.from_settings(clients.settings, clients.store)
    await mount_queue(clients, jobs, kubernetes)


def main() -> None:
    run_service(NAME, mount)


if __name__ == "__main__":
    main()
