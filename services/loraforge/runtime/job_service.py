"""Start / get / list / cancel jobs, and run them from the request queue.

Every backend service has the same four calls; what differs is the work a job does. A
service therefore gives `JobWorker` one coroutine, `run(job, ctx) -> JobOutcome`, and gets
idempotent starts, progress events, cancellation and failure handling from here.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import secrets
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from nats.js.errors import NotFoundError

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
        # A job makes its project exist, for the gateway too (one registry: runtime/projects.py)
        await self._jobs.projects.ensure(tenant, project, created_by=self.kind)
        job_id = new_job_id(request_id, scope=f"{tenant}/{project}/{self.kind}")
        job, _created = await self._jobs.create_or_get(
            Job(id=job_id, kind=self.kind, tenant=tenant, project=project, params=params)
        )
        if job.state is JobState.PENDING:
            # Published on every start of a PENDING job, so a crash between storing the job
            # and publishing its request heals on retry; the event id de-duplicates.
            await self._bus.publish(
                Event(
                    id=f"{self.kind}-request-{job.id}",
                    type=self.request_type,
                    tenant=tenant,
                    project=project,
                    data={"job_id": job.id},
                )
            )
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

    async def fail_pending(self, job: Job, reason: str) -> Job:
        """FAILED with `reason` if the job is still PENDING (its request will never be served,
        e.g. the queue it waits in was deleted), announced like any outcome; a job a worker
        took up meanwhile is left to it."""

        def change(current: Job) -> dict[str, Any]:
            if current.state is not JobState.PENDING:
                raise _NotMine(current.id)
            return {"state": JobState.FAILED, "message": reason}

        try:
            final = await self._jobs.mutate(job.tenant, job.project, job.id, change)
        except _NotMine:
            return await self._jobs.get(job.tenant, job.project, job.id)
        await announce(self._bus, self.kind, final)
        return final


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
            if job.state.terminal:
                # Another writer's verdict (the reaper failed it as hung): the work stops here,
                # and the verdict stands (JobWorker._finish keeps the first).
                raise Cancelled(f"job {job.id} is already {job.state.value}: {job.message}")
            update: dict[str, Any] = {"progress": fraction, "message": message}
            if result:
                update["result"] = {**job.result, **result}
            # Progress is a change in what the job shows, not a report: a timer that reports
            # the same step of a stuck training thread is no progress (the reaper's deadline).
            if (
                fraction != job.progress
                or message != job.message
                or update.get("result", job.result) != job.result
            ):
                update["progress_at"] = _now()
            return update

        self.job = await self._jobs.mutate(self.job.tenant, self.job.project, self.job.id, change)
        await self._bus.publish(
            Event(
                type=progress_event(self.job.kind),
                tenant=self.job.tenant,
                project=self.job.project,
                # the work's own fields (the trainer's step and preview keys) ride along
                data={
                    "job_id": self.job.id,
                    "progress": fraction,
                    "message": message,
                    **({"result": result} if result else {}),
                },
            )
        )

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


class _NotMine(Exception):
    """Aborts a beat or a reap: the record moved on (another worker, a verdict, a fresh beat)."""


class _Verdict(Exception):
    """Aborts a beat: the job is terminal although its work still runs (the reaper's verdict)."""


def _now() -> datetime:
    return datetime.now(UTC)


class JobWorker:
    """Consumes `<kind>.requests` (a work queue shared by every replica) and runs `work`.

    Heartbeat and reaper: while a job runs, its worker writes `beat_at` (with its `worker`
    id, the delivery `attempt` and the request's stream sequence) into the job record every
    `job_beat_s`. Each JobWorker (one per service process) also runs a reaper for its kind.
    A RUNNING job whose beat is older than the stale bound has lost its worker. Whether it
    is failed depends on JetStream, which owns redelivery: while the request is still
    pending for the consumer and deliveries remain, a live replica will take it (after
    ack_wait, or once a busy replica is free) and beat again, so the reaper leaves it. It
    fails the job (compare-and-set on the stale revision: a replica that picked the job up
    again in between wins) only when no delivery is coming: the dead worker held the last
    delivery (its max-deliveries advisory may have found no live replica), or the request
    is no longer pending (acknowledged, terminated, or gone from the stream).

    No job stays RUNNING when its request is given up on: bad input (InvalidInput) fails it at
    once; any other error the consumer gives up on (a permanent error such as a missing
    dataset, LoRA or unprovisioned preset, the last failed delivery, or the max-deliveries
    advisory of a worker that died on its last delivery) reaches `on_dead_letter`, which marks
    it FAILED with the reason. A finished job's outcome events (`<kind>.<state>` and the work's
    follow-ups) are stored with it and published again, with the same ids, whenever its
    request is redelivered: a publish that failed after the job was stored is not lost, and
    JetStream's de-duplication delivers it once.
    """

    def __init__(
        self, kind: str, jobs: JobStore, bus: EventBus, work: Work, *, durable: str | None = None
    ):
        self.kind = kind
        self._jobs = jobs
        self._bus = bus
        self._work = work
        # The consumer this worker's requests come through: `<kind>-workers`, or another queue
        # of the same kind (a deployment's calls); recorded in each job it runs, so the reaper
        # asks the right consumer whether a delivery is still coming.
        self._durable = durable or f"{kind}-workers"
        # Names this process in the jobs it runs (operators see which pod held a lost job).
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"

    @property
    def durable(self) -> str:
        return self._durable

    async def start(self, *, reaper: bool = True) -> None:
        await self._bus.subscribe(
            self.durable, f"{self.kind}.requests", self.handle, on_dead_letter=self.on_dead_letter
        )
        if reaper:
            # Cancelled with the consumers (EventBus.stop_consumers: the one shutdown path).
            self._bus.background(self._reap_forever(), name=f"reaper:{self.kind}")

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
        job = await self._jobs.update(
            job,
            state=JobState.RUNNING,
            message="running",
            worker=self.worker_id,
            attempt=delivery.attempt,
            request_seq=delivery.stream_seq,
            consumer=self.durable,
            beat_at=_now(),
            progress_at=_now(),
        )
        ctx = JobContext(job, self._jobs, self._bus)

        async def run() -> JobOutcome:
            return await self._work(job, ctx)

        work = asyncio.create_task(run(), name=f"work:{job.id}")
        beat = asyncio.create_task(self._beat(job, work), name=f"beat:{job.id}")
        try:
            outcome = await work
        except asyncio.CancelledError:
            current = asyncio.current_task()
            stopped_by_beat = beat.done() and not beat.cancelled() and beat.result()
            if not stopped_by_beat or (current is not None and current.cancelling()):
                raise  # shutdown (the work stops with its handler), or the work's own doing
            # Another writer gave the verdict (the reaper failed the job as hung) and the beat
            # stopped the work. The verdict stands; the request is acknowledged, not retried.
            await self._announce(await self._jobs.get(job.tenant, job.project, job.id))
            return
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
        finally:
            beat.cancel()
        follow_ups = [e.model_dump(mode="json") for e in outcome.events]
        await self._finish(
            ctx.job,
            JobState.SUCCEEDED,
            outcome.message,
            artifacts=outcome.artifacts,
            result={**ctx.job.result, **outcome.result},
            follow_ups=follow_ups,
        )

    async def _beat(self, job: Job, work: asyncio.Task[JobOutcome]) -> bool:
        """Write `beat_at` every job_beat_s while this delivery runs the job. A verdict by
        another writer (the reaper failed the job as hung) stops the work, which would hold its
        delivery and a worker slot forever; True when this beat stopped it."""
        attempt = job.attempt

        def change(current: Job) -> dict[str, Any]:
            if current.state.terminal:
                raise _Verdict(current.id)
            if current.worker != self.worker_id or current.attempt != attempt:
                raise _NotMine(current.id)  # another delivery took it over
            return {"beat_at": _now()}

        interval = self._bus.settings.job_beat_s
        while True:
            await asyncio.sleep(interval)
            try:
                await self._jobs.mutate(job.tenant, job.project, job.id, change)
            except _Verdict:
                if work.done():
                    return False
                log.error("job %s was given a verdict while running; stopping its work", job.id)
                work.cancel()
                return True
            except _NotMine:
                return False
            except Exception as exc:
                log.warning("could not beat job %s: %s", job.id, exc)

    async def _reap_forever(self) -> None:
        """One pass every reap_every_s (jittered, so replicas spread out). A pass judges only
        after this process has seen the store for a whole stale bound: a live worker cut off
        from NATS for a while (a NATS restart) must get the chance to beat again first."""
        loop = asyncio.get_running_loop()
        settings = self._bus.settings
        seeing_since = loop.time()
        while True:
            await asyncio.sleep(settings.reap_every_s * random.uniform(0.8, 1.2))
            if not self._bus.is_connected:
                seeing_since = loop.time()
                continue
            if loop.time() - seeing_since < settings.job_stale_after:
                continue
            try:
                await self.reap()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("reaper pass for %s failed: %s", self.kind, exc)
                seeing_since = loop.time()

    async def reap(self, now: datetime | None = None) -> list[Job]:
        """Fail this kind's RUNNING jobs whose worker stopped beating and whose request no
        delivery will bring back, and those whose worker beats without progress past the
        kind's progress deadline; returns the jobs it failed. Safe on every replica at once."""
        now = now or _now()
        reaped: list[Job] = []
        for job in await self._jobs.scan(kind=self.kind, states=[JobState.RUNNING]):
            final = await self._reap_stale(job, now) or await self._reap_hung(job, now)
            if final is not None:
                reaped.append(final)
        return reaped

    async def _reap_stale(self, job: Job, now: datetime) -> Job | None:
        """Fail a job whose worker stopped beating when no delivery of its request is coming;
        None when it beats, a delivery is coming, or it changed meanwhile."""
        settings = self._bus.settings
        bound = settings.job_stale_after

        def stale(current: Job) -> bool:
            beat = current.beat_at or current.updated_at  # records written before beats existed
            return current.state is JobState.RUNNING and (now - beat).total_seconds() > bound

        if not stale(job):
            return None
        why = await self._no_delivery_coming(job)
        if why is None:
            return None  # JetStream will hand the request to a live replica, which beats
        beat = job.beat_at or job.updated_at
        reason = (
            f"worker {job.worker or 'unknown'} stopped heartbeating at "
            f"{beat.isoformat(timespec='seconds')} (attempt {job.attempt} of "
            f"{settings.max_deliver}) and {why}; start the job again"
        )

        def change(current: Job) -> dict[str, Any]:
            # Compare-and-set on what we judged: a new beat or verdict since then wins.
            if current.revision != job.revision or not stale(current):
                raise _NotMine(current.id)
            return {"state": JobState.FAILED, "message": reason}

        try:
            final = await self._jobs.mutate(job.tenant, job.project, job.id, change, attempts=1)
        except (_NotMine, LoraforgeError):
            return None  # changed under us: judged again on the next pass
        log.error("reaped job %s: %s", job.id, reason)
        await self._announce(final)
        return final

    async def _reap_hung(self, job: Job, now: datetime) -> Job | None:
        """Fail a job whose worker beats but whose work showed no progress for longer than its
        kind's deadline (a hung download, a deadlocked thread); the worker's beat sees the
        verdict and stops the work. None when the job is not hung (or changed meanwhile)."""
        limit = self._bus.settings.progress_deadline(job.kind)

        def hung(current: Job) -> bool:
            since = current.progress_at
            return (
                limit > 0
                and current.state is JobState.RUNNING
                and since is not None
                and (now - since).total_seconds() > limit
            )

        if not hung(job):
            return None
        assert job.progress_at is not None
        reason = (
            f"no progress since {job.progress_at.isoformat(timespec='seconds')} (last: "
            f"{job.message!r} at {job.progress:.0%}) while worker {job.worker or 'unknown'} "
            f"kept heartbeating: over the {limit:g} s progress deadline of {job.kind} jobs; "
            "if the work is just slow, raise it (LORAFORGE_NATS__PROGRESS_DEADLINE_S="
            f"'{{\"{job.kind}\": {2 * limit:g}}}'), then start the job again"
        )

        def change(current: Job) -> dict[str, Any]:
            if not hung(current):  # progress (or a verdict) since we looked
                raise _NotMine(current.id)
            return {"state": JobState.FAILED, "message": reason}

        try:
            final = await self._jobs.mutate(job.tenant, job.project, job.id, change, attempts=3)
        except (_NotMine, LoraforgeError):
            return None
        log.error("reaped hung job %s: %s", job.id, reason)
        await self._announce(final)
        return final

    async def _no_delivery_coming(self, job: Job) -> str | None:
        """Why no delivery of the job's request is coming, or None when one is."""
        settings = self._bus.settings
        if job.attempt >= settings.max_deliver:
            return "that was the request's last delivery"
        js = self._bus.jetstream
        durable = job.consumer or self.durable  # records written before `consumer` existed
        try:
            info = await js.consumer_info(settings.stream, durable)
        except NotFoundError:
            return f"the consumer {durable} no longer exists"
        if job.request_seq:
            try:
                await js.get_msg(settings.stream, job.request_seq)
            except NotFoundError:
                return "its request is no longer in the stream"
            if job.request_seq <= info.ack_floor.stream_seq:
                return "its request was already acknowledged or given up"
        return None

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
        await announce(self._bus, self.kind, job)


async def announce(bus: EventBus, kind: str, job: Job) -> None:
    """Publish a terminal job's `<kind>.<state>` event and its stored follow-ups. The ids are
    fixed by the job, so announcing twice stores each event once."""
    state = job.state.value.lower()
    await bus.publish(
        Event(
            id=f"{kind}-{state}-{job.id}",
            type=f"{kind}.{state}",
            tenant=job.tenant,
            project=job.project,
            data={"job_id": job.id, "message": job.message},
        )
    )
    for follow_up in job.follow_ups:
        await bus.publish(Event.model_validate(follow_up))
