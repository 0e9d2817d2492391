"""Renders as Kubernetes Jobs (`LORAFORGE_K8S__RENDER_JOBS`): the render service's side and the
pod's side, the same protocol as training's (loraforge.trainer.k8s_run) with render's keys.

Service (:class:`KubernetesRender`, used by ``RenderWork`` when the setting is on):
    1. the job (scenario and overrides) ->
         renders  <t>/<p>/renders/<job_id>/k8s-spec.json
       and the pointer the pod finds from the run id (= job id) alone:
         renders  _k8s/render/<run_id>.json  -> {tenant, project, job_id}
    2. the Job: ``RenderJobController.create`` -> ``python -m loraforge.render.worker --job
       <run_id>`` on a GPU node with more than ``nvidia.com/gpu.memory`` 22000 MiB (a 24 GB
       card: render's memory planner fits Wan 14B there with group offload)
    3. progress lines of the pod -> ``ctx.progress``; a cancel deletes the Job (the pod's
       SIGTERM stops the render between two denoising steps)
    4. Complete -> the pod's render.json -> the same JobOutcome as a local render.

Pod (loraforge.render.worker's ``run_in_pod``): settings from the environment, the job from
the spec, then ``RenderWork`` itself (inputs, LoRAs, render on the GPU, upload, render.json),
with progress as JSON lines on stdout. Exit 0 done, 3 cancelled; a bad input raises
InvalidInput (exit 2: the Job fails at once, see runtime/k8s_jobs.py's podFailurePolicy).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from loraforge.render.records import RenderRecord
from loraforge.runtime.errors import Cancelled, ConfigurationError, InvalidInput
from loraforge.runtime.job_service import JobContext
from loraforge.runtime.jobs import Job
from loraforge.runtime.k8s_controller import GpuJobController, JobSpecs, Relay, relay_job
from loraforge.runtime.k8s_jobs import job_name
from loraforge.runtime.settings import Settings
from loraforge.runtime.storage import Bucket, ObjectStore

EXIT_OK, EXIT_CANCELLED = 0, 3  # run_work_in_pod's exit codes


class RenderJobController(GpuJobController):
    kind = "render"


class KubernetesRenderFailed(InvalidInput):
    """The render Job ended Failed after Kubernetes retried its pod: failed at once (a
    redelivery would find the same failed Job)."""


SPECS = JobSpecs(Bucket.RENDERS, "renders", "render", "render service")
pointer_key, spec_key, read_spec = SPECS.pointer_key, SPECS.spec_key, SPECS.read


def write_spec(store: ObjectStore, job: Job) -> str:
    return SPECS.write(store, job, job.params)


class KubernetesRender:
    """Runs a render job as a Kubernetes Job and answers with the render.json it committed."""

    def __init__(
        self,
        store: ObjectStore,
        controller: GpuJobController,
        *,
        poll_s: float = 5.0,
        tick_s: float = 1.0,
        env: Mapping[str, str] | None = None,
    ):
        self.store = store
        self.controller = controller  # RenderJobController (or one with the same methods)
        self.poll_s = poll_s
        self.tick_s = tick_s
        self.env = dict(env or {})

    @classmethod
    def from_settings(cls, settings: Settings, store: ObjectStore) -> KubernetesRender:
        try:
            controller = RenderJobController.from_cluster(
                settings.k8s.namespace, settings.k8s.render_image
            )
        except Exception as exc:  # no client library, no in-cluster config, no kubeconfig
            raise ConfigurationError(
                f"LORAFORGE_K8S__RENDER_JOBS is on but the Kubernetes API is not reachable "
                f"({type(exc).__name__}: {exc}); run the render service in the cluster (service "
                "account loraforge-render) or with a kubeconfig, or turn it off"
            ) from exc
        return cls(store, controller)

    async def run(self, job: Job, ctx: JobContext, record_key: str) -> RenderRecord:
        run_id = await asyncio.to_thread(write_spec, self.store, job)
        name = job_name("render", run_id)
        await asyncio.to_thread(self.controller.create, run_id, self.env)
        relay = Relay(message=f"Kubernetes Job {name} created")
        final = await relay_job(
            self.controller,
            run_id,
            ctx,
            relay,
            lambda event: None,
            poll_s=self.poll_s,
            tick_s=self.tick_s,
        )
        lines = "\n".join(relay.tail) or "(no log lines)"
        if final.state == "CANCELLED":
            raise Cancelled(f"Kubernetes Job {name} of job {job.id} was deleted before it ended")
        if final.state == "FAILED":
            raise KubernetesRenderFailed(
                f"Kubernetes Job {name} failed ({final.message}); "
                f"its pod's last log lines:\n{lines}"
            )
        if await asyncio.to_thread(self.store.stat, Bucket.RENDERS, record_key) is None:
            raise KubernetesRenderFailed(
                f"Kubernetes Job {name} completed but wrote no renders/{record_key}; its pod's "
                f"last log lines:\n{lines}"
            )
        return await asyncio.to_thread(self.store.get_json, Bucket.RENDERS, record_key)
