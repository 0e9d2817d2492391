"""Jobs: the one lifecycle every service shares, stored in a JetStream key-value bucket.

`PENDING -> RUNNING -> SUCCEEDED | FAILED | CANCELLED` (PENDING may also go straight to
FAILED or CANCELLED). Every write names the revision it read: two writers that read the same
revision cannot both win; the loser gets `Conflict` and re-reads. Terminal states are final.
A terminal job keeps the follow-up events its worker published, so they can be published again.
"""

from __future__ import annotations

import builtins
import hashlib
import secrets
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue
from pydantic import BaseModel, Field

from loraforge.runtime.errors import (
    AlreadyExists,
    Conflict,
    InvalidInput,
    InvalidTransition,
    NotFound,
    Unavailable,
)
from loraforge.runtime.events import current_entries, open_key_value
from loraforge.runtime.keys import validate_slug
from loraforge.runtime.projects import ProjectRegistry


class JobState(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})

ALLOWED_TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.PENDING: frozenset(
        {JobState.PENDING, JobState.RUNNING, JobState.FAILED, JobState.CANCELLED}
    ),
    JobState.RUNNING: frozenset(
        {JobState.RUNNING, JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED}
    ),
    JobState.SUCCEEDED: frozenset(),
    JobState.FAILED: frozenset(),
    JobState.CANCELLED: frozenset(),
}


class ArtifactRef(BaseModel):
    bucket: str
    key: str
    kind: str = ""  # e.g. "clip", "keyframe", "manifest", "lora", "preview", "report"
    size: int = 0
    sha256: str = ""


def _now() -> datetime:
    return datetime.now(UTC)


class Job(BaseModel):
    id: str
    kind: str  # the service that owns it: ingest, curation, captioning, trainer, render
    tenant: str
    project: str
    state: JobState = JobState.PENDING
    progress: float = Field(default=0.0, ge=0.0, le=1.0)
    message: str = ""
    created_at: datetime = Field(default_factory=_now)
    updated_at: datetime = Field(default_factory=_now)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    artifacts: list[ArtifactRef] = Field(default_factory=list)
    params: dict[str, Any] = Field(default_factory=dict)
    result: dict[str, Any] = Field(default_factory=dict)
    cancel_requested: bool = False
    # Events (dumped `events.Event`s) that announce the job's outcome to the next stage,
    # stored in the same write that makes it SUCCEEDED: a redelivered request of a terminal
    # job publishes them again with the same ids, so a publish that failed once is not lost
    # and JetStream's de-duplication keeps it exactly once (job_service.JobWorker).
    follow_ups: list[dict[str, Any]] = Field(default_factory=list)
    # The heartbeat of the worker running it (job_service.JobWorker): which worker process,
    # on which delivery of the request, and when it last said it was alive. A RUNNING job
    # whose beat is stale and whose request is not coming back is failed by the reaper.
    worker: str = ""
    attempt: int = 0
    request_seq: int = 0  # the request's stream sequence, to ask JetStream whether it is pending
    consumer: str = (
        ""  # the durable consumer that delivered it (a deployment's calls have their own)
    )
    beat_at: datetime | None = None
    # When the work last showed progress (it started, or a report changed the job's
    # fraction, message or result): a job that beats without progress past its kind's
    # deadline (settings.PROGRESS_DEADLINES_S) is hung, and the reaper fails it.
    progress_at: datetime | None = None
    # The KV revision this copy was read at; not stored, used for compare-and-set.
    revision: int = Field(default=0, exclude=True)


def new_job_id(request_id: str | None = None, *, scope: str = "") -> str:
    """Time-ordered random id, or a stable one derived from a client's idempotency key."""
    if request_id:
        return "r" + hashlib.sha256(f"{scope}\0{request_id}".encode()).hexdigest()[:24]
    return f"j{time.time_ns():016x}{secrets.token_hex(4)}"


