"""Wire <-> domain conversion shared by every servicer, and the job calls they all expose.

With the per-service `servicer.py` modules, this is the only code that imports the generated
`loraforge.v1` classes; domain code sees `Job` and plain values only.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import grpc
from google.protobuf import json_format, struct_pb2, timestamp_pb2

from loraforge.runtime.errors import InvalidInput
from loraforge.runtime.job_service import JobService
from loraforge.runtime.jobs import ArtifactRef, Job, JobState
from loraforge.v1 import common_pb2

_STATE_TO_WIRE = {
    JobState.PENDING: common_pb2.JOB_STATE_PENDING,
    JobState.RUNNING: common_pb2.JOB_STATE_RUNNING,
    JobState.SUCCEEDED: common_pb2.JOB_STATE_SUCCEEDED,
    JobState.FAILED: common_pb2.JOB_STATE_FAILED,
    JobState.CANCELLED: common_pb2.JOB_STATE_CANCELLED,
}
_STATE_FROM_WIRE: dict[int, JobState] = {v: k for k, v in _STATE_TO_WIRE.items()}


def state_from_wire(value: int) -> JobState:
    try:
        return _STATE_FROM_WIRE[value]
    except KeyError:
        raise InvalidInput(
            f"unknown job state {value}; use PENDING, RUNNING, SUCCEEDED, FAILED or CANCELLED"
        ) from None


def scope_from_wire(
    scope: common_pb2.ProjectScope, *, project_required: bool = True
) -> tuple[str, str]:
    if not scope.tenant:
        raise InvalidInput("scope.tenant is required")
    if project_required and not scope.project:
        raise InvalidInput("scope.project is required")
    return scope.tenant, scope.project


def present_fields(message: Any, *names: str) -> dict[str, Any]:
    """The named proto3 `optional` fields that are set on `message`, with their values (0
    included); unset fields are left out so the domain default applies."""
    return {name: getattr(message, name) for name in names if message.HasField(name)}


def struct_from_dict(value: dict[str, Any]) -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    out.update(json_safe(value))
    return out


def dict_from_struct(value: struct_pb2.Struct) -> dict[str, Any]:
    return json_format.MessageToDict(value)


def json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def _ts(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value)
    return ts


def artifact_to_wire(ref: ArtifactRef) -> common_pb2.ArtifactRef:
    return common_pb2.ArtifactRef(
        bucket=ref.bucket, key=ref.key, kind=ref.kind, size=ref.size, sha256=ref.sha256
    )


def job_to_wire(job: Job) -> common_pb2.Job:
    msg = common_pb2.Job(
        id=job.id,
        kind=job.kind,
        tenant=job.tenant,
        project=job.project,
        state=_STATE_TO_WIRE[job.state],
        progress=job.progress,
        message=job.message,
        artifacts=[artifact_to_wire(a) for a in job.artifacts],
        params=struct_from_dict(job.params),
        result=struct_from_dict(job.result),
        cancel_requested=job.cancel_requested,
    )
    for name in ("created_at", "updated_at", "started_at", "finished_at"):
        ts = _ts(getattr(job, name))
        if ts is not None:
            getattr(msg, name).CopyFrom(ts)
    return msg


class JobCalls:
    """GetJob / ListJobs / CancelJob, identical in every backend's service."""

    jobs: JobService

    async def GetJob(
        self,
        request: common_pb2.GetJobRequest,
        context: grpc.aio.ServicerContext[common_pb2.GetJobRequest, common_pb2.Job],
    ) -> common_pb2.Job:
        tenant, project = scope_from_wire(request.scope)
        return job_to_wire(await self.jobs.get(tenant, project, request.job_id))

    async def ListJobs(
        self,
        request: common_pb2.ListJobsRequest,
        context: grpc.aio.ServicerContext[common_pb2.ListJobsRequest, common_pb2.ListJobsResponse],
    ) -> common_pb2.ListJobsResponse:
        tenant, project = scope_from_wire(request.scope, project_required=False)
        states = [state_from_wire(s) for s in request.states]
        jobs = await self.jobs.list(tenant, project, states)
        if request.page_size > 0:
            jobs = jobs[: request.page_size]
        return common_pb2.ListJobsResponse(jobs=[job_to_wire(j) for j in jobs])

    async def CancelJob(
        self,
        request: common_pb2.CancelJobRequest,
        context: grpc.aio.ServicerContext[common_pb2.CancelJobRequest, common_pb2.Job],
    ) -> common_pb2.Job:
        tenant, project = scope_from_wire(request.scope)
        return job_to_wire(await self.jobs.cancel(tenant, project, request.job_id))
