"""What every job command shares: one gRPC call with a deadline and one error policy, the job
state as a word, and following a job to its end with a progress bar.

    call(stub.StartX, request, service="ingest", target=..., as_json=...)  -> Job (or exits)
    follow(stub, scope(tenant, project), job, service=..., target=..., as_json=...) -> final Job

Exit codes: 2 for a request the service refuses (INVALID_ARGUMENT, with its details), 1 for an
unreachable service (with how to start it) or any other failure, 130 when following is
interrupted (the job itself keeps running).
"""

from __future__ import annotations

import time
from typing import Any

import grpc

from loraforge.cli.output import err_console, fail

TERMINAL = ("SUCCEEDED", "FAILED", "CANCELLED")
RPC_TIMEOUT_S = 15.0
POLL_S = 0.5


def scope(tenant: str, project: str) -> Any:
    from loraforge.v1 import common_pb2

    return common_pb2.ProjectScope(tenant=tenant, project=project)


def job_state(job: Any) -> str:
    """SUCCEEDED, RUNNING, ... (the wire enum without its JOB_STATE_ prefix)."""
    from loraforge.v1 import common_pb2

    return common_pb2.JobState.Name(job.state).removeprefix("JOB_STATE_")


def is_terminal(job: Any) -> bool:
    return job_state(job) in TERMINAL


def call(
    method: Any,
    request: Any,
    *,
    service: str,
    target: str,
    as_json: bool,
    timeout: float = RPC_TIMEOUT_S,
) -> Any:
    """One call with a deadline. The channel (grpc_client.sync_channel) retries UNAVAILABLE
    itself; Start* requests carry a request id, so a retried start never makes a second job."""
    from loraforge.runtime.grpc_client import unavailable_hint

    try:
        return method(request, timeout=timeout)
    except grpc.RpcError as exc:
        code = exc.code()
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            fail(f"{unavailable_hint(target, service)} ({code.name.lower()})", as_json=as_json)
        if code == grpc.StatusCode.INVALID_ARGUMENT:
            fail(exc.details() or "invalid request", as_json=as_json, code=2)
        fail(f"{service}: {code.name}: {exc.details()}", as_json=as_json)


def follow(
    stub: Any,
    scope: Any,
    job: Any,
    *,
    service: str,
    target: str,
    as_json: bool,
    timeout_s: float | None = None,
    progress: tuple[Any, Any] | None = None,
) -> Any:
    """Poll GetJob until the job ends; returns the last Job seen.

    A rich progress bar on stderr, none with --json. `progress=(Progress, task_id)` draws into
    a caller's bar instead (several stages in one view). With `timeout_s`, gives up after that
    long and returns the job as it is then (not terminal; the caller decides). Ctrl-C stops
    following only: the job keeps running in the service, and the message says how to cancel.
    """
    from loraforge.v1 import common_pb2

    request = common_pb2.GetJobRequest(scope=scope, job_id=job.id)
    deadline = None if timeout_s is None else time.monotonic() + timeout_s

    def poll(update: Any) -> Any:
        nonlocal job
        while True:
            update(job)
            if is_terminal(job) or (deadline is not None and time.monotonic() > deadline):
                return job
            time.sleep(POLL_S)
            job = call(stub.GetJob, request, service=service, target=target, as_json=as_json)

    try:
        if progress is not None:
            bar, task = progress
            return poll(
                lambda j: bar.update(
                    task, completed=j.progress, description=f"{service}: {j.message[:60]}"
                )
            )
        if as_json:
            return poll(lambda j: None)
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        with Progress(
            TextColumn(f"[bold]{service}[/bold] " + "{task.fields[state]:<9}"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            TimeElapsedColumn(),
            TextColumn("{task.description}"),
            console=err_console,
            transient=False,
        ) as bar:
            task = bar.add_task(job.message, total=1.0, state=job_state(job))
            announced: set[int] = set()

            def update(j: Any) -> None:
                bar.update(
                    task, completed=j.progress, description=j.message[:60], state=job_state(j)
                )
                note = preview_note(job_result(j), announced)
                if note:
                    bar.console.print(note)

            return poll(update)
    except KeyboardInterrupt:
        fail(
            f"stopped following {service} job {job.id}; it keeps running in the service. "
            f"Cancel it with the {service} service's CancelJob call (job id {job.id}, "
            f"project {scope.tenant}/{scope.project})",
            as_json=as_json,
            code=130,
        )


def preview_note(result: dict[str, Any], announced: set[int]) -> str | None:
    """A line for previews a training job rendered since the last poll (its result carries
    ``preview_step`` and ``preview_keys``); ``announced`` remembers the steps said already."""
    step, keys = result.get("preview_step"), result.get("preview_keys") or []
    if step is None or not keys or int(step) in announced:
        return None
    announced.add(int(step))
    folder = str(keys[0]).rsplit("/", 1)[0]
    return f"previews of step {int(step)}: loras/{folder}/ ({len(keys)} images)"


def job_result(job: Any) -> dict[str, Any]:
    from loraforge.runtime.servicers import dict_from_struct

    return dict_from_struct(job.result) if job.HasField("result") else {}
