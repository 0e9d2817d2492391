"""Deployments of a project (loraforge.library.deployments): a LoRA version kept warm on
render workers and called by name, in the project's style and in seed 004's hosted shapes.

    POST   /v1/projects/{p}/deployments                  create (status PENDING, then RUNNING)
    GET    /v1/projects/{p}/deployments                  list
    GET    /v1/projects/{p}/deployments/{name}           status, capacity, warm workers
    DELETE /v1/projects/{p}/deployments/{name}           stop and remove
    POST   /v1/projects/{p}/deployments/{name}/calls     generate: a render job (202); follow it
                                                         at /v1/projects/{p}/renders/{job_id}
                                                         (+ /events, /results) like any render

Seed 004's compatibility surface (the project is the `X-Project` header, default `fine-tunes`,
created on first use, as for /api/v1/files and fine-tunes in compat.py; `Authorization:
Bearer KEY` as everywhere):

    POST   /api/v1/deployments                           {model_name, aigc_config, capacity, plan}
    GET    /api/v1/deployments                           output.deployments
    GET    /api/v1/deployments/{deployed_model}          output.status (PENDING/RUNNING/...)
    DELETE /api/v1/deployments/{deployed_model}
    POST   /api/v1/services/aigc/video-generation/video-synthesis
                                                         {model: deployed_model, input: {prompt,
                                                         img_url | first_frame_url, last_frame_url}}
                                                         -> output.task_id, output.task_status
    GET    /api/v1/tasks/{task_id}                       output.task_status, output.video_url

Images of a call are raw-bucket keys of the project (what uploads return) or `data:` URLs
(stored in raw, content-addressed, like an upload). Every call is scoped to the key's tenant:
another tenant's deployments are 404.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import uuid
from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, ConfigDict, Field

from loraforge.gateway.auth import Principal
from loraforge.gateway.deps import Gateway, gw, project_of
from loraforge.gateway.models import Job
from loraforge.gateway.problems import PROBLEM_RESPONSES
from loraforge.gateway.routers.compat import compat_project
from loraforge.ingest.layout import original_key
from loraforge.library.deployments import GenerationDefaults, PromptSettings
from loraforge.runtime.errors import InvalidInput, NotFound
from loraforge.runtime.keys import ProjectRef
from loraforge.runtime.storage import Bucket

router = APIRouter(responses=PROBLEM_RESPONSES)
DEPLOYMENT = Path(
    pattern=r"^[a-z0-9][a-z0-9-]{0,62}$",
    description="deployment name",
    examples=["money-rain-ft-202511111122-1a2b"],
)
DEPLOYED_MODEL = Path(
    pattern=r"^[a-z0-9][a-z0-9-]{0,62}$",
    description="the deployed_model",
    examples=["money-rain-ft-202511111122-1a2b"],
)
MAX_DATA_URL_BYTES = 20 * 2**20  # a 4096x4096 PNG photo is ~15-20 MB


class DeploymentCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "money-rain-prod",
                    "lora": "money-rain:prod",
                    "preset": "wan2.1-flf2v-14b",
                    "defaults": {
                        "width": 832,
                        "height": 480,
                        "frames": 81,
                        "steps": 30,
                        "strength": 1.0,
                    },
                    "prompt": {
                        "template": "The video opens on {description}. {lora_prompt}",
                        "lora_prompt_default": "Then s86b5p money rain pours down around her.",
                        "use_input_prompt": False,
                        "caption_source": "attributes",
                    },
                    "capacity": 1,
                }
            ]
        },
    )
    name: str = Field(
        default="",
        pattern=r"^$|^[a-z0-9][a-z0-9-]{0,62}$",
        description="empty: generated (`<lora>-ft-<time>-<hex>`)",
    )
    lora: str = Field(
        min_length=1,
        max_length=300,
        description=(
            "a library version (`name:3`, `name:prod`, `name` = latest) or a run (`run:<run_id>`, "
            "`run:<run_id>@step-N`)"
        ),
    )
    preset: str = Field(default="", max_length=100, description="empty: the LoRA's base preset")
    defaults: GenerationDefaults = GenerationDefaults()
    prompt: PromptSettings = PromptSettings()
    capacity: int = Field(default=1, ge=1, le=16, description="warm workers asked for")


class Deployment(BaseModel):
    """A deployment and its status (PENDING until a worker holds it warm, RUNNING while one
    does, STOPPED, FAILED with the reason)."""

    model_config = ConfigDict(extra="allow")
    name: str
    status: Literal["PENDING", "RUNNING", "STOPPED", "FAILED"]
    capacity: int
    warm_workers: int
    lora: str
    lora_key: str
    preset: str
    mode: str = Field(
        description="what a call needs: flf2v (image + last_image), i2v (image), "
        "t2v or image (text only)"
    )
    trigger: str
    strength: float
    defaults: dict[str, Any]
    prompt: dict[str, Any]
    message: str = ""
    created_at: datetime


class DeploymentList(BaseModel):
    deployments: list[Deployment]


class CallBody(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "image": "acme/fx/sources/9f86d0....png",
                    "last_image": "acme/fx/sources/2c26b4....png",
                }
            ]
        },
    )
    image: str = Field(
        default="",
        max_length=30_000_000,
        description="first frame: a raw key from an upload, or a data: URL",
    )
    last_image: str = Field(default="", max_length=30_000_000, description="last frame (flf2v)")
    prompt: str = Field(
        default="",
        max_length=4000,
        description="used only when the deployment has use_input_prompt",
    )
    seed: int | None = Field(default=None, ge=0, le=2**32 - 1)
    request_id: str | None = Field(
        default=None,
        max_length=200,
        description="idempotency key: the same key returns the same job",
    )


async def input_image(g: Gateway, ref: ProjectRef, value: str, label: str) -> str:
    """A call's image as a raw key of the project: a key is kept (the render service checks
    it), a data: URL is stored content-addressed like an upload."""
    if not value or not value.startswith("data:"):
        if value.startswith(("http://", "https://")):
            raise InvalidInput(
                f"{label}: URLs are not fetched; upload the image "
                f"(POST /v1/projects/{ref.project}/uploads) and pass its key, or "
                "send it as a data: URL"
            )
        return value
    m = re.match(r"^data:image/(png|jpeg|jpg|webp|bmp);base64,(.*)$", value, re.S)
    if not m:
        raise InvalidInput(f"{label}: a data URL must be data:image/<png|jpeg|webp|bmp>;base64,...")
    try:
        data = base64.b64decode(m.group(2), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(f"{label}: the data URL is not valid base64") from None
    if len(data) > MAX_DATA_URL_BYTES:
        raise InvalidInput(f"{label}: {len(data)} bytes, over the {MAX_DATA_URL_BYTES}-byte limit")
    ext = {"jpeg": ".jpg"}.get(m.group(1), f".{m.group(1)}")
    key = original_key(ref, hashlib.sha256(data).hexdigest(), ext)
    if await g.blocking(g.store.stat, Bucket.RAW, key) is None:
        await g.blocking(
            g.store.put_bytes, Bucket.RAW, key, data, content_type=f"image/{m.group(1)}"
        )
    return key


# ------------------------------------------------------------------ /v1

BASE = "/v1/projects/{project}/deployments"


@router.post(
    BASE,
    status_code=201,
    response_model=Deployment,
    tags=["deployments"],
    operation_id="create_deployment",
)
async def create(
    body: DeploymentCreate, request: Request, scope: tuple[Principal, str] = Depends(project_of)
) -> dict[str, Any]:
    """Deploy a LoRA version: its record is stored and `capacity` warm workers are asked for;
    poll until `status` is RUNNING, then call it."""
    principal, project = scope
    return await gw(request).backends.create_deployment(
        principal.tenant, project, body.model_dump(mode="json")
    )


@router.get(
    BASE, response_model=DeploymentList, tags=["deployments"], operation_id="list_deployments"
)
async def list_(
    request: Request, scope: tuple[Principal, str] = Depends(project_of)
) -> DeploymentList:
    principal, project = scope
    items = await gw(request).backends.list_deployments(principal.tenant, project)
    return DeploymentList(deployments=[Deployment.model_validate(d) for d in items])


@router.get(
    BASE + "/{name}", response_model=Deployment, tags=["deployments"], operation_id="get_deployment"
)
async def get(
    request: Request, name: str = DEPLOYMENT, scope: tuple[Principal, str] = Depends(project_of)
) -> dict[str, Any]:
    principal, project = scope
    return await gw(request).backends.get_deployment(principal.tenant, project, name)


@router.delete(
    BASE + "/{name}",
    response_model=Deployment,
    tags=["deployments"],
    operation_id="delete_deployment",
)
async def delete(
    request: Request, name: str = DEPLOYMENT, scope: tuple[Principal, str] = Depends(project_of)
) -> dict[str, Any]:
    """Stop it (its warm workers let it go within a beat) and remove it; its LoRA version can
    be deleted again."""
    principal, project = scope
    return await gw(request).backends.delete_deployment(principal.tenant, project, name)


@router.post(
    BASE + "/{name}/calls",
    status_code=202,
    response_model=Job,
    tags=["deployments"],
    operation_id="call_deployment",
)
async def call(
    body: CallBody,
    request: Request,
    name: str = DEPLOYMENT,
    scope: tuple[Principal, str] = Depends(project_of),
) -> Job:
    """Generate with a deployment: text only, a first frame, or a first and a last frame (as
    its mode says), nothing else required. A render job: follow it at
    `/v1/projects/{project}/renders/{job_id}` (SSE at `.../events`, links at `.../results`)."""
    principal, project = scope
    g = gw(request)
    ref = ProjectRef(principal.tenant, project)
    return await g.backends.call_deployment(
        principal.tenant,
        project,
        name,
        image=await input_image(g, ref, body.image, "image"),
        last_image=await input_image(g, ref, body.last_image, "last_image"),
        prompt=body.prompt,
        seed=body.seed,
        request_id=body.request_id,
    )


# ------------------------------------------------------------------ seed 004's shapes


class AigcConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    use_input_prompt: bool = False
    prompt: str = Field(
        default="",
        max_length=20_000,
        description=(
            "the template: {description}, {trigger}, {lora_prompt} slots; seed 004's instruction "
            "text (no slot) gives `<description> <lora_prompt_default>`"
        ),
    )
    lora_prompt_default: str = Field(default="", max_length=4000)
    caption_source: Literal["attributes", "vlm", "openai"] = "attributes"


class CompatDeploymentCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "model_name": "money-rain:1",
                    "capacity": 1,
                    "plan": "lora",
                    "aigc_config": {
                        "use_input_prompt": False,
                        "prompt": "The video opens on {description}. {lora_prompt}",
                        "lora_prompt_default": "Then s86b5p money rain pours down around her.",
                    },
                }
            ]
        },
    )
    model_name: str = Field(
        min_length=1,
        max_length=300,
        description=(
            "the fine-tune's finetuned_output (a library version), or run:<run_id>[@step-N]"
        ),
    )
    aigc_config: AigcConfig = AigcConfig()
    capacity: int = Field(default=1, ge=1, le=16)
    plan: Literal["lora"] = "lora"
    preset: str = Field(
        default="", max_length=100, description="loraforge extension: the base preset"
    )
    parameters: GenerationDefaults = GenerationDefaults()


def _compat_view(d: dict[str, Any]) -> dict[str, Any]:
    return {
        "deployed_model": d["name"],
        "status": d["status"],
        "model_name": d["lora"],
        "base_model": d["preset"],
        "capacity": d["capacity"],
        "ready_capacity": d["warm_workers"],
        "plan": "lora",
        "message": d.get("message", ""),
        "gmt_create": d["created_at"],
        "aigc_config": {
            "use_input_prompt": d["prompt"]["use_input_prompt"],
            "prompt": d["prompt"]["template"],
            "lora_prompt_default": d["prompt"]["lora_prompt_default"],
        },
    }


def _envelope(output: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"request_id": str(uuid.uuid4()), "output": output, **extra}


@router.post("/api/v1/deployments", tags=["compat"], operation_id="compat_create_deployment")
async def compat_create(
    body: CompatDeploymentCreate,
    request: Request,
    scope: tuple[Principal, str] = Depends(compat_project),
) -> dict[str, Any]:
    """Seed 004's deploy call: `output.deployed_model`, `output.status` (PENDING)."""
    principal, project = scope
    a = body.aigc_config
    spec = {
        "lora": body.model_name,
        "preset": body.preset,
        "capacity": body.capacity,
        "defaults": body.parameters.model_dump(mode="json"),
        "prompt": {
            "template": a.prompt or PromptSettings().template,
            "lora_prompt_default": a.lora_prompt_default,
            "use_input_prompt": a.use_input_prompt,
            "caption_source": a.caption_source,
        },
    }
    d = await gw(request).backends.create_deployment(principal.tenant, project, spec)
    return _envelope(_compat_view(d))


