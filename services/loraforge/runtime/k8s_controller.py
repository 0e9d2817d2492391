"""GPU work (training runs, renders) as Kubernetes Jobs: create, watch, relay status and logs,
cancel. One controller for both kinds (the trainer's ``TrainingJobController`` and render's
``RenderJobController`` only fix the kind: Job name prefix and container name).

The Job manifest comes from :func:`loraforge.runtime.k8s_jobs.build_gpu_job`; this module
only talks to the API. Pass the kubernetes client's ``BatchV1Api`` and ``CoreV1Api`` (or
objects with the same methods: tests use fakes, the cluster is external).

State mapping (Job status -> loraforge job lifecycle):
``succeeded >= 1`` or condition ``Complete`` -> SUCCEEDED; condition ``Failed`` -> FAILED
(reason in the message, e.g. BackoffLimitExceeded / DeadlineExceeded); ``active >= 1`` ->
RUNNING; otherwise PENDING; a Job that is gone after we created it -> CANCELLED.
Creation is idempotent: the Job name is deterministic, and a 409 from the API means the
Job is already there. Logs are followed in the newest pod (a retried Job gets a new one),
timestamped, and after the first read only for a window since the previous poll.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TextIO

from loraforge.runtime.errors import Cancelled, InvalidInput
from loraforge.runtime.jobs import Job
from loraforge.runtime.k8s_jobs import JobKind, build_gpu_job, job_name, validate_run_id
from loraforge.runtime.keys import ProjectRef
from loraforge.runtime.storage import Bucket, ObjectStore


@dataclass(frozen=True)
class JobSpecs:
    """Where a kind's Kubernetes Jobs find their job: the spec (the job record) under the
    tenant's prefix, ``<t>/<p>/<folder>/<job_id>/k8s-spec.json``, and a pointer to it found
    from the run id alone (the only thing a pod is given), ``_k8s/<kind>/<run_id>.json``.
    The pointer lives outside every tenant prefix (a slug never starts with '_', like the
    store's own ``_staging/``) so that the spec itself stays under its tenant's prefix."""

    bucket: Bucket
    folder: str  # runs | renders
    kind: str  # train | render
    writer: str  # who writes the spec, named when it is missing

    def pointer_key(self, run_id: str) -> str:
        return f"_k8s/{self.kind}/{validate_run_id(run_id)}.json"

    def spec_key(self, ref: ProjectRef, job_id: str) -> str:
        return ref.key(self.folder, job_id, "k8s-spec.json")

    def write(self, store: ObjectStore, job: Job, params: dict[str, Any]) -> str:
        """Store the spec, then the pointer (what the pod looks for); the run id (= job id)."""
        run_id = validate_run_id(job.id)
        ref = ProjectRef(job.tenant, job.project)
        store.put_json(
            self.bucket,
            self.spec_key(ref, job.id),
            {
                "run_id": run_id,
                "job": {
                    "id": job.id,
                    "kind": job.kind,
                    "tenant": job.tenant,
                    "project": job.project,
                    "params": params,
                },
            },
        )
        store.put_json(
            self.bucket,
            self.pointer_key(run_id),
            {"tenant": job.tenant, "project": job.project, "job_id": job.id},
        )
        return run_id

    def read(self, store: ObjectStore, run_id: str) -> Job:
        key = self.pointer_key(run_id)
        if store.stat(self.bucket, key) is None:
            raise InvalidInput(
                f"no {self.kind} spec for run {run_id!r} ({self.bucket.value}/{key} "
                f"is missing): the {self.writer} writes it before it creates the Job"
            )
        pointer = store.get_json(self.bucket, key)
        ref = ProjectRef(pointer["tenant"], pointer["project"])
        job = Job.model_validate(
            store.get_json(self.bucket, self.spec_key(ref, pointer["job_id"]))["job"]
        )
        if (job.id, job.tenant, job.project) != (run_id, ref.tenant, ref.project):
            raise InvalidInput(
                f"{self.kind} spec of {run_id!r} names job {job.tenant}/{job.project}/{job.id}"
            )
        return job


@dataclass(frozen=True)
class JobStatus:
    state: str  # PENDING | RUNNING | SUCCEEDED | FAILED | CANCELLED
    message: str = ""

    @property
    def terminal(self) -> bool:
        return self.state in ("SUCCEEDED", "FAILED", "CANCELLED")


def _get(obj: Any, name: str, default: Any = None) -> Any:
    if obj is None:
        return default
    if isinstance(obj, Mapping):
        return obj.get(name, default)
    return getattr(obj, name, default)


def _status_code(exc: BaseException) -> int | None:
    return getattr(exc, "status", None)


# a poll asks for the lines of the last (time since the previous poll + this) seconds
LOG_WINDOW_MARGIN_S = 60


def _log_time(stamp: str) -> tuple[int, int] | None:
    """``2026-11-23T12:00:01.5Z`` -> (epoch seconds, nanoseconds); None when not a timestamp.
    Kubernetes writes RFC 3339 with up to 9 fraction digits and trims trailing zeros, so the
    strings do not sort as text."""
    head, _, frac = stamp.rstrip("Z").partition(".")
    try:
        when = datetime.fromisoformat(head).replace(tzinfo=UTC)
        nanos = int(frac.ljust(9, "0")[:9]) if frac else 0
    except ValueError:
        return None
    return int(when.timestamp()), nanos


@dataclass
class LogCursor:
    """Where a watch is in one pod's log: the newest timestamp returned and the lines that
    carried it (two lines can share a timestamp; a window may return both again)."""

    pod: str = ""
    last: tuple[int, int] | None = None
    at_last: list[str] = field(default_factory=list)
    polled_at: float | None = None

    def reset(self, pod: str) -> None:
        self.pod, self.last, self.at_last, self.polled_at = pod, None, [], None

    def take(self, raw_lines: list[str]) -> list[str]:
        fresh: list[str] = []
        seen_at_last = list(self.at_last)
        for raw in raw_lines:
            stamp, _, line = raw.partition(" ")
            when = _log_time(stamp)
            if when is None:  # not timestamped (the API always does; be lenient)
                when, line = self.last or (0, 0), raw
            if self.last is not None and when < self.last:
                continue
            if when == self.last:
                if line in seen_at_last:
                    seen_at_last.remove(line)
                    continue
                self.at_last.append(line)
            else:
                self.last, self.at_last, seen_at_last = when, [line], []
            fresh.append(line)
        return fresh


#: Every Kubernetes API call's (connect, read) timeout in seconds, passed as the client's
#: ``_request_timeout``. Without one a call to an API server that stopped answering (network
#: partition, overloaded apiserver) blocks its thread forever and the job never ends. 5 s to
#: connect is many round trips inside a cluster; 30 s to read covers a log window of a chatty
#: pod on a busy apiserver. A timed-out call raises (urllib3's timeout) like any API error.
API_TIMEOUT_S: tuple[float, float] = (5.0, 30.0)


class GpuJobController:
    #: train or render: the Job's name prefix and container (runtime.k8s_jobs)
    kind: JobKind

    def __init__(
        self,
        batch_api: Any,
        core_api: Any,
        namespace: str,
        image: str,
        sleep: Callable[[float], None] = time.sleep,
        request_timeout: tuple[float, float] = API_TIMEOUT_S,
        **job_options: Any,
    ):
        self.batch = batch_api
        self.core = core_api
        self.namespace = namespace
        self.image = image
        self.sleep = sleep
        self.timeout = request_timeout
        self.job_options = job_options

    @classmethod
    def from_cluster(cls, namespace: str, image: str, **job_options: Any) -> GpuJobController:
        """Real clients from in-cluster config (or ~/.kube/config outside a cluster)."""
        from kubernetes import client, config

        try:
            config.load_incluster_config()
        except config.ConfigException:
            config.load_kube_config()
        return cls(client.BatchV1Api(), client.CoreV1Api(), namespace, image, **job_options)

    def manifest(self, run_id: str, env: Mapping[str, str] | None = None) -> dict[str, Any]:
        return build_gpu_job(
            self.kind, run_id, self.image, self.namespace, env=env, **self.job_options
        )

    def create(self, run_id: str, env: Mapping[str, str] | None = None) -> dict[str, Any]:
        body = self.manifest(run_id, env)
        try:
            self.batch.create_namespaced_job(self.namespace, body, _request_timeout=self.timeout)
        except Exception as exc:
            if _status_code(exc) != 409:  # 409: already created by an earlier attempt
                raise
        return body

    def status(self, run_id: str) -> JobStatus:
        try:
            job = self.batch.read_namespaced_job_status(
                job_name(self.kind, run_id), self.namespace, _request_timeout=self.timeout
            )
        except Exception as exc:
            if _status_code(exc) == 404:
                return JobStatus("CANCELLED", "job not found (deleted)")
            raise
        st = _get(job, "status")
        for cond in _get(st, "conditions", None) or []:
            if _get(cond, "status") != "True":
                continue
            if _get(cond, "type") == "Complete":
                return JobStatus("SUCCEEDED", "completed")
            if _get(cond, "type") == "Failed":
                return JobStatus(
                    "FAILED", f"{_get(cond, 'reason', '')}: {_get(cond, 'message', '')}"
                )
        if (_get(st, "succeeded", 0) or 0) >= 1:
            return JobStatus("SUCCEEDED", "completed")
        if (_get(st, "active", 0) or 0) >= 1:
            return JobStatus("RUNNING", "pod running")
        return JobStatus("PENDING", "waiting for a GPU node")

    def _newest_pod(self, run_id: str) -> str | None:
        """Name of the Job's newest pod: after a retry (backoffLimit) the old one may linger."""
        pods = self.core.list_namespaced_pod(
            self.namespace,
            label_selector=f"job-name={job_name(self.kind, run_id)}",
            _request_timeout=self.timeout,
        )
        items = list(_get(pods, "items", []) or [])
        if not items:
            return None
        newest = max(
            enumerate(items),
            key=lambda ip: (
                str(_get(_get(ip[1], "metadata"), "creation_timestamp", "") or ""),
                ip[0],
            ),
        )[1]
        name = _get(_get(newest, "metadata"), "name")
        return None if name is None else str(name)

    def new_log_lines(self, run_id: str, cursor: LogCursor) -> list[str]:
        """Log lines of the Job's newest pod that ``cursor`` has not returned yet.

        Asks the API for timestamped lines, and once it has some, only for a window since
        the previous poll (plus a margin for clock skew), so a long run's log is not read again
        in full at every poll; lines are told apart by their timestamps.
        """
        pod = self._newest_pod(run_id)
        if pod is None:
            return []
        if pod != cursor.pod:
            cursor.reset(pod)
        kwargs: dict[str, Any] = {
            "container": self.kind,
            "timestamps": True,
            "_request_timeout": self.timeout,
        }
        now = time.monotonic()
        if cursor.last is not None and cursor.polled_at is not None:
            kwargs["since_seconds"] = int(now - cursor.polled_at) + LOG_WINDOW_MARGIN_S
        try:
            text = self.core.read_namespaced_pod_log(pod, self.namespace, **kwargs) or ""
        except Exception as exc:
            if _status_code(exc) in (400, 404):  # container not started yet / pod gone
                return []
            raise
        cursor.polled_at = now
        return cursor.take(text.splitlines())

    def watch(
        self,
        run_id: str,
        on_status: Callable[[JobStatus], None] | None = None,
        on_log: Callable[[str], None] | None = None,
        poll_s: float = 5.0,
        timeout_s: float | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> JobStatus:
        """Poll until the Job ends; report each status change and each new log line.
        `timeout_s` or `should_stop` (checked after each poll) end the watch early, with the
        last status seen."""
        cursor = LogCursor()
        last: JobStatus | None = None
        start = time.monotonic()
        while True:
            st = self.status(run_id)
            if st != last and on_status:
                on_status(st)
            last = st
            if on_log:
                for line in self.new_log_lines(run_id, cursor):
                    on_log(line)
            if st.terminal:
                return st
            if timeout_s is not None and time.monotonic() - start > timeout_s:
                return st
            if should_stop is not None and should_stop():
                return st
            self.sleep(poll_s)

    def cancel(self, run_id: str) -> bool:
        """Delete the Job and its pods (the pod gets SIGTERM: the trainer checkpoints, a
        render stops between two denoising steps).
        Returns False when it was already gone."""
        try:
            self.batch.delete_namespaced_job(
                job_name(self.kind, run_id),
                self.namespace,
                propagation_policy="Foreground",
                grace_period_seconds=60,
                _request_timeout=self.timeout,
            )
        except Exception as exc:
            if _status_code(exc) == 404:
                return False
            raise
        return True


# ------------------------------------------------------------------------------ both sides

# a pod's last lines kept for the failure message
TAIL_LINES = 20


def json_line(line: str) -> dict[str, Any] | None:
    """A pod log line that is one JSON object (PodContext's progress and result lines)."""
    if not line.startswith("{"):
        return None
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


@dataclass
class Relay:
    """What the service shows while a Job runs: updated from the pod's log lines by
    ``on_event`` (one JSON progress line), read at every tick."""

    progress: float = 0.0
    message: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=TAIL_LINES))


