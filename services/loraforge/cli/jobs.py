"""Following a job to its end with a progress bar, over either transport, and the wire helpers
of the commands that drive the services' gRPC API themselves (`run`, `sweep`, the fault suite).

    job = backend.start("ingest", project, {...})
    job = follow(backend, job)          # the final Job (loraforge.cli.backend.Job)

Ctrl-C while following raises `Interrupted` (exit 130): the job itself keeps running, and the
message says how to cancel it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from loraforge.cli.backend import RPC_TIMEOUT_S, TERMINAL, Backend, Job
from loraforge.cli.output import Interrupted, err_console, wants_json
from loraforge.runtime.servicers import dict_from_struct
from loraforge.v1 import common_pb2

__all__ = ["POLL_S", "RPC_TIMEOUT_S", "TERMINAL", "follow", "is_terminal", "job_state", "scope"]

POLL_S = 0.5


def follow(
    backend: Backend,
    job: Job,
    *,
    timeout_s: float | None = None,
    progress: tuple[Progress, TaskID] | None = None,
) -> Job:
    """Poll the job until it ends; returns the last Job seen.

    A rich progress bar on stderr, none with --json. `progress=(Progress, task_id)` draws into
    a caller's bar instead (several stages in one view). With `timeout_s`, gives up after that
    long and returns the job as it is then (not terminal; the caller decides).
    """
    deadline = None if timeout_s is None else time.monotonic() + timeout_s

    def poll(update: Callable[[Job], None]) -> Job:
        nonlocal job
        while True:
            update(job)
            if job.terminal or (deadline is not None and time.monotonic() > deadline):
                return job
            time.sleep(POLL_S)
            job = backend.get(job.service, job.project, job.id)

    try:
        if progress is not None:
            bar, task = progress
            return poll(
                lambda j: bar.update(
                    task, completed=j.progress, description=f"{j.service}: {j.message[:60]}"
                )
            )
        if wants_json():
            return poll(lambda j: None)
        with Progress(
            TextColumn(f"[bold]{job.service}[/bold] " + "{task.fields[state]:<9}"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            TimeElapsedColumn(),
            TextColumn("{task.description}"),
            console=err_console,
            transient=False,
        ) as bar:
            task = bar.add_task(job.message, total=1.0, state=job.state)
            announced: set[int] = set()

            def update(j: Job) -> None:
                bar.update(task, completed=j.progress, description=j.message[:60], state=j.state)
                note = preview_note(j.result, announced)
                if note:
                    bar.console.print(note)

            return poll(update)
    except KeyboardInterrupt:
        raise Interrupted(
            f"stopped following {job.service} job {job.id}; it keeps running in the service. "
            + backend.cancel_hint(job)
        ) from None


def preview_note(result: dict[str, Any], announced: set[int]) -> str | None:
    """A line for previews a training job rendered since the last poll (its result carries
    ``preview_step`` and ``preview_keys``); ``announced`` remembers the steps said already."""
    step, keys = result.get("preview_step"), result.get("preview_keys") or []
    if step is None or not keys or int(step) in announced:
        return None
    announced.add(int(step))
    folder = str(keys[0]).rsplit("/", 1)[0]
    return f"previews of step {int(step)}: loras/{folder}/ ({len(keys)} images)"


# -- the wire, for commands that call the services' stubs themselves -----------------------------


def scope(tenant: str, project: str) -> common_pb2.ProjectScope:
    return common_pb2.ProjectScope(tenant=tenant, project=project)


def job_state(job: common_pb2.Job) -> str:
    """SUCCEEDED, RUNNING, ... (the wire enum without its JOB_STATE_ prefix)."""
    return common_pb2.JobState.Name(job.state).removeprefix("JOB_STATE_")


def is_terminal(job: common_pb2.Job) -> bool:
    return job_state(job) in TERMINAL


def job_result(job: common_pb2.Job) -> dict[str, Any]:
    return dict_from_struct(job.result) if job.HasField("result") else {}