@router.get("/api/v1/deployments", tags=["compat"], operation_id="compat_list_deployments")
async def compat_list(
    request: Request, scope: tuple[Principal, str] = Depends(compat_project)
) -> dict[str, Any]:
    principal, project = scope
    items = await gw(request).backends.list_deployments(principal.tenant, project)
    return _envelope({"deployments": [_compat_view(d) for d in items], "total": len(items)})


@router.get(
    "/api/v1/deployments/{deployed_model}", tags=["compat"], operation_id="compat_get_deployment"
)
async def compat_get(
    request: Request,
    deployed_model: str = DEPLOYED_MODEL,
    scope: tuple[Principal, str] = Depends(compat_project),
) -> dict[str, Any]:
    principal, project = scope
    return _envelope(
        _compat_view(
            await gw(request).backends.get_deployment(principal.tenant, project, deployed_model)
        )
    )


@router.delete(
    "/api/v1/deployments/{deployed_model}", tags=["compat"], operation_id="compat_delete_deployment"
)
async def compat_delete(
    request: Request,
    deployed_model: str = DEPLOYED_MODEL,
    scope: tuple[Principal, str] = Depends(compat_project),
) -> dict[str, Any]:
    principal, project = scope
    return _envelope(
        _compat_view(
            await gw(request).backends.delete_deployment(principal.tenant, project, deployed_model)
        )
    )


class SynthesisInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    prompt: str = Field(default="", max_length=4000)
    img_url: str = Field(default="", max_length=30_000_000, description="first frame (i2v)")
    first_frame_url: str = Field(
        default="", max_length=30_000_000, description="first frame (kf2v)"
    )
    last_frame_url: str = Field(default="", max_length=30_000_000, description="last frame (kf2v)")


class SynthesisParameters(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seed: int | None = Field(default=None, ge=0, le=2**31 - 1)


class Synthesis(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "model": "money-rain-ft-202511111122-1a2b",
                    "input": {
                        "first_frame_url": "data:image/png;base64,iVBOR...",
                        "last_frame_url": "data:image/png;base64,iVBOR...",
                    },
                }
            ]
        },
    )
    model: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$", description="the deployed_model")
    input: SynthesisInput = SynthesisInput()
    parameters: SynthesisParameters = SynthesisParameters()


TASK_STATUS = {"CANCELLED": "CANCELED"}  # the hosted API's spelling; the others are the same


@router.post(
    "/api/v1/services/aigc/video-generation/video-synthesis",
    tags=["compat"],
    operation_id="compat_video_synthesis",
)
async def compat_synthesis(
    body: Synthesis, request: Request, scope: tuple[Principal, str] = Depends(compat_project)
) -> dict[str, Any]:
    """Call a deployment (always asynchronous, as with `X-DashScope-Async: enable`):
    `output.task_id`, `output.task_status`; poll `/api/v1/tasks/{task_id}`."""
    principal, project = scope
    g = gw(request)
    ref = ProjectRef(principal.tenant, project)
    inp = body.input
    if inp.img_url and inp.first_frame_url:
        raise InvalidInput("input: give img_url (first frame) or first_frame_url, not both")
    job = await g.backends.call_deployment(
        principal.tenant,
        project,
        body.model,
        image=await input_image(
            g, ref, inp.img_url or inp.first_frame_url, "input.first_frame_url"
        ),
        last_image=await input_image(g, ref, inp.last_frame_url, "input.last_frame_url"),
        prompt=inp.prompt,
        seed=body.parameters.seed,
    )
    return _envelope({"task_id": job.id, "task_status": TASK_STATUS.get(job.state, job.state)})


