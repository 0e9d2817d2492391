"""Seed 004's hosted fine-tuning API as a compatibility surface: its curl examples run against
loraforge with only the host, the key (`Authorization: Bearer lf_...`) and `model` (a
loraforge preset name) changed.

    POST /api/v1/files                             upload dataset zips (purpose fine-tune)
    GET  /api/v1/files[/{file_id}]                 the tenant's uploaded zips
    POST /api/v1/fine-tunes                        create a fine-tune job
    GET  /api/v1/fine-tunes                        list them
    GET  /api/v1/fine-tunes/{job_id}               status, usage, finetuned_output
    GET  /api/v1/fine-tunes/{job_id}/checkpoints   each checkpoint with its scores and previews
    GET|POST /api/v1/fine-tunes/{job_id}/export/{checkpoint}?model_name=   a checkpoint into
                                                   the library (a new version of model_name)

The hosted API has no projects: these calls work in the project named by the `X-Project`
header, by default `fine-tunes` (created on first use). A fine-tune is a training run of the
trainer service on the dataset an upload became (library/finetunes.py); its
`finetuned_output` is a library name (`ft-<job id>`) whose version 1, the run's automatic
pick, is registered once the run has succeeded. Errors stay problem+json with `detail`.
"""

from __future__ import annotations

import contextlib
import tempfile
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import (
    APIRouter,
    Depends,
    File,
    Form,
    Header,
    Query,
    Request,
    UploadFile,
)
from fastapi import (
    Path as PathParam,
)
from pydantic import BaseModel, Field

from loraforge.gateway.auth import Principal, require_key
from loraforge.gateway.deps import Gateway, gw
from loraforge.gateway.models import SLUG_PATTERN, TrainingStart
from loraforge.gateway.problems import PROBLEM_RESPONSES, PayloadTooLarge
from loraforge.library import Library, finetunes
from loraforge.library.records import parse_checkpoint
from loraforge.runtime.errors import AlreadyExists, InvalidInput, NotFound
from loraforge.runtime.keys import ProjectRef
from loraforge.runtime.storage import Bucket

router = APIRouter(prefix="/api/v1", responses=PROBLEM_RESPONSES, tags=["hosted-api"])
#: the project the hosted-API calls work in when no X-Project header names one
COMPAT_PROJECT = "fine-tunes"
JOB_ID = PathParam(pattern=r"^[A-Za-z0-9_-]{1,64}$", description="fine-tune job id")


async def compat_project(
    request: Request,
    principal: Principal = Depends(require_key),
    x_project: str | None = Header(
        default=None, pattern=SLUG_PATTERN, description="project (default fine-tunes)"
    ),
) -> tuple[Principal, str]:
    """(principal, project) of a hosted-API call: `X-Project`, which must exist, or the
    default project, created on first use."""
    g = gw(request)
    if x_project:
        await g.state.project(principal.tenant, x_project)
        return principal, x_project
    try:
        await g.state.project(principal.tenant, COMPAT_PROJECT)
    except NotFound:
        with contextlib.suppress(AlreadyExists):
            await g.state.create_project(
                principal.tenant, COMPAT_PROJECT, "hosted fine-tuning API (/api/v1)"
            )
    return principal, COMPAT_PROJECT


def _rid() -> str:
    return str(uuid.uuid4())


class UploadedFile(BaseModel):
    name: str
    file_id: str


class FailedUpload(BaseModel):
    name: str
    reason: str


class FilesData(BaseModel):
    uploaded_files: list[UploadedFile]
    failed_uploads: list[FailedUpload]


class FilesResponse(BaseModel):
    data: FilesData
    request_id: str


class Envelope(BaseModel):
    """Seed 004's response shape: the answer under `output`."""

    request_id: str
    output: Any = Field(description="the job (or list, or checkpoint) as the hosted API names it")


def _time(t: datetime) -> str:
    """The hosted API's time format: `2024-10-29 16:53:53` (UTC here)."""
    return t.strftime("%Y-%m-%d %H:%M:%S")


def _spool(upload: UploadFile, dest: Path, limit: int) -> int:
    size = 0
    with dest.open("wb") as out:
        for chunk in iter(lambda: upload.file.read(1 << 20), b""):
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(
                    f"{upload.filename}: over the {limit}-byte limit; nothing was stored"
                )
            out.write(chunk)
    return size


