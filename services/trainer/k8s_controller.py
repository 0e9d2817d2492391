"""Training runs as Kubernetes Jobs: create, watch, relay status and logs, cancel.

The Job manifest comes from :func:`loraforge.runtime.k8s_jobs.build_gpu_job`; this module
only talks to the API. Pass the kubernetes client's ``BatchV1Api`` and ``CoreV1Api`` (or
objects with the same methods: tests use fakes, the cluster is external).

State mapping (Job status -> loraforge job lifecycle):
``succeeded >= 1`` or condition ``Complete`` -> SUCCEEDED; condition ``Failed`` -> FAILED
(reason in the message, e.g. BackoffLimitExceeded / DeadlineExceeded); ``active >= 1`` ->
RUNNING; otherwise PENDING; a Job that is gone after we created it -> CANCELLED.
Creation is idempotent: the Job name is deterministic, and a 409 from the API means the
Job is already there.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from loraforge.runtime.k8s_jobs import build_gpu_job, job_name


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


class TrainingJobController:
    def __init__(self, batch_api: Any, core_api: Any, namespace: str, image: str,
                 sleep: Callable[[float], None] = time.sleep, **job_options: Any):
        self.batch = batch_api
        self.core = core_api
        self.namespace = namespace
        self.image = image
        self.sleep = sleep
        self.job_options = job_options

    @classmethod
    def from_cluster(cls, namespace: str, image: str, **job_options: Any) -> TrainingJobController:
        """Real clients from in-cluster config (or ~/.kube/config outside a cluster)."""
        from kubernetes import client, config  # type: ignore[import-untyped]

        try:
            config.load_incluster_config()
        except config.ConfigException:
            config.load_kube_config()
        return cls(client.BatchV1Api(), client.CoreV1Api(), namespace, image, **job_options)

    def manifest(self, run_id: str, env: Mapping[str, str] | None = None) -> dict[str, Any]:
        return build_gpu_job("train", run_id, self.image, self.namespace, env=env,
                             **self.job_options)

    def create(self, run_id: str, env: Mapping[str, str] | None = None) -> dict[str, Any]:
        body = self.manifest(run_id, env)
        try:
            self.batch.create_namespaced_job(self.namespace, body)
        except Exception as exc:
            if _status_code(exc) != 409:  # 409: already created by an earlier attempt
                raise
        return body

    def status(self, run_id: str) -> JobStatus:
        try:
            job = self.batch.read_namespaced_job_status(job_name("train", run_id), self.namespace)
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
                return JobStatus("FAILED", f"{_get(cond, 'reason', '')}: {_get(cond, 'message', '')}")
        if (_get(st, "succeeded", 0) or 0) >= 1:
            return JobStatus("SUCCEEDED", "completed")
        if (_get(st, "active", 0) or 0) >= 1:
            return JobStatus("RUNNING", "pod running")
        return JobStatus("PENDING", "waiting for a GPU node")

    def logs(self, run_id: str, since_seconds: int | None = None) -> str:
        """Log text of the Job's newest pod ('' while none is scheduled)."""
        pods = self.core.list_namespaced_pod(
            self.namespace, label_selector=f"job-name={job_name('train', run_id)}")
        items = list(_get(pods, "items", []) or [])
        if not items:
            return ""
        pod = items[-1]
        name = _get(_get(pod, "metadata"), "name")
        kwargs = {"container": "train"}
        if since_seconds:
            kwargs["since_seconds"] = since_seconds
        try:
            return self.core.read_namespaced_pod_log(name, self.namespace, **kwargs) or ""
        except Exception as exc:
            if _status_code(exc) in (400, 404):  # container not started yet / pod gone
                return ""
            raise

    def watch(self, run_id: str, on_status: Callable[[JobStatus], None] | None = None,
              on_log: Callable[[str], None] | None = None, poll_s: float = 5.0,
              timeout_s: float | None = None,
              should_stop: Callable[[], bool] | None = None) -> JobStatus:
        """Poll until the Job ends; report each status change and each new log line.
        `timeout_s` or `should_stop` (checked after each poll) end the watch early, with the
        last status seen."""
        seen_lines = 0
        last: JobStatus | None = None
        start = time.monotonic()
        while True:
            st = self.status(run_id)
            if st != last and on_status:
                on_status(st)
            last = st
            if on_log:
                lines = self.logs(run_id).splitlines()
                for line in lines[seen_lines:]:
                    on_log(line)
                seen_lines = max(seen_lines, len(lines))
            if st.terminal:
                return st
            if timeout_s is not None and time.monotonic() - start > timeout_s:
                return st
            if should_stop is not None and should_stop():
                return st
            self.sleep(poll_s)

    def cancel(self, run_id: str) -> bool:
        """Delete the Job and its pods (the trainer gets SIGTERM, checkpoints, exits).
        Returns False when it was already gone."""
        try:
            self.batch.delete_namespaced_job(
                job_name("train", run_id), self.namespace, propagation_policy="Foreground",
                grace_period_seconds=60)
        except Exception as exc:
            if _status_code(exc) == 404:
                return False
            raise
        return True
