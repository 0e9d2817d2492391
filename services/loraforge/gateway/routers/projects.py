"""Projects: the tenant's namespaces (slugs). Every other resource lives under one."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from loraforge.gateway.auth import Principal, require_key
from loraforge.gateway.deps import gw
from loraforge.gateway.models import Project, ProjectCreate, ProjectList
from loraforge.gateway.problems import PROBLEM_RESPONSES

router = APIRouter(prefix="/v1/projects", tags=["projects"], responses=PROBLEM_RESPONSES)


@router.post("", status_code=201, response_model=Project, operation_id="create_project")
async def create_project(
    body: ProjectCreate, request: Request, principal: Principal = Depends(require_key)
) -> Project:
    """Create a project (409 when the name is taken)."""
    record = await gw(request).state.create_project(principal.tenant, body.name, body.description)
    return Project.model_validate(record)


@router.get("", response_model=ProjectList, operation_id="list_projects")
async def list_projects(
    request: Request, principal: Principal = Depends(require_key)
) -> ProjectList:
    records = await gw(request).state.projects(principal.tenant)
    return ProjectList(projects=[Project.model_validate(r) for r in records])


@router.get("/{project}", response_model=Project, operation_id="get_project")
async def get_project(
    project: str, request: Request, principal: Principal = Depends(require_key)
) -> Project:
    return Project.model_validate(await gw(request).state.project(principal.tenant, project))