@router.get("/api/v1/tasks/{task_id}", tags=["compat"], operation_id="compat_task")
async def compat_task(
    request: Request,
    task_id: str = Path(pattern=r"^[A-Za-z0-9_-]{1,64}$"),
    scope: tuple[Principal, str] = Depends(compat_project),
) -> dict[str, Any]:
    """A call's state; when SUCCEEDED, `video_url` (or `image_url`) is an expiring link and
    `actual_prompt` the prompt it rendered with."""
    principal, project = scope
    g = gw(request)
    job = await g.backends.get_job("render", principal.tenant, project, task_id)
    if "deployment" not in job.params:
        raise NotFound(f"task {task_id} is not a deployment call")
    out: dict[str, Any] = {
        "task_id": job.id,
        "task_status": TASK_STATUS.get(job.state, job.state),
        "submit_time": job.created_at,
        "end_time": job.finished_at,
    }
    usage: dict[str, Any] = {}
    if job.state == "SUCCEEDED":
        r = job.result
        key = r.get("output", "")
        if isinstance(key, str) and key.startswith(ProjectRef(principal.tenant, project).prefix):
            link = await g.link(Bucket.RENDERS, key, kind=r.get("kind", ""))
            out["video_url" if r.get("kind") == "video" else "image_url"] = link.url
        out["orig_prompt"] = job.params.get("prompt", "")
        out["actual_prompt"] = r.get("prompt", "")
        usage = {"video_count": 1} if r.get("kind") == "video" else {"image_count": 1}
    elif job.state == "FAILED":
        out["message"] = job.message
    return _envelope(out, usage=usage)