@router.post("/files", response_model=FilesResponse, operation_id="hosted_upload_files")
async def upload_files(
    request: Request,
    files: list[UploadFile] = File(description="dataset zip(s) in seed 004's format"),
    purpose: str = Form(description="fine-tune"),
    descriptions: str = Form(default=""),
    scope: tuple[Principal, str] = Depends(compat_project),
) -> FilesResponse:
    """Upload dataset zips (i2v: data.jsonl + image_N + video_N; kf2v: data.jsonl + image/
    + video/). Each zip is checked whole (>= 10 samples, videos <= 5 s, the fields of
    data.jsonl) before anything is stored; a refused zip is in `failed_uploads` with the
    reason, and when every zip is refused the answer is 400 with the reasons."""
    principal, project = scope
    g = gw(request)
    if purpose != "fine-tune":
        raise InvalidInput(
            f"purpose {purpose!r}: loraforge takes dataset zips for purpose 'fine-tune' only"
        )
    ref = ProjectRef(principal.tenant, project)
    limit = min(g.config.max_upload_bytes, finetunes.LIMITS.max_zip_bytes)
    ok, failed = [], []
    with tempfile.TemporaryDirectory(prefix="lf-gw-ft-") as tmp:
        for i, f in enumerate(files):
            name = Path(f.filename or f"file-{i}.zip").name
            path = Path(tmp) / f"{i}.zip"
            try:
                await g.blocking(_spool, f, path, limit)
                rec = await g.blocking(
                    finetunes.import_zip,
                    g.store,
                    ref,
                    path,
                    name=name,
                    purpose=purpose,
                    description=descriptions,
                    by=f"key:{principal.key_id}",
                )
                ok.append(UploadedFile(name=name, file_id=rec.file_id))
            except InvalidInput as e:
                failed.append(FailedUpload(name=name, reason=str(e)))
            finally:
                path.unlink(missing_ok=True)
    if failed and not ok:
        raise InvalidInput("; ".join(f.reason for f in failed))
    return FilesResponse(
        data=FilesData(uploaded_files=ok, failed_uploads=failed), request_id=_rid()
    )


@router.get("/files", response_model=Envelope, operation_id="hosted_list_files")
async def list_files(
    request: Request, scope: tuple[Principal, str] = Depends(compat_project)
) -> Envelope:
    principal, project = scope
    g = gw(request)
    records = await g.blocking(finetunes.list_files, g.store, ProjectRef(principal.tenant, project))
    return Envelope(
        request_id=_rid(),
        output={"files": [r.model_dump(mode="json") for r in records], "total": len(records)},
    )


@router.get("/files/{file_id}", response_model=Envelope, operation_id="hosted_get_file")
async def get_file(
    request: Request,
    file_id: str = PathParam(pattern=r"^[A-Za-z0-9_-]{1,64}$"),
    scope: tuple[Principal, str] = Depends(compat_project),
) -> Envelope:
    """One uploaded zip: its kind (i2v / kf2v), samples, the trigger found in its prompts and
    the dataset it became."""
    principal, project = scope
    g = gw(request)
    rec = await g.blocking(
        finetunes.get_file, g.store, ProjectRef(principal.tenant, project), file_id
    )
    return Envelope(request_id=_rid(), output=rec.model_dump(mode="json"))


async def _output(
    g: Gateway, ref: ProjectRef, job: finetunes.FinetuneJob, run: Any = None
) -> dict[str, Any]:
    """The job in seed 004's words; `run`: the trainer job when the caller has it already."""
    run = run or await g.backends.get_job("trainer", ref.tenant, ref.project, job.job_id)
    record = None
    lora = None
    if run.state == "SUCCEEDED":
        lora = await g.blocking(finetunes.ensure_output, g.store, ref, job)
        record = await g.blocking(Library(g.store, ref).run_record, job.job_id)
    return {
        "job_id": job.job_id,
        "job_name": job.job_id,
        "status": finetunes.STATUS[run.state],
        "finetuned_output": job.finetuned_output,
        "model": job.model,
        "base_model": job.model,
        "training_file_ids": job.training_file_ids,
        "validation_file_ids": job.validation_file_ids,
        "training_type": job.training_type,
        "hyper_parameters": job.hyper_parameters,
        "create_time": _time(job.created_at),
        "end_time": _time(run.finished_at) if run.finished_at else None,
        "usage": finetunes.usage_tokens(record),
        "message": run.message,
        "progress": run.progress,
        "loraforge": {
            "project": ref.project,
            "dataset_id": job.dataset_id,
            "steps": job.steps,
            "steps_done": (record or {}).get("steps", run.result.get("step", 0)),
            "train_samples": job.train_samples,
            "validation_samples": job.validation_samples,
            "lora": lora.ref if lora is not None else None,
            "usage_unit": "latent tokens trained on (steps x batch x tokens/sample)",
        },
    }


