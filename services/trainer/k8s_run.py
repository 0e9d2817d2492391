"""Training as a Kubernetes Job (`TrainingParams.on_kubernetes`): the trainer service's side
and the pod's side of one small protocol, kept together because both read the same keys.

Service (:class:`KubernetesTraining`, used by ``TrainingWork`` for an on_kubernetes job):
    1. the run spec (the job record with on_kubernetes off) ->
         loras  <t>/<p>/runs/<job_id>/k8s-spec.json
       and a pointer to it, found from the run id alone (the only thing the pod is given):
         loras  _k8s/train/<run_id>.json  -> {tenant, project, job_id}
       The run id is the job id (25 lowercase hex-ish characters: a valid Job-name tail).
       The pointer lives outside every tenant prefix (a slug never starts with '_', like
       the store's own `_staging/`) so that the spec itself stays under its tenant's prefix.
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
import json
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Mapping
from typing import Any, TextIO

from loraforge.runtime.errors import Cancelled, ConfigurationError, InvalidInput
from loraforge.runtime.jobs import Job
from loraforge.runtime.k8s_jobs import job_name, validate_run_id
from loraforge.runtime.keys import ProjectRef
from loraforge.runtime.params import TrainingParams
from loraforge.runtime.storage import Bucket, ObjectStore

SPEC = "k8s-spec.json"
POINTER_PREFIX = "_k8s/train/"
# progress fields of the pod's lines relayed as they are (LivePreviews.announce)
PREVIEW_FIELDS = ("preview_step", "preview_keys", "previews")
TAIL_LINES = 20
# Exit codes of the pod, as `loraforge-train` documents them.
EXIT_OK, EXIT_CANCELLED = 0, 3


class KubernetesJobFailed(InvalidInput):
    """The Job ended Failed after Kubernetes already retried its pod (backoffLimit).

    An InvalidInput so that the JobWorker fails the job at once: a redelivery would find the
    same failed Job (its name is the run id) and fail again, minutes later."""


def pointer_key(run_id: str) -> str:
    return f"{POINTER_PREFIX}{validate_run_id(run_id)}.json"


def spec_key(ref: ProjectRef, job_id: str) -> str:
    return ref.key("runs", job_id, SPEC)


def write_spec(store: ObjectStore, job: Job) -> str:
    """Store the spec, then the pointer (the pointer is what the pod looks for); the run id."""
    run_id = validate_run_id(job.id)
    ref = ProjectRef(job.tenant, job.project)
    params = TrainingParams.model_validate(job.params).model_copy(update={"on_kubernetes": False})
    store.put_json(Bucket.LORAS, spec_key(ref, job.id), {
        "run_id": run_id,
        "job": {"id": job.id, "kind": job.kind, "tenant": job.tenant, "project": job.project,
                "params": params.model_dump(mode="json")},
    })
    store.put_json(Bucket.LORAS, pointer_key(run_id),
                   {"tenant": job.tenant, "project": job.project, "job_id": job.id})
    return run_id


def read_spec(store: ObjectStore, run_id: str) -> Job:
    key = pointer_key(run_id)
    if store.stat(Bucket.LORAS, key) is None:
        raise InvalidInput(f"no run spec for run {run_id!r} (loras/{key} is missing): the "
                           "trainer service writes it before it creates the Job")
    pointer = store.get_json(Bucket.LORAS, key)
    ref = ProjectRef(pointer["tenant"], pointer["project"])
    spec = store.get_json(Bucket.LORAS, spec_key(ref, pointer["job_id"]))
    job = Job.model_validate(spec["job"])
    if (job.id, job.tenant, job.project) != (run_id, ref.tenant, ref.project):
        raise InvalidInput(f"run spec of {run_id!r} names job {job.tenant}/{job.project}/{job.id}")
    return job


# ------------------------------------------------------------------------------- service side

class KubernetesTraining:
    """Runs an on_kubernetes training job as a Kubernetes Job and answers with its run.json."""

    def __init__(self, store: ObjectStore, controller: Any, *, poll_s: float = 5.0,
                 tick_s: float = 1.0, env: Mapping[str, str] | None = None):
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
        from loraforge.trainer.k8s_controller import TrainingJobController

        try:
            controller = TrainingJobController.from_cluster(settings.k8s.namespace,
                                                            settings.k8s.trainer_image)
        except Exception as exc:  # no client library, no in-cluster config, no kubeconfig
            raise ConfigurationError(
                f"LORAFORGE_K8S__TRAINING_JOBS is on but the Kubernetes API is not reachable "
                f"({type(exc).__name__}: {exc}); run the trainer in the cluster (service "
                "account loraforge-trainer) or with a kubeconfig, or turn it off") from exc
        return cls(store, controller)

    async def run(self, job: Job, ctx: Any, prefix: str) -> dict[str, Any]:
        """The run.json record the pod committed under `prefix`."""
        run_id = await asyncio.to_thread(write_spec, self.store, job)
        name = job_name("train", run_id)
        await asyncio.to_thread(self.controller.create, run_id, self.env)
        state: dict[str, Any] = {"progress": 0.0, "message": f"Kubernetes Job {name} created",
                                 "step": None}
        tail: deque[str] = deque(maxlen=TAIL_LINES)
        previews: dict[str, Any] = {}
        stop = threading.Event()

        def on_status(st: Any) -> None:
            if st.state == "PENDING":
                state["message"] = f"Kubernetes Job {name}: waiting for a GPU node"
            elif st.state == "RUNNING" and state["step"] is None:
                state["message"] = f"Kubernetes Job {name}: pod running"

        def on_log(line: str) -> None:
            event = _json_line(line)
            if event is None or event.get("event") != "progress":
                tail.append(line)
                return
            for key in PREVIEW_FIELDS:  # the newest previews the pod uploaded
                if key in event:
                    previews[key] = event[key]
            step, total = event.get("step"), event.get("total")
            state["progress"] = float(event.get("progress") or 0.0)
            state["message"] = str(event.get("message") or f"step {step}/{total}")
            if isinstance(step, int):
                state["step"] = step

        def watch() -> Any:
            return self.controller.watch(run_id, on_status=on_status, on_log=on_log,
                                         poll_s=self.poll_s, should_stop=stop.is_set)

        task = asyncio.ensure_future(asyncio.to_thread(watch))
        try:
            while not task.done():
                await asyncio.wait({task}, timeout=self.tick_s)
                if not task.done():
                    extra = {"step": state["step"]} if state["step"] is not None else {}
                    await ctx.progress(state["progress"], state["message"], **extra, **previews)
        except Cancelled:
            await asyncio.to_thread(self.controller.cancel, run_id)
            stop.set()
            await asyncio.gather(task, return_exceptions=True)
            raise
        except BaseException:  # shutdown: leave the Job running, a redelivery re-attaches
            stop.set()
            raise
        final = task.result()
        return await asyncio.to_thread(self._finish, job, name, prefix, final, list(tail))

    def _finish(self, job: Job, name: str, prefix: str, final: Any, tail: list[str]
                ) -> dict[str, Any]:
        from loraforge.trainer.worker import RECORD

        lines = "\n".join(tail) or "(no log lines)"
        if final.state == "CANCELLED":
            raise Cancelled(f"Kubernetes Job {name} of job {job.id} was deleted before it ended")
        if final.state == "FAILED":
            raise KubernetesJobFailed(
                f"Kubernetes Job {name} failed ({final.message}); its pod's last log lines:\n{lines}")
        if self.store.stat(Bucket.LORAS, f"{prefix}/{RECORD}") is None:
            raise KubernetesJobFailed(
                f"Kubernetes Job {name} completed but wrote no loras/{prefix}/{RECORD}; its "
                f"pod's last log lines:\n{lines}")
        return self.store.get_json(Bucket.LORAS, f"{prefix}/{RECORD}")


def _json_line(line: str) -> dict[str, Any] | None:
    if not line.startswith("{"):
        return None
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


# ----------------------------------------------------------------------------------- pod side

class PodContext:
    """What ``TrainingWork`` needs of a JobContext, in a pod: progress as JSON lines on
    stdout (the service reads them from the pod log), Cancelled once SIGTERM arrived.

    Steps are reported at most every `min_interval_s`: the service re-reads the whole pod
    log at each poll, and a long run would otherwise print a line every half second."""

    def __init__(self, job: Job, stop: threading.Event, out: TextIO | None = None,
                 min_interval_s: float = 5.0):
        self.job = job
        self._stop = stop
        self._out = out
        self._min_interval_s = min_interval_s
        self._last_message = ""
        self._last_step_at = float("-inf")
        self._last_preview: Any = None

    async def progress(self, fraction: float, message: str = "", **result: Any) -> None:
        self.check()
        now = time.monotonic()
        new_preview = result.get("preview_step") not in (None, self._last_preview)
        if message == self._last_message and not new_preview:
            return
        if "step" in result and not new_preview:  # phase messages and new previews always go out
            if now - self._last_step_at < self._min_interval_s:
                return
        if "step" in result:
            self._last_step_at = now
        self._last_preview = result.get("preview_step", self._last_preview)
        self._last_message = message
        out = self._out or sys.stdout
        print(json.dumps({"event": "progress", "progress": round(min(max(fraction, 0.0), 1.0), 4),
                          "message": message, **result}, default=str), file=out, flush=True)

    async def check_cancelled(self) -> None:
        self.check()

    def check(self) -> None:
        if self._stop.is_set():
            raise Cancelled(f"job {self.job.id}: stopped by a signal")


def run_in_pod(run_id: str, *, device: str | None = None, models_dir: str | None = None,
               settings: Any = None, out: TextIO | None = None) -> int:
    """``loraforge-train --run RUN_ID`` without ``--run-config-dir``: 0 done, 3 cancelled;
    InvalidInput (exit 2 in the CLI) and other errors propagate."""
    from loraforge.runtime.settings import load_settings
    from loraforge.trainer.worker import TrainingWork

    settings = settings or load_settings()
    store = ObjectStore.connect(settings.s3)
    job = read_spec(store, validate_run_id(run_id))
    work = TrainingWork(store, models_dir=models_dir or settings.models.dir,
                        device=device or "auto", tick_s=1.0)
    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():  # signals reach the main thread
        def on_signal(signum: int, _frame: Any) -> None:
            print(f"signal {signum}: stopping after the current step", file=sys.stderr)
            stop.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
    ctx = PodContext(job, stop, out)
    stream = out or sys.stdout
    try:
        outcome = asyncio.run(work(job, ctx))  # type: ignore[arg-type]
    except Cancelled as exc:
        print(json.dumps({"event": "result", "status": "cancelled", "message": str(exc)}),
              file=stream, flush=True)
        return EXIT_CANCELLED
    print(json.dumps({"event": "result", "status": "succeeded", "message": outcome.message,
                      "run_prefix": outcome.result.get("run_prefix")}), file=stream, flush=True)
    return EXIT_OK
