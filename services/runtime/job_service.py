"""Start / get / list / cancel jobs, and run them from the request queue.

Every backend service has the same four calls; what differs is the work a job does. A
service therefore gives `JobWorker` one coroutine, `run(job, ctx) -> JobOutcome`, and gets
idempotent starts, progress events, cancellation and failure handling from here.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from loraforge.runtime.errors import Cancelled, InvalidInput, LoraforgeError, NotFound
from loraforge.runtime.events import DeadLetter, Delivery, Event, EventBus
from loraforge.runtime.jobs import ArtifactRef, Job, JobState, JobStore, new_job_id
from loraforge.runtime.keys import validate_slug

log = logging.getLogger(__name__)


def follow_up_request_id(event_id: str) -> str:
    """The request id of a job an event starts automatically (e.g. curation on
    `clips.ingested`): a redelivered event finds the job it started, and a client that knows
    the event id can find the job too."""
    return f"auto-{event_id}"


class JobService:
    """The four calls every backend exposes, on the shared job store."""

    def __init__(self, kind: str, jobs: JobStore, bus: EventBus):
        self.kind = kind
        self._jobs = jobs
        self._bus = bus

    @property
    def request_type(self) -> str:
        return f"{self.kind}.requests"

    async def start(
        self, tenant: str, project: str, params: dict[str, Any], request_id: str | None = None
    ) -> Job:
        validate_slug(tenant, "tenant")
        validate_slug(project, "project")
        job_id = new_job_id(request_id, scope=f"{tenant}/{project}/{self.kind}")
        job, _created = await self._jobs.create_or_get(
            Job(id=job_id, kind=self.kind, tenant=tenant, project=project, params=params)
        )
        if job.state is JobState.PENDING:
            # Published on every start of a PENDING job, so a crash between storing the job
            # and publishing its request heals on retry; the event id de-duplicates.
            await self._bus.publish(Event(
                id=f"{self.kind}-request-{job.id}", type=self.request_type,
                tenant=tenant, project=project, data={"job_id": job.id},
            ))
        return job

    async def get(self, tenant: str, project: str, job_id: str) -> Job:
        job = await self._jobs.get(tenant, project, job_id)
        if job.kind != self.kind:
            raise NotFound(f"job {job_id} is not a {self.kind} job")
        return job

    async def list(self, tenant: str, project: str | None, states: list[JobState]) -> list[Job]:
        return await self._jobs.list(tenant, project or None, kind=self.kind, states=states)

    async def cancel(self, tenant: str, project: str, job_id: str) -> Job:
        await self.get(tenant, project, job_id)
        return await self._jobs.request_cancel(tenant, project, job_id)


@dataclass
class JobOutcome:
    message: str = "done"
    artifacts: list[ArtifactRef] = field(default_factory=list)
    result: dict[str, Any] = field(default_factory=dict)
    # Events to publish once the job is SUCCEEDED, e.g. `clips.ingested`.
    events: list[Event] = field(default_factory=list)


# Progress event type of a job kind where it is not `<kind>.progress`: the trainer's joins the
# pipeline's `training.*` events (`training.completed`).
PROGRESS_EVENTS = {"trainer": "training.progress"}


def progress_event(kind: str) -> str:
    return PROGRESS_EVENTS.get(kind, f"{kind}.progress")


def job_event_parts(event_type: str) -> tuple[str, str]:
    """``ingest.progress`` -> (``ingest``, ``progress``); ``training.progress`` -> (``trainer``,
    ``progress``): the job kind an event is about, and what happened."""
    for kind, name in PROGRESS_EVENTS.items():
        if event_type == name:
            return kind, "progress"
    kind, _, what = event_type.partition(".")
    return kind, what


class JobContext:
    """Handed to the work: report progress, and learn of cancellation at each report."""

    def __init__(self, job: Job, jobs: JobStore, bus: EventBus):
        self.job = job
        self._jobs = jobs
        self._bus = bus

    async def progress(self, fraction: float, message: str = "", **result: Any) -> None:
        fraction = min(max(fraction, 0.0), 1.0)

        def change(job: Job) -> dict[str, Any]:
            if job.cancel_requested or job.state is JobState.CANCELLED:
                raise Cancelled(f"job {job.id} was cancelled")
            update: dict[str, Any] = {"progress": fraction, "message": message}
            if result:
                update["result"] = {**job.result, **result}
            return update

        self.job = await self._jobs.mutate(self.job.tenant, self.job.project, self.job.id, change)
        await self._bus.publish(Event(
            type=progress_event(self.job.kind), tenant=self.job.tenant, project=self.job.project,
            # the work's own fields (the trainer's step and preview keys) ride along
            data={"job_id": self.job.id, "progress": fraction, "message": message,
                  **({"result": result} if result else {})},
        ))

    async def check_cancelled(self) -> None:
        job = await self._jobs.get(self.job.tenant, self.job.project, self.job.id)
        if job.cancel_requested or job.state is JobState.CANCELLED:
            raise Cancelled(f"job {job.id} was cancelled")


Work = Callable[[Job, JobContext], Awaitable[JobOutcome]]


class _AlreadyFinal(Exception):
    """Aborts a finishing write: another writer made the job terminal first."""

    def __init__(self, job: Job):
        super().__init__(job.id)
        self.job = job


class JobWorker:
    """Consumes `<kind>.requests` (a work queue shared by every replica) and runs `work`.

    No job stays RUNNING when its request is given up on: bad input (InvalidInput) fails it at
    once; any other error the consumer gives up on (a permanent error such as a missing
    dataset, LoRA or unprovisioned preset, the last failed delivery, or the max-deliveries
    advisory of a worker that died on its last delivery) reaches `on_dead_letter`, which marks
    it FAILED with the reason. A finished job's outcome events (`<kind>.<state>` and the work's
    follow-ups) are stored with it and published again, with the same ids, whenever its
    request is redelivered: a publish that failed after the job was stored is not lost, and
    JetStream's de-duplication delivers it once.
    """

    def __init__(self, kind: str, jobs: JobStore, bus: EventBus, work: Work):
        self.kind = kind
        self._jobs = jobs
        self._bus = bus
        self._work = work

    async def start(self) -> None:
        await self._bus.subscribe(f"{self.kind}-workers", f"{self.kind}.requests", self.handle,
                                  on_dead_letter=self.on_dead_letter)

    async def handle(self, event: Event, delivery: Delivery) -> None:
        job_id = event.data.get("job_id")
        if not isinstance(job_id, str):
            raise InvalidInput(f"{self.kind} request {event.id} carries no job_id")
        job = await self._jobs.get(event.tenant, event.project, job_id)
        if job.state.terminal:
            # A redelivery after the outcome was stored: the work is not done twice, but its
            # announcement may not have gone out (a publish failed), so it goes out again.
            await self._announce(job)
            return
        if job.cancel_requested:
            await self._finish(job, JobState.CANCELLED, "cancelled")
            return
        job = await self._jobs.update(job, state=JobState.RUNNING, message="running")
        ctx = JobContext(job, self._jobs, self._bus)
        try:
            outcome = await self._work(job, ctx)
        except Cancelled:
            await self._finish(ctx.job, JobState.CANCELLED, "cancelled")
            return
        except InvalidInput as exc:
            await self._finish(ctx.job, JobState.FAILED, str(exc))
            return
        except Exception as exc:
            if delivery.attempt >= self._bus.settings.max_deliver:
                msg = f"failed after {delivery.attempt} attempts: {exc}"
                await self._finish(ctx.job, JobState.FAILED, msg)
            # Redelivered, or dead-lettered (a permanent error at once, others after the last
            # attempt), which fails the job through on_dead_letter.
            raise
        follow_ups = [e.model_dump(mode="json") for e in outcome.events]
        await self._finish(ctx.job, JobState.SUCCEEDED, outcome.message,
                           artifacts=outcome.artifacts, result={**ctx.job.result, **outcome.result},
                           follow_ups=follow_ups)

    async def on_dead_letter(self, event: Event, letter: DeadLetter) -> None:
        """The consumer gave up on a request: its job (if it is not final yet) becomes FAILED
        with the reason. Idempotent, as every worker replica hears of an advisory."""
        job_id = event.data.get("job_id")
        if not isinstance(job_id, str):
            return  # not a job's request (e.g. a render batch submission): no record to fail
        try:
            job = await self._jobs.get(event.tenant, event.project, job_id)
        except NotFound:
            return
        if letter.reason == "permanent_error":
            reason = letter.error
        else:
            reason = f"gave up after {letter.deliveries} deliveries: {letter.error}"
        await self._finish(job, JobState.FAILED, reason)

    async def _finish(self, job: Job, state: JobState, message: str, **changes: Any) -> None:
        def change(current: Job) -> dict[str, Any]:
            if current.state.terminal:
                raise _AlreadyFinal(current)  # terminal states are final: keep the first verdict
            return {"state": state, "message": message, **changes}

        try:
            final = await self._jobs.mutate(job.tenant, job.project, job.id, change)
        except _AlreadyFinal as done:
            final = done.job
        except LoraforgeError:
            log.exception("could not record %s for job %s", state, job.id)
            raise
        # What was stored, which may be another writer's verdict (a job cancelled first).
        await self._announce(final)

    async def _announce(self, job: Job) -> None:
        """Publish a terminal job's `<kind>.<state>` event and its stored follow-ups. The ids
        are fixed by the job, so announcing twice stores each event once."""
        state = job.state.value.lower()
        await self._bus.publish(Event(
            id=f"{self.kind}-{state}-{job.id}",
            type=f"{self.kind}.{state}", tenant=job.tenant, project=job.project,
            data={"job_id": job.id, "message": job.message},
        ))
        for follow_up in job.follow_ups:
            await self._bus.publish(Event.model_validate(follow_up))