@router.post("/fine-tunes", response_model=Envelope, operation_id="hosted_create_fine_tune")
async def create_fine_tune(
    body: finetunes.FinetuneCreate,
    request: Request,
    scope: tuple[Principal, str] = Depends(compat_project),
) -> Envelope:
    """Create a fine-tune job: n_epochs becomes steps by seed 004's formula (steps = n_epochs
    x ceil(train samples / batch_size), at least 800), the validation split is made by file,
    a checkpoint is saved and evaluated every eval_epochs. Answers PENDING."""
    principal, project = scope
    g = gw(request)
    ref = ProjectRef(principal.tenant, project)
    plan = await g.blocking(finetunes.plan_finetune, g.store, ref, body)
    hp = body.hyper_parameters
    run = await g.backends.start_training(
        principal.tenant,
        project,
        TrainingStart(
            dataset_id=plan.dataset_id,
            preset=plan.preset,
            learning_rate=hp.learning_rate,
            steps=plan.steps,
            extra=plan.training_extra(hp),
        ),
    )
    job = finetunes.FinetuneJob(
        job_id=run.id,
        model=body.model,
        finetuned_output=finetunes.finetuned_output(run.id),
        training_file_ids=body.training_file_ids,
        validation_file_ids=body.validation_file_ids,
        training_type=body.training_type,
        hyper_parameters=hp.model_dump(mode="json"),
        dataset_id=plan.dataset_id,
        steps=plan.steps,
        train_samples=plan.train_samples,
        validation_samples=len(plan.validation_clips),
    )
    await g.blocking(finetunes.save_job, g.store, ref, job)
    # the job as StartTraining answered it (PENDING), even when a worker took it since
    return Envelope(request_id=_rid(), output=await _output(g, ref, job, run))


@router.get("/fine-tunes", response_model=Envelope, operation_id="hosted_list_fine_tunes")
async def list_fine_tunes(
    request: Request,
    scope: tuple[Principal, str] = Depends(compat_project),
    page_no: int = Query(default=1, ge=1),
    page_size: int = Query(default=10, ge=1, le=100),
    model: str | None = Query(default=None, max_length=100, description="only jobs on this preset"),
) -> Envelope:
    """The project's fine-tunes, newest first (seed 004's list: page_no, page_size, model)."""
    principal, project = scope
    g = gw(request)
    ref = ProjectRef(principal.tenant, project)
    jobs = [
        j
        for j in await g.blocking(finetunes.list_jobs, g.store, ref)
        if model is None or j.model == model
    ]
    page = jobs[(page_no - 1) * page_size : page_no * page_size]
    return Envelope(
        request_id=_rid(),
        output={
            "page_no": page_no,
            "page_size": page_size,
            "total": len(jobs),
            "jobs": [await _output(g, ref, j) for j in page],
        },
    )


async def _job(
    request: Request, scope: tuple[Principal, str], job_id: str
) -> tuple[Gateway, ProjectRef, finetunes.FinetuneJob]:
    principal, project = scope
    g = gw(request)
    ref = ProjectRef(principal.tenant, project)
    return g, ref, await g.blocking(finetunes.get_job, g.store, ref, job_id)


@router.get("/fine-tunes/{job_id}", response_model=Envelope, operation_id="hosted_get_fine_tune")
async def get_fine_tune(
    request: Request, job_id: str = JOB_ID, scope: tuple[Principal, str] = Depends(compat_project)
) -> Envelope:
    """Status in seed 004's words (PENDING, RUNNING, SUCCEEDED, FAILED, CANCELED) and `usage`:
    the latent tokens the denoiser trained on, once the run has finished."""
    g, ref, job = await _job(request, scope, job_id)
    return Envelope(request_id=_rid(), output=await _output(g, ref, job))


