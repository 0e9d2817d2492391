"""Composition root of the curation service: settings -> clients -> service -> server."""

from __future__ import annotations

from loraforge.curation.servicer import CurationServicer
from loraforge.curation.worker import AutoCurator, CurationJobs, CurationWorker
from loraforge.runtime.grpc_server import GrpcServer
from loraforge.runtime.host import Clients, run_service
from loraforge.runtime.job_service import JobWorker

NAME = "curation"


async def mount(
    clients: Clients,
    server: GrpcServer,
    *,
    auto_curate: bool = True,
    measure_concurrency: int | None = None,  # default: threads.measuring_threads()
) -> None:
    # a start for a dataset another job is computing returns that job (CurationJobs)
    jobs = CurationJobs(clients.jobs, clients.bus, clients.store)
    server.add(CurationServicer(jobs))
    worker = CurationWorker(
        clients.store, jobs=clients.jobs, bus=clients.bus, models_dir=clients.settings.models.dir
    )  # dataset builders' models
    worker.preload()  # the models, on a thread: the first job need not load them
    await JobWorker(NAME, clients.jobs, clients.bus, worker).start()
    # every curation process measures clips of any job (the `curation.measure` work queue)
    await worker.start_measuring(measure_concurrency)
    # `clips.ingested` -> a curation job (turn off with functools.partial(mount, auto_curate=False))
    await AutoCurator(jobs, clients.bus, clients.store, enabled=auto_curate).start()


def main() -> None:
    run_service(NAME, mount)


if __name__ == "__main__":
    main()