async def relay_job(
    controller: GpuJobController,
    run_id: str,
    ctx: Any,
    relay: Relay,
    on_event: Callable[[dict[str, Any]], None],
    *,
    poll_s: float,
    tick_s: float,
) -> JobStatus:
    """Watch the Job until it ends, relaying its pod's progress lines to ``ctx.progress``.

    A cancel (``ctx.progress`` raising Cancelled) deletes the Job; a shutdown of the service
    leaves it running (a redelivered request re-attaches to it by its name). Lines that are not
    progress events are kept in ``relay.tail`` for the failure message."""
    name = job_name(controller.kind, run_id)
    stop = threading.Event()

    def on_status(st: JobStatus) -> None:
        if st.state == "PENDING":
            relay.message = f"Kubernetes Job {name}: waiting for a GPU node"
        elif st.state == "RUNNING" and not relay.progress:
            relay.message = f"Kubernetes Job {name}: pod running"

    def on_log(line: str) -> None:
        event = json_line(line)
        if event is None or event.get("event") != "progress":
            relay.tail.append(line)
            return
        relay.progress = float(event.get("progress") or 0.0)
        relay.message = str(event.get("message") or relay.message)
        on_event(event)

    def watch() -> JobStatus:
        return controller.watch(
            run_id, on_status=on_status, on_log=on_log, poll_s=poll_s, should_stop=stop.is_set
        )

    task = asyncio.ensure_future(asyncio.to_thread(watch))
    try:
        while not task.done():
            await asyncio.wait({task}, timeout=tick_s)
            if not task.done():
                await ctx.progress(relay.progress, relay.message, **relay.extra)
    except Cancelled:
        await asyncio.to_thread(controller.cancel, run_id)
        stop.set()
        await asyncio.gather(task, return_exceptions=True)
        raise
    except BaseException:  # shutdown: leave the Job running, a redelivery re-attaches
        stop.set()
        raise
    return task.result()


