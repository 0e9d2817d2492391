"""The LoRA library of a project (loraforge.library): named, versioned LoRAs.

    GET    /v1/projects/{p}/loras                              names, aliases, newest version
    POST   /v1/projects/{p}/loras                              promote a finished run's checkpoint
    GET    /v1/projects/{p}/loras/{name}                       its versions and aliases
    GET    /v1/projects/{p}/loras/{name}/versions/{tag}        one version (number or alias) + link
    DELETE /v1/projects/{p}/loras/{name}/versions/{version}    409 while a deployment uses it
    PUT    /v1/projects/{p}/loras/{name}/aliases/{alias}       point an alias at a version
    DELETE /v1/projects/{p}/loras/{name}/aliases/{alias}
    GET    /v1/projects/{p}/training-runs/{run_id}/checkpoints what a run can promote

Every call is scoped to the key's tenant: another tenant's names are 404.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, ConfigDict, Field

from loraforge.gateway.auth import Principal
from loraforge.gateway.deps import gw, project_of
from loraforge.gateway.models import SLUG_PATTERN
from loraforge.gateway.problems import PROBLEM_RESPONSES
from loraforge.library import CheckpointInfo, Library
from loraforge.runtime.keys import ProjectRef
from loraforge.runtime.storage import Bucket

router = APIRouter(prefix="/v1/projects/{project}", responses=PROBLEM_RESPONSES, tags=["loras"])
NAME = Path(pattern=SLUG_PATTERN, description="LoRA name (a slug)", examples=["money-rain"])
TAG = Path(
    pattern=SLUG_PATTERN,
    description="a version number or an alias (latest, prod, ...)",
    examples=["3", "prod"],
)
ALIAS = Path(pattern=SLUG_PATTERN, description="alias name (not a number)", examples=["prod"])
RUN_ID = Path(pattern=r"^[A-Za-z0-9_-]{1,64}$", description="training run (job) id")


class Promote(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "run_id": "01JD...",
                    "name": "money-rain",
                    "checkpoint": "step-600",
                    "reason": "step 600's previews keep the bills sharp; 800 starts to smear faces",
                }
            ]
        },
    )
    run_id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$", description="a succeeded training run")
    name: str = Field(pattern=SLUG_PATTERN, description="the LoRA's name in the library")
    checkpoint: str | None = Field(
        default=None,
        max_length=32,
        description=("best (the run's automatic pick, the default), last, or step-N"),
    )
    reason: str = Field(
        default="",
        max_length=2000,
        description=("why this checkpoint (required when it is not the automatic pick)"),
    )


class TagBody(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"version": 3}]})
    version: int = Field(ge=1)


class LoraVersionOut(BaseModel):
    """A library version (see loraforge.library.records.LoraVersion)."""

    model_config = ConfigDict(extra="allow")
    ref: str
    name: str
    version: int
    run_id: str
    checkpoint: str
    chosen: str
    reason: str
    lora_key: str
    base_preset: str
    download_url: str | None = None


class LoraSummary(BaseModel):
    name: str
    aliases: dict[str, int]
    versions: list[dict[str, Any]]


class LoraList(BaseModel):
    loras: list[LoraSummary]


def _lib(request: Request, principal: Principal, project: str) -> Library:
    return Library(gw(request).store, ProjectRef(principal.tenant, project))


def _by(principal: Principal) -> str:
    return f"key:{principal.key_id}"


@router.get("/loras", response_model=LoraList, operation_id="list_loras")
async def list_loras(
    request: Request, scope: tuple[Principal, str] = Depends(project_of)
) -> LoraList:
    """Every LoRA name of the project with its aliases and versions (newest first)."""
    principal, project = scope
    lib = _lib(request, principal, project)

    def run() -> list[LoraSummary]:
        return [LoraSummary(**lib.summary(n)) for n in lib.names()]

    return LoraList(loras=await gw(request).blocking(run))


@router.post("/loras", status_code=201, response_model=LoraVersionOut, operation_id="promote_lora")
async def promote(
    body: Promote, request: Request, scope: tuple[Principal, str] = Depends(project_of)
) -> LoraVersionOut:
    """A new immutable version `name:n` from a run's checkpoint (the automatic pick unless
    `checkpoint` names another, which needs a `reason`); `latest` moves to it."""
    principal, project = scope
    lib = _lib(request, principal, project)
    v = await gw(request).blocking(
        lib.register,
        body.run_id,
        body.name,
        checkpoint=body.checkpoint,
        reason=body.reason,
        by=_by(principal),
    )
    return LoraVersionOut(**v.public())


@router.get("/loras/{name}", response_model=LoraSummary, operation_id="get_lora")
async def get_lora(
    request: Request, name: str = NAME, scope: tuple[Principal, str] = Depends(project_of)
) -> LoraSummary:
    principal, project = scope
    lib = _lib(request, principal, project)
    return LoraSummary(**await gw(request).blocking(lib.summary, name))


@router.get(
    "/loras/{name}/versions/{tag}", response_model=LoraVersionOut, operation_id="get_lora_version"
)
async def get_version(
    request: Request,
    name: str = NAME,
    tag: str = TAG,
    scope: tuple[Principal, str] = Depends(project_of),
) -> LoraVersionOut:
    """One version by number or alias, with an expiring link to its main file."""
    principal, project = scope
    g = gw(request)
    lib = _lib(request, principal, project)
    v = await g.blocking(lib.resolve, f"{name}:{tag}")
    link = await g.link(Bucket.LORAS, v.lora_key, kind="lora")
    return LoraVersionOut(**v.public(), download_url=link.url)


@router.delete("/loras/{name}/versions/{version}", operation_id="delete_lora_version")
async def delete_version(
    request: Request,
    name: str = NAME,
    version: int = Path(ge=1, description="version number"),
    scope: tuple[Principal, str] = Depends(project_of),
) -> dict[str, Any]:
    """Delete a version (409 while a deployment uses it, naming the deployments)."""
    principal, project = scope
    lib = _lib(request, principal, project)
    return await gw(request).blocking(lib.delete, name, version, by=_by(principal))


@router.put("/loras/{name}/aliases/{alias}", operation_id="tag_lora")
async def tag(
    body: TagBody,
    request: Request,
    name: str = NAME,
    alias: str = ALIAS,
    scope: tuple[Principal, str] = Depends(project_of),
) -> dict[str, Any]:
    """Point `alias` at a version (moved if it pointed elsewhere; its history is kept)."""
    principal, project = scope
    lib = _lib(request, principal, project)
    a = await gw(request).blocking(lib.tag, name, body.version, alias, by=_by(principal))
    return a.model_dump(mode="json")


@router.delete("/loras/{name}/aliases/{alias}", status_code=204, operation_id="untag_lora")
async def untag(
    request: Request,
    name: str = NAME,
    alias: str = ALIAS,
    scope: tuple[Principal, str] = Depends(project_of),
) -> None:
    principal, project = scope
    lib = _lib(request, principal, project)
    await gw(request).blocking(lib.untag, name, alias)


@router.get(
    "/training-runs/{run_id}/checkpoints",
    response_model=list[CheckpointInfo],
    tags=["training-runs"],
    operation_id="training_run_checkpoints",
)
async def checkpoints(
    request: Request, run_id: str = RUN_ID, scope: tuple[Principal, str] = Depends(project_of)
) -> list[CheckpointInfo]:
    """The checkpoints of a finished run: step, automatic pick, validation loss, likeness,
    previews, and whether it can be promoted."""
    principal, project = scope
    lib = _lib(request, principal, project)
    return await gw(request).blocking(lib.checkpoints, run_id)
