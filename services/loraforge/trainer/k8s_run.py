"""Training as a Kubernetes Job (`TrainingParams.on_kubernetes`): the trainer service's side
and the pod's side of one small protocol, kept together because both read the same keys.

Service (:class:`KubernetesTraining`, used by ``TrainingWork`` for an on_kubernetes job):
    1. the run spec (the job record with on_kubernetes off) ->
         loras  <t>/<p>/runs/<job_id>/k8s-spec.json
       and a pointer to it, found from the run id alone (the only thing the pod is given):
         loras  _k8s/train/<run_id>.json  -> {tenant, project, job_id}
       The run id is the job id (25 lowercase hex-ish characters: a valid Job-name tail);
       ``runtime/k8s_controller.py: JobSpecs`` spells both keys, for render Jobs too.
    2. the Job: ``TrainingJobController.create`` -> ``loraforge-train --run <run_id>``
    3. a thread watches it; the pod's JSON progress lines go to ``ctx.progress``
    4. cancel (``ctx.progress`` raises Cancelled) -> the Job is deleted (the pod gets SIGTERM)
    5. Complete -> the pod's run.json -> the same JobOutcome as a local run;
       Failed -> :class:`KubernetesJobFailed` with the reason and the pod's last log lines.

Pod (:func:`run_in_pod`, the ``--run RUN_ID`` mode of ``loraforge-train``): settings from
the environment (ConfigMap + Secret), the spec from the object store, then ``TrainingWork``
itself, so download, training, evaluation, checkpoint upload and the run.json commit are the
service's own code. Progress goes to stdout as JSON lines; SIGTERM stops after the current
step. A pod that is evicted and rescheduled resumes from the newest uploaded checkpoint, like
a redelivered job does on the service.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, TextIO

from loraforge.runtime.errors import Cancelled, ConfigurationError, InvalidInput
from loraforge.runtime.jobs import Job
from loraforge.runtime.k8s_controller import JobSpecs, Relay, relay_job, run_work_in_pod
from loraforge.runtime.k8s_jobs import job_name, validate_run_id
from loraforge.runtime.params import TrainingParams
from loraforge.runtime.settings import load_settings
from loraforge.runtime.storage import Bucket, ObjectStore
from loraforge.trainer.k8s_controller import TrainingJobController
from loraforge.trainer.run.layout import record_key
from loraforge.trainer.worker import TrainingWork

# progress fields of the pod's lines relayed as they are (LivePreviews.announce)
PREVIEW_FIELDS = ("preview_step", "preview_keys", "previews")
# Exit codes of the pod, as `loraforge-train` documents them.
EXIT_OK, EXIT_CANCELLED = 0, 3  # run_work_in_pod's exit codes


class KubernetesJobFailed(InvalidInput):
    """The Job ended Failed after Kubernetes already retried its pod (backoffLimit).

    An InvalidInput so that the JobWorker fails the job at once: a redelivery would find the
    same failed Job (its name is the run id) and fail again, minutes later."""


SPECS = JobSpecs(Bucket.LORAS, "runs", "train", "trainer service")
pointer_key, spec_key, read_spec = SPECS.pointer_key, SPECS.spec_key, SPECS.read


def write_spec(store: ObjectStore, job: Job) -> str:
    """The spec is the job record with on_kubernetes off (the pod trains in process)."""
    params = TrainingParams.model_validate(job.params).model_copy(update={"on_kubernetes": False})
    return SPECS.write(store, job, params.model_dump(mode="json"))


# ------------------------------------------------------------------------------- service side


class KubernetesTraining:
    """Runs an on_kubernetes training job as a Kubernetes Job and answers with its run.json."""

    def __init__(
        self,
        store: ObjectStore,
        controller: Any,
        *,
        poll_s: float = 5.0,
        tick_s: float = 1.0,
        env: Mapping[str, str] | None = None,
    ):
        self.store = store
        self.controller = controller  # TrainingJobController (or one with the same methods)
        self.poll_s = poll_s  # Kubernetes API polls
        self.tick_s = tick_s  # ctx.progress calls: how soon a cancel is seen
        self.env = dict(env or {})  # extra container env, on top of the ConfigMap and Secret

    @classmethod
    def from_settings(cls, settings: Any, store: ObjectStore) -> KubernetesTraining | None:
        """None unless `LORAFORGE_K8S__TRAINING_JOBS` is on: then on_kubernetes jobs are
        refused with a message that says so."""
        if not settings.k8s.training_jobs:
            return None
        try:
            controller = TrainingJobController.from_cluster(
                settings.k8s.namespace, settings.k8s.trainer_image
            )
        except Exception as exc:  # no client library, no in-cluster config, no kubeconfig
            raise ConfigurationError(
                f"LORAFORGE_K8S__TRAINING_JOBS is on but the Kubernetes API is not reachable "
                f"({type(exc).__name__}: {exc}); run the trainer in the cluster (service "
                "account loraforge-trainer) or with a kubeconfig, or turn it off"
            ) from exc
        return cls(store, controller)

    async def run(self, job: Job, ctx: Any, prefix: str) -> dict[str, Any]:
        """The run.json record the pod committed under `prefix`."""
        run_id = await asyncio.to_thread(write_spec, self.store, job)
        name = job_name("train", run_id)
        await asyncio.to_thread(self.controller.create, run_id, self.env)
        relay = Relay(message=f"Kubernetes Job {name} created")

        def on_event(event: dict[str, Any]) -> None:
            for key in PREVIEW_FIELDS:  # the newest previews the pod uploaded
                if key in event:
                    relay.extra[key] = event[key]
            step, total = event.get("step"), event.get("total")
            if not event.get("message"):
                relay.message = f"step {step}/{total}"
            if isinstance(step, int):
                relay.extra["step"] = step

        final = await relay_job(
            self.controller, run_id, ctx, relay, on_event, poll_s=self.poll_s, tick_s=self.tick_s
        )
        return await asyncio.to_thread(self._finish, job, name, prefix, final, list(relay.tail))

    def _finish(
        self, job: Job, name: str, prefix: str, final: Any, tail: list[str]
    ) -> dict[str, Any]:
        record = record_key(prefix)
        lines = "\n".join(tail) or "(no log lines)"
        if final.state == "CANCELLED":
            raise Cancelled(f"Kubernetes Job {name} of job {job.id} was deleted before it ended")
        if final.state == "FAILED":
            raise KubernetesJobFailed(
                f"Kubernetes Job {name} failed ({final.message}); its pod's last log "
                f"lines:\n{lines}"
            )
        if self.store.stat(Bucket.LORAS, record) is None:
            raise KubernetesJobFailed(
                f"Kubernetes Job {name} completed but wrote no loras/{record}; its "
                f"pod's last log lines:\n{lines}"
            )
        committed: dict[str, Any] = self.store.get_json(Bucket.LORAS, record)
        return committed


# ----------------------------------------------------------------------------------- pod side


def run_in_pod(
    run_id: str,
    *,
    device: str | None = None,
    models_dir: str | None = None,
    settings: Any = None,
    out: TextIO | None = None,
) -> int:
    """``loraforge-train --run RUN_ID`` without ``--run-config-dir``: 0 done, 3 cancelled;
    InvalidInput (exit 2 in the CLI) and other errors propagate."""
    settings = settings or load_settings()
    store = ObjectStore.connect(settings.s3)
    job = read_spec(store, validate_run_id(run_id))
    work = TrainingWork(
        store, models_dir=models_dir or settings.models.dir, device=device or "auto", tick_s=1.0
    )
    return run_work_in_pod(
        work,
        job,
        out,
        stops_after="the current step",
        result=lambda o: {"run_prefix": o.result.get("run_prefix")},
    )