class PodContext:
    """What a service's work function needs of a JobContext, in a pod: progress as JSON lines on
    stdout (the service reads them from the pod log), Cancelled once SIGTERM arrived.

    Steps are reported at most every `min_interval_s`: the service re-reads the whole pod
    log at each poll, and a long run would otherwise print a line every half second."""

    def __init__(
        self,
        job: Job,
        stop: threading.Event,
        out: TextIO | None = None,
        min_interval_s: float = 5.0,
    ):
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
        # phase messages and new previews always go out; step messages at most once an interval
        if "step" in result and not new_preview and now - self._last_step_at < self._min_interval_s:
            return
        if "step" in result:
            self._last_step_at = now
        self._last_preview = result.get("preview_step", self._last_preview)
        self._last_message = message
        out = self._out or sys.stdout
        print(
            json.dumps(
                {
                    "event": "progress",
                    "progress": round(min(max(fraction, 0.0), 1.0), 4),
                    "message": message,
                    **result,
                },
                default=str,
            ),
            file=out,
            flush=True,
        )

    async def check_cancelled(self) -> None:
        self.check()

    def check(self) -> None:
        if self._stop.is_set():
            raise Cancelled(f"job {self.job.id}: stopped by a signal")


def run_work_in_pod(
    work: Callable[[Job, Any], Any],
    job: Job,
    out: TextIO | None,
    *,
    stops_after: str,
    result: Callable[[Any], dict[str, Any]] | None = None,
) -> int:
    """The pod side of a GPU Job, the same for training and render: SIGTERM/SIGINT stop the
    work after ``stops_after`` (Kubernetes deletes the Job on cancel), progress goes out as
    JSON lines through :class:`PodContext`, and the last line is the result. Exit 0 done,
    3 cancelled; other errors propagate (InvalidInput: exit 2 in the entry points)."""
    import asyncio
    import signal

    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():  # signals reach the main thread

        def on_signal(signum: int, _frame: Any) -> None:
            print(f"signal {signum}: stopping after {stops_after}", file=sys.stderr)
            stop.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
    ctx = PodContext(job, stop, out)
    stream = out or sys.stdout
    try:
        outcome = asyncio.run(work(job, ctx))
    except Cancelled as exc:
        print(
            json.dumps({"event": "result", "status": "cancelled", "message": str(exc)}),
            file=stream,
            flush=True,
        )
        return 3
    print(
        json.dumps(
            {
                "event": "result",
                "status": "succeeded",
                "message": outcome.message,
                **(result(outcome) if result else {}),
            }
        ),
        file=stream,
        flush=True,
    )
    return 0
