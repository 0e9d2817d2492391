"""Server-sent events for a job's progress, read from the job store (read-only).

The job record in the KV bucket is the truth (events may be missed, a record cannot): we
poll it and send `progress` whenever its revision changes, `done` once it is terminal, and a
comment line as keep-alive so proxies do not time the stream out.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from fastapi import Request
from loraforge.gateway.models import Job
from loraforge.runtime.errors import NotFound
from loraforge.runtime.jobs import Job as StoredJob

if TYPE_CHECKING:
    from loraforge.gateway.deps import Gateway


def api_job(job: StoredJob) -> Job:
    return Job.model_validate(job.model_dump(mode="json"))


def _frame(event: str, job: StoredJob) -> str:
    data = api_job(job).model_dump_json()
    return f"id: {job.revision}\nevent: {event}\ndata: {data}\n\n"


async def job_events(g: Gateway, job: StoredJob, request: Request, max_s: float) -> AsyncIterator[str]:
    yield "retry: 2000\n\n"
    last_rev = -1
    last_sent = time.monotonic()
    deadline = time.monotonic() + max_s
    while True:
        if job.revision != last_rev:
            last_rev = job.revision
            last_sent = time.monotonic()
            if job.state.terminal:
                yield _frame("done", job)
                return
            yield _frame("progress", job)
        elif time.monotonic() - last_sent > g.config.sse_keepalive_s:
            last_sent = time.monotonic()
            yield ": keep-alive\n\n"
        if time.monotonic() > deadline or await request.is_disconnected():
            yield f"event: timeout\ndata: {json.dumps({'id': job.id})}\n\n"
            return
        await asyncio.sleep(g.config.sse_poll_s)
        try:
            job = await g.jobs.get(job.tenant, job.project, job.id)
        except NotFound:
            return