class JobStore:
    def __init__(self, kv: KeyValue, bucket: str, projects: ProjectRegistry):
        self._kv = kv
        self.bucket = bucket
        # The projects the jobs live in (runtime/projects.py), opened with the store so that
        # every holder of a job store (each service, the gateway) shares the one registry.
        self.projects = projects

    @classmethod
    async def open(cls, js: JetStreamContext, bucket: str, history: int = 10) -> JobStore:
        """Bind to the bucket (and the project registry beside it), creating them on first use."""
        kv = await open_key_value(js, bucket, history=history)
        return cls(kv, bucket, await ProjectRegistry.open(js, f"{bucket}_projects"))

    @staticmethod
    def _key(tenant: str, project: str, job_id: str) -> str:
        return f"{tenant}.{project}.{job_id}"

    async def create(self, job: Job) -> Job:
        validate_slug(job.tenant, "tenant")
        validate_slug(job.project, "project")
        if job.state is not JobState.PENDING:
            raise InvalidTransition(f"a new job starts PENDING, not {job.state}")
        try:
            rev = await self._kv.create(self._key(job.tenant, job.project, job.id), _encode(job))
        except KeyWrongLastSequenceError:
            raise AlreadyExists(f"job {job.id} already exists") from None
        return job.model_copy(update={"revision": rev})

    async def create_or_get(self, job: Job) -> tuple[Job, bool]:
        """Idempotent start: the same id twice returns the stored job and `False`."""
        try:
            return await self.create(job), True
        except AlreadyExists:
            return await self.get(job.tenant, job.project, job.id), False

    async def get(self, tenant: str, project: str, job_id: str) -> Job:
        try:
            entry = await self._kv.get(self._key(tenant, project, job_id))
        except KeyNotFoundError:
            raise NotFound(f"job {job_id} not found in {tenant}/{project}") from None
        if entry.value is None:
            raise NotFound(f"job {job_id} not found in {tenant}/{project}")
        return _decode(entry.value, entry.revision)

    async def find(self, tenant: str, job_id: str) -> Job:
        """Look a job up by id within a tenant when the project is not known."""
        # The server matches the subject filter (nats-py's `keys(filters=...)` would fetch every
        # key and substring-match on the client).
        keys = [
            e.key for e in await current_entries(self._kv, f"{tenant}.*.{job_id}", meta_only=True)
        ]
        if not keys:
            raise NotFound(f"job {job_id} not found for tenant {tenant}")
        _, project, _ = keys[0].split(".", 2)
        return await self.get(tenant, project, job_id)

    async def list(
        self,
        tenant: str,
        project: str | None = None,
        *,
        kind: str | None = None,
        states: Iterable[JobState] = (),
    ) -> list[Job]:
        """The jobs of a tenant (of one project), newest first: one read of the bucket."""
        wanted = set(states)
        jobs = []
        for entry in await current_entries(self._kv, f"{tenant}.{project or '*'}.*"):
            job = _decode(entry.value, entry.revision)
            if (kind is None or job.kind == kind) and (not wanted or job.state in wanted):
                jobs.append(job)
        return sorted(jobs, key=lambda j: (j.created_at, j.id), reverse=True)

    async def scan(
        self, *, kind: str | None = None, states: Iterable[JobState] = ()
    ) -> builtins.list[Job]:
        """Every tenant's jobs of `kind` in `states` (the reaper's pass): one read of the
        bucket that carries the values, instead of a read per key."""
        wanted = set(states)
        jobs = [_decode(e.value, e.revision) for e in await current_entries(self._kv, "*.*.*")]
        return [
            job
            for job in jobs
            if (kind is None or job.kind == kind) and (not wanted or job.state in wanted)
        ]

    async def update(self, job: Job, **changes: Any) -> Job:
        """Write `job` with `changes` applied, if nobody else wrote since `job.revision`."""
        new_state = JobState(changes.get("state", job.state))
        if new_state not in ALLOWED_TRANSITIONS[job.state]:
            raise InvalidTransition(f"job {job.id} is {job.state}; it cannot become {new_state}")
        if "progress" in changes and not 0.0 <= float(changes["progress"]) <= 1.0:
            raise InvalidInput(f"progress must lie in [0, 1], got {changes['progress']}")
        now = _now()
        changes["updated_at"] = now
        if new_state is JobState.RUNNING and job.started_at is None:
            changes["started_at"] = now
        if new_state.terminal:
            changes["finished_at"] = now
            if new_state is JobState.SUCCEEDED:
                changes["progress"] = 1.0
        updated = job.model_validate({**job.model_dump(), **changes})
        try:
            rev = await self._kv.update(
                self._key(job.tenant, job.project, job.id), _encode(updated), last=job.revision
            )
        except KeyWrongLastSequenceError:
            raise Conflict(
                f"job {job.id} changed since revision {job.revision}; re-read it and retry"
            ) from None
        return updated.model_copy(update={"revision": rev})

    async def mutate(
        self,
        tenant: str,
        project: str,
        job_id: str,
        change: Callable[[Job], dict[str, Any]],
        attempts: int = 8,
    ) -> Job:
        """Read-modify-write with retry on conflict. `change` may raise to abort."""
        for _ in range(attempts):
            job = await self.get(tenant, project, job_id)
            try:
                return await self.update(job, **change(job))
            except Conflict:
                continue
        raise Conflict(f"job {job_id} kept changing under us; try again")

    async def request_cancel(self, tenant: str, project: str, job_id: str) -> Job:
        """PENDING jobs are cancelled at once; RUNNING ones are flagged for their worker."""

        def change(job: Job) -> dict[str, Any]:
            if job.state.terminal:
                return {}
            if job.state is JobState.PENDING:
                return {"state": JobState.CANCELLED, "message": "cancelled before it started"}
            return {"cancel_requested": True, "message": "cancellation requested"}

        job = await self.get(tenant, project, job_id)
        if job.state.terminal:
            return job
        return await self.mutate(tenant, project, job_id, change)


# NATS refuses messages over its max_payload (1 MiB by default); keep job records well below.
MAX_JOB_RECORD_BYTES = 512 * 1024


def _encode(job: Job) -> bytes:
    data = job.model_dump_json().encode()
    if len(data) > MAX_JOB_RECORD_BYTES:
        raise InvalidInput(
            f"job {job.id} record is {len(data)} bytes (max {MAX_JOB_RECORD_BYTES}); store large "
            "results as an object (a manifest) and reference it from the job"
        )
    return data


def _decode(data: bytes, revision: int | None) -> Job:
    if revision is None:  # nats-py's type allows it; an entry read from the server has one
        raise Unavailable("the job store returned an entry without a revision; retry")
    return Job.model_validate_json(data).model_copy(update={"revision": revision})
