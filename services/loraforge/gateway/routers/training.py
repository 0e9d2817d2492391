"""Training-run files in the `loras` bucket, and render results, through expiring links.

A run's folder is the trainer's (`trainer/run/layout.py` spells its keys):
`<t>/<p>/runs/<job_id>/` with the LoRA files (best/last), `checkpoints/step-N/` (the
adapters are listed; optimizer and resume state are not), `previews/`, `report/` and
`run.json`.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Literal

from fastapi import APIRouter, Depends, Path, Query, Request

from loraforge.gateway.auth import Principal
from loraforge.gateway.deps import Gateway, gw, project_of
from loraforge.gateway.models import Link, RenderResults, RunArtifacts
from loraforge.gateway.problems import PROBLEM_RESPONSES
from loraforge.runtime.errors import NotFound
from loraforge.runtime.keys import ProjectRef
from loraforge.runtime.storage import Bucket
from loraforge.trainer.run import layout as run_layout

router = APIRouter(prefix="/v1/projects/{project}", responses=PROBLEM_RESPONSES)
JOB_ID = Path(pattern=r"^[A-Za-z0-9_-]{1,64}$")
MEDIA = {".png", ".jpg", ".jpeg", ".webp", ".mp4", ".gif", ".webm"}


def run_prefix(tenant: str, project: str, run_id: str) -> str:
    return run_layout.run_prefix(ProjectRef(tenant, project), run_id) + "/"


async def run_artifacts(g: Gateway, tenant: str, project: str, run_id: str) -> RunArtifacts:
    prefix = run_prefix(tenant, project, run_id)
    objs = await g.blocking(lambda: list(g.store.list(Bucket.LORAS, prefix)))
    out = RunArtifacts(run_id=run_id)
    for o in objs:
        rel = o.key[len(prefix) :]
        suffix = PurePosixPath(rel).suffix.lower()
        if suffix == ".safetensors" and (rel.startswith("checkpoints/") or "/" not in rel):
            out.checkpoints.append(
                await g.link(Bucket.LORAS, o.key, size=o.size, kind="checkpoint")
            )
        elif rel.startswith("checkpoints/"):
            continue  # optimizer / scheduler state: not for download
        elif rel.startswith("previews/") or suffix in MEDIA:
            out.previews.append(await g.link(Bucket.LORAS, o.key, size=o.size, kind="preview"))
        elif rel.startswith("scores") or rel.endswith("scores.json"):
            out.scores.append(await g.link(Bucket.LORAS, o.key, size=o.size, kind="score"))
        else:
            out.other.append(await g.link(Bucket.LORAS, o.key, size=o.size, kind="file"))
    return out


@router.get(
    "/training-runs/{job_id}/artifacts",
    response_model=RunArtifacts,
    tags=["training-runs"],
    operation_id="training_run_artifacts",
)
async def artifacts(
    request: Request, job_id: str = JOB_ID, scope: tuple[Principal, str] = Depends(project_of)
) -> RunArtifacts:
    """Checkpoints, previews and scores of a run, each with an expiring download link."""
    principal, project = scope
    g = gw(request)
    await g.backends.get_job("trainer", principal.tenant, project, job_id)  # 404 if not ours
    return await run_artifacts(g, principal.tenant, project, job_id)


@router.get(
    "/training-runs/{job_id}/lora",
    response_model=Link,
    tags=["training-runs"],
    operation_id="training_run_lora",
)
async def lora(
    request: Request,
    job_id: str = JOB_ID,
    which: Literal["best", "last"] = Query(default="best"),
    scope: tuple[Principal, str] = Depends(project_of),
) -> Link:
    """An expiring link to the run's best (by score) or last LoRA."""
    principal, project = scope
    g = gw(request)
    job = await g.backends.get_job("trainer", principal.tenant, project, job_id)
    named = (
        job.result.get(f"{which}_key") if isinstance(job.result.get(f"{which}_key"), str) else None
    )
    candidates = [named] if named else []
    candidates.append(
        run_layout.lora_key(
            run_layout.run_prefix(ProjectRef(principal.tenant, project), job_id), which
        )
    )
    for key in candidates:
        if not key.startswith(ProjectRef(principal.tenant, project).prefix):
            continue
        st = await g.blocking(g.store.stat, Bucket.LORAS, key)
        if st is not None:
            return await g.link(Bucket.LORAS, key, size=st.size, kind="lora")
    raise NotFound(
        f"run {job_id} has no {which} LoRA yet (state {job.state}); wait for it to "
        "finish, or list checkpoints with .../artifacts"
    )


@router.get(
    "/renders/{job_id}/results",
    response_model=RenderResults,
    tags=["renders"],
    operation_id="render_results",
)
async def render_results(
    request: Request, job_id: str = JOB_ID, scope: tuple[Principal, str] = Depends(project_of)
) -> RenderResults:
    """The render job and expiring links to every image / video it produced."""
    principal, project = scope
    g = gw(request)
    job = await g.backends.get_job("render", principal.tenant, project, job_id)
    links = []
    prefix = ProjectRef(principal.tenant, project).prefix
    renders_bucket = g.store.bucket_name(Bucket.RENDERS)
    for a in job.artifacts:
        if (
            a.key.startswith(prefix)
            and a.bucket in (renders_bucket, Bucket.RENDERS.value)
            and await g.blocking(g.store.stat, Bucket.RENDERS, a.key) is not None
        ):
            links.append(await g.link(Bucket.RENDERS, a.key, size=a.size, kind=a.kind))
    return RenderResults(job=job, results=links)