@router.get(
    "/fine-tunes/{job_id}/checkpoints",
    response_model=Envelope,
    operation_id="hosted_fine_tune_checkpoints",
)
async def fine_tune_checkpoints(
    request: Request, job_id: str = JOB_ID, scope: tuple[Principal, str] = Depends(compat_project)
) -> Envelope:
    """Every checkpoint of a finished fine-tune: its validation loss, whether it is the
    automatic pick, and expiring links to the previews rendered at it."""
    g, ref, job = await _job(request, scope, job_id)
    cps = await g.blocking(Library(g.store, ref).checkpoints, job.job_id)
    out = []
    for c in cps:
        previews = [(await g.link(Bucket.LORAS, k, kind="preview")).url for k in c.previews]
        name = f"checkpoint-{c.step}"  # the hosted API's spelling; export takes step-N too
        out.append(
            {
                "checkpoint": name,
                "checkpoint_id": f"{job.job_id}:{name}",
                "full_name": f"{job.job_id}:{name}",
                "step": c.step,
                "job_id": job.job_id,
                "model_name": job.finetuned_output,
                "status": "SUCCEEDED" if c.promotable else "UNAVAILABLE",
                "automatic_pick": c.automatic_pick,
                "last": c.last,
                "val_loss": c.val_loss,
                "likeness": c.likeness,
                "previews": previews,
                "exportable": c.promotable,
                **({"why_not": c.why_not} if c.why_not else {}),
            }
        )
    return Envelope(request_id=_rid(), output=out)


async def _export(
    request: Request,
    scope: tuple[Principal, str],
    job_id: str,
    checkpoint: str,
    model_name: str | None,
    reason: str,
) -> Envelope:
    g, ref, job = await _job(request, scope, job_id)
    name = model_name or job.finetuned_output
    step = parse_checkpoint(checkpoint.removeprefix("checkpoint-"))
    lib = Library(g.store, ref)
    await g.blocking(finetunes.ensure_output, g.store, ref, job)  # version 1 = the automatic pick
    v = await g.blocking(
        lib.register,
        job.job_id,
        name,
        checkpoint=step,
        by=f"key:{scope[0].key_id}",
        reason=reason
        or f"exported through /api/v1/fine-tunes/{job_id}/export/{checkpoint} "
        "(seed 004: the checkpoint the user picked from the previews)",
    )
    return Envelope(
        request_id=_rid(),
        output={
            "job_id": job.job_id,
            "checkpoint": v.checkpoint,
            "model_name": v.name,
            "finetuned_output": v.name,
            "version": v.version,
            "lora": v.ref,
            "chosen": v.chosen,
            "reason": v.reason,
        },
    )


EXPORT_DOC = """Export one checkpoint to the library: a new version of `model_name` (default: the
job's finetuned_output, whose `latest` then serves it; deploy that name). A checkpoint that is
not the automatic pick is recorded with `reason` (a default names this export)."""


@router.get(
    "/fine-tunes/{job_id}/export/{checkpoint}",
    response_model=Envelope,
    operation_id="hosted_export_checkpoint",
    description=EXPORT_DOC,
)
async def export_get(
    request: Request,
    job_id: str = JOB_ID,
    checkpoint: str = PathParam(pattern=r"^(checkpoint-|step-)?[0-9]{1,9}$|^best$|^last$"),
    model_name: str | None = Query(default=None, pattern=SLUG_PATTERN),
    reason: str = Query(default="", max_length=2000),
    scope: tuple[Principal, str] = Depends(compat_project),
) -> Envelope:
    return await _export(request, scope, job_id, checkpoint, model_name, reason)


class ExportBody(BaseModel):
    model_config = {"extra": "forbid"}
    model_name: str | None = Field(default=None, pattern=SLUG_PATTERN)
    reason: str = Field(default="", max_length=2000)


@router.post(
    "/fine-tunes/{job_id}/export/{checkpoint}",
    response_model=Envelope,
    operation_id="hosted_export_checkpoint_post",
    description=EXPORT_DOC,
)
async def export_post(
    request: Request,
    body: ExportBody | None = None,
    job_id: str = JOB_ID,
    checkpoint: str = PathParam(pattern=r"^(checkpoint-|step-)?[0-9]{1,9}$|^best$|^last$"),
    scope: tuple[Principal, str] = Depends(compat_project),
) -> Envelope:
    body = body or ExportBody()
    return await _export(request, scope, job_id, checkpoint, body.model_name, body.reason)
