"""The render service's work: one render job = one scenario rendered and stored in `renders/`.

Requests come through gRPC (SubmitRender) or straight from batch systems on NATS
(`<root>.render.requests` with the scenario in `data` and no `job_id`): both become a job whose
id derives from the request id, so a resubmitted or redelivered request never renders twice
and answers with the same artifacts.

Deployment calls (loraforge.library.deployments) are render jobs too. Batch systems call a
deployment by publishing `<root>.render.requests` with, in `data`: `deployment` (its name),
`image` / `last_image` (raw-bucket keys, as the deployment's mode needs), optionally `prompt`,
`seed` and `request_id` (the idempotency key; default the event id). The job's request then
goes to the deployment's warm workers (`render.call.<t>.<p>.<name>`, loraforge.render.warm);
a call request that reaches this queue (a job started elsewhere) is rendered here, loading
the deployment cold. `render.json` under the job's prefix is written last; when
it exists the job is done and nothing is rendered again.

    renders  <t>/<p>/renders/<job_id>/keyframe_NN.png, transition_NN.mp4, <name>.mp4,
             <name>_strip.png, render.json (commit marker)
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TextIO

from loraforge.render.executor import LatestProgress, Placement, RenderResult, ScenarioRenderer
from loraforge.render.inputs import check_input_images, fetch_input_images
from loraforge.render.k8s_run import KubernetesRender, read_spec
from loraforge.render.records import (
    COMPLETED_EVENT,
    Artifact,
    RenderRecord,
    record_key,
    render_prefix,
)
from loraforge.render.scenario import Scenario, ScenarioLora, parse_scenario
from loraforge.render.warm import DeploymentCallWork, WarmPool, cold_renderer, start_call
from loraforge.runtime.errors import Cancelled, ConfigurationError, InvalidInput, NotFound
from loraforge.runtime.events import Delivery, Event
from loraforge.runtime.host import Clients, run_worker
from loraforge.runtime.job_service import JobContext, JobOutcome, JobService, JobWorker
from loraforge.runtime.jobs import ArtifactRef, Job
from loraforge.runtime.k8s_controller import run_work_in_pod
from loraforge.runtime.k8s_jobs import validate_run_id
from loraforge.runtime.keys import ProjectRef
from loraforge.runtime.logging import configure_logging
from loraforge.runtime.params import DeploymentCallParams, RenderParams
from loraforge.runtime.settings import CaptioningSettings, Settings, load_settings
from loraforge.runtime.storage import Bucket, ObjectStore

NAME = "render"

#: starts a deployment call's job (warm.start_call bound to the process's clients):
#: (params, tenant, project, request_id) -> the job
StartCall = Callable[[DeploymentCallParams, str, str, str], Awaitable[Job]]


class RenderWork:
    """`work(job, ctx)` for `JobWorker("render", ...)`."""

    def __init__(
        self,
        store: ObjectStore,
        *,
        models_dir: Path | None = None,
        steps: int | None = None,
        tick_s: float = 0.5,
        placement: Placement | None = None,
        free_bytes: int | None = None,
        kubernetes: KubernetesRender | None = None,
        captioning: CaptioningSettings | None = None,
    ):
        self._store = store
        self._captioning = captioning  # describes a deployment call's input image
        self._models_dir = models_dir
        self._steps = steps
        self._tick_s = tick_s
        self._placement = placement or Placement()
        self._free_bytes = free_bytes
        self._k8s = kubernetes  # KubernetesRender: each job runs as a GPU Job

    async def __call__(self, job: Job, ctx: JobContext) -> JobOutcome:
        ref = ProjectRef(job.tenant, job.project)
        if "deployment" in job.params:  # a deployment call no warm worker took: load it here
            return await DeploymentCallWork(
                self._store,
                cold_renderer(
                    self._store,
                    models_dir=self._models_dir,
                    placement=self._placement,
                    free_bytes=self._free_bytes,
                    steps=self._steps,
                ),
                captioning=self._captioning,
                tick_s=self._tick_s,
            )(job, ctx)
        params = RenderParams.model_validate(job.params)
        scenario = self._scenario(params)
        prefix, key = render_prefix(ref, job.id), record_key(ref, job.id)
        existing = await asyncio.to_thread(self._store.stat, Bucket.RENDERS, key)
        if existing is not None:  # rendered before (redelivery or retry): answer the same
            record: RenderRecord = await asyncio.to_thread(
                self._store.get_json, Bucket.RENDERS, key
            )
            return self._outcome(job, record)

        if self._k8s is not None:
            # refuse bad inputs here, before a GPU node is asked for
            await asyncio.to_thread(
                check_input_images, self._store, ref, [shot.image for shot in scenario.shots]
            )
            await asyncio.to_thread(self._check_loras, ref, scenario)
            record = await self._k8s.run(job, ctx, key)
            return self._outcome(job, record)

        progress = LatestProgress()
        cancelled = threading.Event()
        with tempfile.TemporaryDirectory(prefix=f"render-{job.id}-") as tmp:
            # inputs first: a bad LoRA or image fails the job before any model loads
            images = await asyncio.to_thread(
                fetch_input_images,
                self._store,
                ref,
                [shot.image for shot in scenario.shots],
                Path(tmp) / "inputs",
            )
            loras = await asyncio.to_thread(self._fetch_loras, ref, scenario, Path(tmp) / "loras")

            def run() -> RenderResult:
                renderer = ScenarioRenderer(
                    lambda lora: loras[lora.name],
                    steps=self._steps,
                    models_dir=self._models_dir,
                    progress=progress.update,
                    cancelled=cancelled.is_set,
                    placement=self._placement,
                    resolve_image=images.__getitem__,
                    free_bytes=self._free_bytes,
                )
                return renderer.render(scenario, Path(tmp) / "out")

            task = asyncio.ensure_future(asyncio.to_thread(run))
            try:
                while not task.done():
                    await asyncio.wait({task}, timeout=self._tick_s)
                    if not task.done():
                        await ctx.progress(0.9 * progress.fraction, progress.message)
            except (Cancelled, asyncio.CancelledError):
                # the job cancelled, or the worker stopping: the render thread stops at its next
                # step and is waited for, so it never outlives its temporary folder
                cancelled.set()
                await asyncio.gather(task, return_exceptions=True)
                raise
            result = task.result()
            record = await asyncio.to_thread(self._upload, prefix, key, result, scenario)
        return self._outcome(job, record)

    def _scenario(self, params: RenderParams) -> Scenario:
        scenario = parse_scenario(params.scenario_yaml)
        overrides: dict[str, Any] = {}
        if params.image_preset:
            overrides["image_preset"] = params.image_preset
        if params.video_preset:
            overrides["video_preset"] = params.video_preset
        if params.loras:
            weights = {w.adapter_name or w.lora_key: w.weight for w in params.loras}
            overrides["loras"] = [
                lora.model_copy(update={"weight": weights.get(lora.name, lora.weight)})
                for lora in scenario.loras
            ]
        if overrides:
            scenario = Scenario.model_validate({**scenario.model_dump(), **overrides})
        return scenario

    def _fetch_loras(self, ref: ProjectRef, scenario: Scenario, dest: Path) -> dict[str, Path]:
        paths: dict[str, Path] = {}
        for lora in scenario.loras:
            paths[lora.name] = self._fetch_lora(ref, lora, dest)
        return paths

    def _check_loras(self, ref: ProjectRef, scenario: Scenario) -> None:
        for lora in scenario.loras:
            self._check_lora(ref, lora)

    def _check_lora(self, ref: ProjectRef, lora: ScenarioLora) -> None:
        if not lora.path.startswith(ref.prefix) or ".." in lora.path.split("/"):
            raise InvalidInput(
                f"LoRA {lora.name!r}: {lora.path!r} is not a key in the loras bucket under "
                f"{ref.prefix} (renders only use LoRAs of their own project)"
            )
        if self._store.stat(Bucket.LORAS, lora.path) is None:
            raise NotFound(
                f"LoRA {lora.name!r}: loras/{lora.path} does not exist; train it or upload it first"
            )

    def _fetch_lora(self, ref: ProjectRef, lora: ScenarioLora, dest: Path) -> Path:
        self._check_lora(ref, lora)
        return self._store.download(Bucket.LORAS, lora.path, dest / f"{lora.name}.safetensors")

    def _upload(
        self, prefix: str, key: str, result: RenderResult, scenario: Scenario
    ) -> RenderRecord:
        artifacts: list[Artifact] = []

        def put(path: Path | None, kind: str, content_type: str) -> str | None:
            if path is None:
                return None
            stored = self._store.put_file(
                Bucket.RENDERS, f"{prefix}/{path.name}", path, content_type=content_type
            )
            artifacts.append(
                {
                    "bucket": "renders",
                    "key": stored.key,
                    "kind": kind,
                    "size": stored.size,
                    "sha256": stored.sha256 or "",
                }
            )
            return stored.key

        record: RenderRecord = {
            "scenario": scenario.model_dump(mode="json"),
            "keyframes": [put(p, "keyframe", "image/png") for p in result.keyframes],
            "transitions": [put(p, "transition", "video/mp4") for p in result.transitions],
            "film": put(result.film, "film", "video/mp4"),
            "thumbnails": put(result.thumbnails, "thumbnails", "image/png"),
            "warnings": result.warnings,
            "placement": result.placement,
            "artifacts": artifacts,
        }
        self._store.put_json(Bucket.RENDERS, key, record)
        return record

    @staticmethod
    def _outcome(job: Job, record: RenderRecord) -> JobOutcome:
        data = {
            "job_id": job.id,
            "keyframes": record["keyframes"],
            "transitions": record["transitions"],
            "film": record["film"],
            "thumbnails": record["thumbnails"],
            "warnings": record["warnings"],
            "placement": record.get("placement", {}),
        }
        n = len(record["keyframes"])
        return JobOutcome(
            message=f"{n} keyframe(s), {len(record['transitions'])} transition(s)"
            + (", film joined" if record["film"] else ""),
            artifacts=[ArtifactRef.model_validate(a) for a in record["artifacts"]],
            result=data,
            events=[
                Event(
                    id=f"render-completed-{job.id}",
                    type=COMPLETED_EVENT,
                    tenant=job.tenant,
                    project=job.project,
                    data=data,
                )
            ],
        )


class RenderRequests:
    """The `render.requests` handler: batch submissions (scenario, no job id) become jobs;
    job requests run on this worker. One durable consumer shared by every worker replica."""

    def __init__(self, jobs: JobService, worker: JobWorker, *, calls: StartCall | None = None):
        self._jobs = jobs
        self._worker = worker
        self._calls = calls

    async def handle(self, event: Event, delivery: Delivery) -> None:
        if "job_id" in event.data:
            await self._worker.handle(event, delivery)
            return
        data = dict(event.data)
        request_id = str(data.pop("request_id", "") or event.id)
        if "deployment" in data and self._calls is not None:
            seed = {"seed": data.pop("seed")} if "seed" in data else None
            await self._calls(
                DeploymentCallParams.parse(present=seed, **data),
                event.tenant,
                event.project,
                request_id,
            )
            return
        params = RenderParams.parse(**data)
        # Starting publishes a `render.requests` event carrying the job id, which a worker
        # (maybe this one) then runs; the same request id always maps to the same job.
        await self._jobs.start(
            event.tenant, event.project, params.model_dump(mode="json"), request_id=request_id
        )


# ------------------------------------------------------------------ the queue


async def mount_queue(
    clients: Clients, jobs: JobService, kubernetes: KubernetesRender | None = None
) -> None:
    """Consume `render.requests` (one durable consumer for every replica: a work queue), for
    the render service (loraforge.render.main) and the GPU queue worker (:func:`main`).
    `kubernetes`: run each job as a GPU Job instead of here."""
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

    async def call(params: DeploymentCallParams, tenant: str, project: str, request_id: str) -> Job:
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


# ------------------------------------------------------------------ entry point


def run_in_pod(run_id: str, *, settings: Settings | None = None, out: TextIO | None = None) -> int:
    """``python -m loraforge.render.worker --job RUN_ID`` (a Kubernetes render Job's pod, see
    loraforge.render.k8s_run): the job from the spec the service wrote, then ``RenderWork``
    itself. 0 done, 3 cancelled; InvalidInput propagates (exit 2 in the entry point)."""
    settings = settings or load_settings()
    store = ObjectStore.connect(settings.s3)
    job = read_spec(store, validate_run_id(run_id))
    work = RenderWork(
        store,
        models_dir=settings.models.dir,
        placement=Placement.from_settings(settings),
        tick_s=1.0,
    )
    return run_work_in_pod(work, job, out, stops_after="the current denoising step")


def main(argv: list[str] | None = None) -> None:
    """`python -m loraforge.render.worker`: the GPU render queue worker (compose
    `render-worker`): consumes `render.requests` with the render service's own composition
    (:func:`mount_queue`), renders on this machine, publishes `render.completed`.
    `--job RUN_ID`: render that one job and exit (a Kubernetes render Job's pod,
    :func:`run_in_pod`)."""
    parser = argparse.ArgumentParser(
        prog="python -m loraforge.render.worker",
        description=main.__doc__.split("\n\n")[0] if main.__doc__ else None,
    )
    parser.add_argument("--job", metavar="RUN_ID", help="render one job (a Kubernetes render Job)")
    args = parser.parse_args(argv)
    if args.job:
        try:
            settings = load_settings()
            configure_logging(settings.log, "render-job")
            code = run_in_pod(args.job, settings=settings)
        except (InvalidInput, ConfigurationError) as exc:  # a retry would fail the same way
            sys.stderr.write(f"render job {args.job}: {exc}\n")
            raise SystemExit(2) from None
        raise SystemExit(code)

    async def mount(clients: Clients) -> None:
        jobs = JobService(NAME, clients.jobs, clients.bus)
        await mount_queue(clients, jobs)  # this process is the GPU: it renders itself

    run_worker(NAME, mount)


if __name__ == "__main__":
    main()
