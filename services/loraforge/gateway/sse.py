"""Server-sent events for a job's progress, read from the job store (read-only).

The job record in the KV bucket is the truth (events may be missed, a record cannot): we
poll it and send `progress` whenever what the API shows of it changes, `done` once it is
terminal, and a comment line as keep-alive so proxies do not time the stream out.

Each open stream holds a connection and polls the job store, so a tenant may hold at most
`GatewayConfig.sse_streams_per_tenant` at once per gateway replica (`StreamSlots`); one more is
429 with Retry-After. A stream's slot is released when it ends, times out or its client goes.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from fastapi import Request
from fastapi.responses import StreamingResponse

from loraforge.gateway.models import Job
from loraforge.gateway.problems import RateLimited
from loraforge.runtime.errors import NotFound
from loraforge.runtime.jobs import Job as StoredJob

if TYPE_CHECKING:
    from loraforge.gateway.deps import Gateway


def api_job(job: StoredJob) -> Job:
    return Job.model_validate(job.model_dump(mode="json"))


def _frame(event: str, job: StoredJob) -> str:
    data = api_job(job).model_dump_json()
    return f"id: {job.revision}\nevent: {event}\ndata: {data}\n\n"


async def job_events(
    g: Gateway, job: StoredJob, request: Request, max_s: float
) -> AsyncIterator[str]:
    yield "retry: 2000\n\n"
    last_view: dict[str, Any] | None = None
    last_sent = time.monotonic()
    deadline = time.monotonic() + max_s
    while True:
        # What the client can see changed; a worker's heartbeat (a new revision that only
        # moves `beat_at` and `updated_at`) is no progress to report
        view = api_job(job).model_dump(mode="json", exclude={"updated_at"})
        if view != last_view:
            last_view = view
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


# A full tenant is told to come back after this long: streams last minutes to hours, so
# there is no moment to predict; 10 s keeps a polling client's load small.
FULL_RETRY_AFTER_S = 10.0


class StreamSlots:
    """Open SSE streams per tenant, in this process (an asyncio loop: no lock needed)."""

    def __init__(self, per_tenant: int):
        self.per_tenant = per_tenant
        self.open: dict[str, int] = {}

    def take(self, tenant: str) -> None:
        held = self.open.get(tenant, 0)
        if held >= self.per_tenant:
            raise RateLimited(
                f"tenant {tenant} already has {held} progress streams open (the limit is "
                f"{self.per_tenant}); close one, or use webhooks to follow many jobs",
                retry_after_s=FULL_RETRY_AFTER_S,
            )
        self.open[tenant] = held + 1

    def give(self, tenant: str) -> None:
        left = self.open.get(tenant, 0) - 1
        if left > 0:
            self.open[tenant] = left
        else:
            self.open.pop(tenant, None)


def stream(
    g: Gateway, tenant: str, job: StoredJob, request: Request, max_s: float
) -> StreamingResponse:
    """The job's SSE response, holding one of the tenant's stream slots while it runs."""
    slots: StreamSlots = g.extra.setdefault(
        "sse_slots", StreamSlots(g.config.sse_streams_per_tenant)
    )
    slots.take(tenant)

    async def body() -> AsyncIterator[str]:
        try:
            async for frame in job_events(g, job, request, max_s):
                yield frame
        finally:
            slots.give(tenant)

    return StreamingResponse(
        body(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
