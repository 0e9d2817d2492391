"""Jobs of every backend: start / list / get / cancel per kind, a generic list, and SSE.

/v1/projects/{p}/ingest-jobs        IngestService
/v1/projects/{p}/curation-jobs      CurationService
/v1/projects/{p}/captioning-jobs    CaptioningService
/v1/projects/{p}/training-runs      TrainerService
/v1/projects/{p}/renders            RenderService
"""

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from loraforge.gateway.auth import Principal, require_key
from loraforge.gateway.clients import gather_lists
from loraforge.gateway.deps import gw, project_of
from loraforge.gateway.models import (
    CaptioningStart,
    CurationStart,
    IngestStart,
    Job,
    JobKind,
    JobList,
    JobStateName,
    RenderSubmit,
    TrainingStart,
)
from loraforge.gateway.problems import PROBLEM_RESPONSES
from loraforge.gateway.sse import stream
from loraforge.runtime.errors import NotFound

JOB_ID = Path(pattern=r"^[A-Za-z0-9_-]{1,64}$", description="job id")
SSE_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Server-sent events: `progress` with the job as JSON on every change, then "
        "`done` with the final job",
        "content": {
            "text/event-stream": {
                "schema": {"type": "string"},
                "example": 'event: progress\ndata: {"id": "j01", ...}\n\n',
            }
        },
    }
}

router = APIRouter(responses=PROBLEM_RESPONSES)

KINDS: dict[str, tuple[str, type, str]] = {
    # kind: (path segment, start model, BackendClients method)
    "ingest": ("ingest-jobs", IngestStart, "start_ingest"),
    "curation": ("curation-jobs", CurationStart, "start_curation"),
    "captioning": ("captioning-jobs", CaptioningStart, "start_captioning"),
    "trainer": ("training-runs", TrainingStart, "start_training"),
    "render": ("renders", RenderSubmit, "submit_render"),
}


def _add_kind(kind: str, segment: str, model: type[BaseModel], method: str) -> None:
    base = f"/v1/projects/{{project}}/{segment}"
    tag = segment
    name = segment.replace("-", "_")

    # FastAPI reads the request model from this annotation when the route is added (one
    # route per kind), which a static checker cannot follow: hence the ignore.
    async def start(
        body: model,  # type: ignore[valid-type]
        request: Request,
        scope: tuple[Principal, str] = Depends(project_of),
    ) -> Job:
        principal, project = scope
        fn: Callable[..., Awaitable[Job]] = getattr(gw(request).backends, method)
        return await fn(principal.tenant, project, body)

    async def list_(
        request: Request,
        scope: tuple[Principal, str] = Depends(project_of),
        state: list[JobStateName] = Query(default=[]),
        limit: int = Query(default=100, ge=1, le=1000),
    ) -> JobList:
        principal, project = scope
        jobs = await gw(request).backends.list_jobs(kind, principal.tenant, project, state, limit)
        return JobList(jobs=jobs)

    async def get(
        request: Request, job_id: str = JOB_ID, scope: tuple[Principal, str] = Depends(project_of)
    ) -> Job:
        principal, project = scope
        return await gw(request).backends.get_job(kind, principal.tenant, project, job_id)

    async def cancel(
        request: Request, job_id: str = JOB_ID, scope: tuple[Principal, str] = Depends(project_of)
    ) -> Job:
        """PENDING jobs stop at once; RUNNING ones at their next checkpoint."""
        principal, project = scope
        return await gw(request).backends.cancel_job(kind, principal.tenant, project, job_id)

    async def events(
        request: Request,
        job_id: str = JOB_ID,
        scope: tuple[Principal, str] = Depends(project_of),
        max_s: float = Query(default=3600, gt=0, le=86400),
    ) -> StreamingResponse:
        principal, project = scope
        g = gw(request)
        job = await g.jobs.get(principal.tenant, project, job_id)
        if job.kind != kind:
            raise NotFound(f"job {job_id} is not a {kind} job")
        return stream(g, principal.tenant, job, request, max_s)

    start.__doc__ = f"Start a {kind} job (idempotent with `request_id`)."
    router.add_api_route(
        base,
        start,
        methods=["POST"],
        status_code=201,
        response_model=Job,
        tags=[tag],
        operation_id=f"start_{name}",
        summary=f"Start ({kind})",
    )
    router.add_api_route(
        base,
        list_,
        methods=["GET"],
        response_model=JobList,
        tags=[tag],
        operation_id=f"list_{name}",
        summary=f"List {kind} jobs",
    )
    router.add_api_route(
        f"{base}/{{job_id}}",
        get,
        methods=["GET"],
        response_model=Job,
        tags=[tag],
        operation_id=f"get_{name}",
        summary=f"Get a {kind} job",
    )
    router.add_api_route(
        f"{base}/{{job_id}}/cancel",
        cancel,
        methods=["POST"],
        response_model=Job,
        tags=[tag],
        operation_id=f"cancel_{name}",
        summary=f"Cancel a {kind} job",
    )
    router.add_api_route(
        f"{base}/{{job_id}}/events",
        events,
        methods=["GET"],
        tags=[tag],
        operation_id=f"events_{name}",
        summary=f"Progress of a {kind} job (SSE)",
        response_class=StreamingResponse,
        responses=SSE_RESPONSE,
    )


for _kind, (_segment, _model, _method) in KINDS.items():
    _add_kind(_kind, _segment, _model, _method)


@router.get("/v1/jobs", response_model=JobList, tags=["jobs"], operation_id="list_jobs")
async def list_jobs(
    request: Request,
    principal: Principal = Depends(require_key),
    kind: list[JobKind] = Query(default=[]),
    state: list[JobStateName] = Query(default=[]),
    project: str | None = Query(default=None, max_length=63),
    limit: int = Query(default=100, ge=1, le=1000),
) -> JobList:
    """Every job of the tenant, newest first, filtered by kind, state and project."""
    g = gw(request)
    if project is not None:
        await g.state.project(principal.tenant, project)
    kinds = kind or g.backends.kinds
    jobs = await gather_lists(
        g.backends.list_jobs(k, principal.tenant, project, state, limit) for k in kinds
    )
    jobs.sort(key=lambda j: (j.created_at is not None, j.created_at, j.id), reverse=True)
    return JobList(jobs=jobs[:limit])


@router.get(
    "/v1/projects/{project}/jobs/{job_id}/events",
    tags=["jobs"],
    operation_id="job_events",
    response_class=StreamingResponse,
    responses=SSE_RESPONSE,
)
async def any_job_events(
    request: Request,
    job_id: str = JOB_ID,
    scope: tuple[Principal, str] = Depends(project_of),
    max_s: float = Query(default=3600, gt=0, le=86400),
) -> StreamingResponse:
    """Progress of any job of the project as server-sent events (read from the job store)."""
    principal, project = scope
    g = gw(request)
    job = await g.jobs.get(principal.tenant, project, job_id)
    return stream(g, principal.tenant, job, request, max_s)
