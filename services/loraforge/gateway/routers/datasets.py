"""Datasets (curation's output), review decisions, captions and exports."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, Path, Request

from loraforge.curation.layout import MANIFEST, REPORT
from loraforge.curation.layout import RECORD as DATASET_RECORD
from loraforge.gateway.auth import Principal, dataset_access, sign_page_token
from loraforge.gateway.datasets import (
    REVIEW_METRICS,
    DatasetStore,
    chart_keys,
    clip_rows,
    dataset_prefix,
)
from loraforge.gateway.deps import Gateway, gw, project_of
from loraforge.gateway.models import (
    SLUG_PATTERN,
    Caption,
    CaptionEdit,
    CaptionList,
    DatasetDetail,
    DatasetList,
    DatasetSummary,
    DecisionSet,
    ExportOut,
    ReviewClip,
    ReviewData,
    ReviewLink,
    ReviewLinkCreate,
    RunArtifacts,
)
from loraforge.gateway.problems import PROBLEM_RESPONSES, RpcFailure
from loraforge.gateway.routers.training import run_artifacts
from loraforge.runtime.errors import InvalidInput, NotFound
from loraforge.runtime.storage import Bucket

log = logging.getLogger(__name__)
router = APIRouter(
    prefix="/v1/projects/{project}/datasets", tags=["datasets"], responses=PROBLEM_RESPONSES
)
DATASET_ID = Path(pattern=r"^[A-Za-z0-9._=-]{1,100}$", examples=["ds-0123456789abcdef0123"])
PROJECT = Path(pattern=SLUG_PATTERN, examples=["jane-doe"])
CLIP_ID = Path(pattern=r"^[A-Za-z0-9._=-]{1,200}$")


def _ds(request: Request) -> DatasetStore:
    return DatasetStore(gw(request).store)


def _summary(record: dict[str, Any]) -> DatasetSummary:
    return DatasetSummary(
        id=str(record.get("id", "")),
        lora_type=str(record.get("lora_type", "")),
        policy_hash=str(record.get("policy_hash", "")),
        job_id=str(record.get("job_id", "")),
        counts={k: int(v) for k, v in (record.get("counts") or {}).items() if isinstance(v, int)},
        missing=[str(m) for m in record.get("missing") or []],
        rejection_counts={
            k: int(v)
            for k, v in (record.get("rejection_counts") or {}).items()
            if isinstance(v, int)
        },
    )


async def _detail(g: Gateway, tenant: str, project: str, dataset_id: str) -> DatasetDetail:
    ds = DatasetStore(g.store)
    record = await ds.record(tenant, project, dataset_id)
    prefix = dataset_prefix(tenant, project, dataset_id)
    files = dict(await ds.files(tenant, project, dataset_id))
    detail = DatasetDetail(**_summary(record).model_dump())
    if f"{prefix}/{REPORT}" in files:
        detail.report = await g.link(
            Bucket.DATASETS, f"{prefix}/{REPORT}", kind="report", size=files[f"{prefix}/{REPORT}"]
        )
    if f"{prefix}/{MANIFEST}" in files:
        detail.manifest = await g.link(
            Bucket.DATASETS,
            f"{prefix}/{MANIFEST}",
            kind="manifest",
            size=files[f"{prefix}/{MANIFEST}"],
        )
    detail.charts = [
        await g.link(Bucket.DATASETS, k, size=s, kind="chart")
        for k, s in chart_keys(list(files.items()), prefix)
    ]
    return detail


@router.get("", response_model=DatasetList, operation_id="list_datasets")
async def list_datasets(
    request: Request, scope: tuple[Principal, str] = Depends(project_of)
) -> DatasetList:
    """Committed datasets of the project (curation results)."""
    principal, project = scope
    records = await _ds(request).list(principal.tenant, project)
    return DatasetList(datasets=[_summary(r) for r in records])


@router.get("/{dataset_id}", response_model=DatasetDetail, operation_id="get_dataset")
async def get_dataset(
    request: Request,
    project: str = PROJECT,
    dataset_id: str = DATASET_ID,
    principal: Principal = Depends(dataset_access),
) -> DatasetDetail:
    """Summary plus expiring links to the report, the manifest and the diversity charts."""
    await gw(request).state.project(principal.tenant, project)
    return await _detail(gw(request), principal.tenant, project, dataset_id)


async def _captions(
    g: Gateway, tenant: str, project: str, dataset_id: str, trigger: str
) -> dict[str, Caption]:
    caps = await g.backends.list_captions(tenant, project, dataset_id, trigger)
    return {c.clip_id: c for c in caps}


async def _review(
    g: Gateway, tenant: str, project: str, dataset_id: str, *, need_captions: bool = False
) -> ReviewData:
    """`need_captions`: fail when captioning cannot be asked (an export must not silently
    lose its captions); the review page itself shows the clips without them."""
    ds = DatasetStore(g.store)
    detail = await _detail(g, tenant, project, dataset_id)
    manifest = await ds.manifest(tenant, project, dataset_id)
    overrides = await ds.overrides(tenant, project, dataset_id)
    trigger = await ds.trigger(tenant, project, dataset_id)
    try:
        captions = await _captions(g, tenant, project, dataset_id, trigger)
    except RpcFailure as exc:
        if need_captions:
            raise
        log.warning("review of %s without captions: %s", dataset_id, exc)
        captions = {}
    prefix = dataset_prefix(tenant, project, dataset_id)
    thumbs = {k for k, _ in await ds.files(tenant, project, dataset_id) if "/thumbs/" in k}
    clips = []
    for row in clip_rows(manifest):
        cid = str(row["clip_id"])
        cur = "keep" if row.get("decision") == "keep" else "reject"
        ov = overrides.get(cid, {})
        thumb = f"{prefix}/thumbs/{cid}.jpg"
        clips.append(
            ReviewClip(
                clip_id=cid,
                curation_decision=cur,
                decision=ov.get("decision") or cur,
                override=ov.get("decision"),
                override_note=str(ov.get("note") or ""),
                selected=bool(row.get("selected")),
                reasons=[str(r) for r in row.get("reasons") or []],
                flags=[str(r) for r in row.get("flags") or []],
                metrics={k: row.get(k) for k in REVIEW_METRICS if k in row},
                thumbnail_url=(await g.link(Bucket.DATASETS, thumb)).url
                if thumb in thumbs
                else None,
                caption=captions.get(cid),
            )
        )
    runs = []
    try:
        jobs = await g.backends.list_jobs("trainer", tenant, project, (), 20)
        for job in jobs:
            if job.params.get("dataset_id") == dataset_id:
                runs.append(await run_artifacts(g, tenant, project, job.id))
    except RpcFailure:
        pass  # the trainer being down must not take the review page with it
    return ReviewData(dataset=detail, clips=clips, trigger=trigger, training_runs=runs)


@router.get("/{dataset_id}/review", response_model=ReviewData, operation_id="get_review")
async def review_data(
    request: Request,
    project: str = PROJECT,
    dataset_id: str = DATASET_ID,
    principal: Principal = Depends(dataset_access),
) -> ReviewData:
    """Everything the review page shows: clips with metrics, curation decision, override,
    effective decision, thumbnail and caption; charts; training previews and scores (with a
    review token: previews and scores only, no checkpoints or other run files)."""
    await gw(request).state.project(principal.tenant, project)
    data = await _review(gw(request), principal.tenant, project, dataset_id)
    if principal.is_page:
        data.training_runs = [
            RunArtifacts(run_id=r.run_id, previews=r.previews, scores=r.scores)
            for r in data.training_runs
        ]
    return data


@router.get("/{dataset_id}/clips", response_model=list[ReviewClip], operation_id="list_clips")
async def list_clips(
    request: Request,
    project: str = PROJECT,
    dataset_id: str = DATASET_ID,
    principal: Principal = Depends(dataset_access),
) -> list[ReviewClip]:
    await gw(request).state.project(principal.tenant, project)
    return (await _review(gw(request), principal.tenant, project, dataset_id)).clips


async def _known_clip(g: Gateway, tenant: str, project: str, dataset_id: str, clip_id: str) -> None:
    manifest = await DatasetStore(g.store).manifest(tenant, project, dataset_id)
    if clip_id not in {str(r["clip_id"]) for r in clip_rows(manifest)}:
        raise NotFound(f"clip {clip_id!r} is not in dataset {dataset_id!r}")


@router.put(
    "/{dataset_id}/clips/{clip_id}/decision", response_model=ReviewClip, operation_id="set_decision"
)
async def set_decision(
    body: DecisionSet,
    request: Request,
    project: str = PROJECT,
    dataset_id: str = DATASET_ID,
    clip_id: str = CLIP_ID,
    principal: Principal = Depends(dataset_access),
) -> ReviewClip:
    """Override curation's keep/reject for one clip (`null` returns to curation's)."""
    principal.require_write("change decisions")
    g = gw(request)
    await g.state.project(principal.tenant, project)
    await DatasetStore(g.store).record(principal.tenant, project, dataset_id)
    await _known_clip(g, principal.tenant, project, dataset_id, clip_id)
    await DatasetStore(g.store).set_override(
        principal.tenant, project, dataset_id, clip_id, body.decision, body.note, principal.key_id
    )
    clips = (await _review(g, principal.tenant, project, dataset_id)).clips
    return next(c for c in clips if c.clip_id == clip_id)


@router.get("/{dataset_id}/captions", response_model=CaptionList, operation_id="list_captions")
async def list_captions(
    request: Request,
    project: str = PROJECT,
    dataset_id: str = DATASET_ID,
    principal: Principal = Depends(dataset_access),
) -> CaptionList:
    """Every captioned clip of the dataset, as the captioning service has it."""
    g = gw(request)
    await g.state.project(principal.tenant, project)
    ds = DatasetStore(g.store)
    await ds.record(principal.tenant, project, dataset_id)
    trigger = await ds.trigger(principal.tenant, project, dataset_id)
    return CaptionList(
        captions=await g.backends.list_captions(principal.tenant, project, dataset_id, trigger)
    )


@router.put("/{dataset_id}/captions/{clip_id}", response_model=Caption, operation_id="edit_caption")
async def edit_caption(
    body: CaptionEdit,
    request: Request,
    project: str = PROJECT,
    dataset_id: str = DATASET_ID,
    clip_id: str = CLIP_ID,
    principal: Principal = Depends(dataset_access),
) -> Caption:
    """A person's edit: a new version of the caption (the history stays). The clip must have
    been captioned first; captioning refuses text that breaks the dataset's rules (trigger,
    template, token limit)."""
    principal.require_write("edit captions")
    g = gw(request)
    await g.state.project(principal.tenant, project)
    ds = DatasetStore(g.store)
    await ds.record(principal.tenant, project, dataset_id)
    await _known_clip(g, principal.tenant, project, dataset_id, clip_id)
    text = " ".join(body.text.split())
    if not text:
        raise InvalidInput(f"the caption of {clip_id} is empty; write what the clip shows")
    return await g.backends.edit_caption(
        principal.tenant,
        project,
        dataset_id,
        clip_id,
        text,
        user=f"key-{principal.key_id}",
        trigger=await ds.trigger(principal.tenant, project, dataset_id),
    )


@router.post(
    "/{dataset_id}/captions/{clip_id}/approve",
    response_model=Caption,
    operation_id="approve_caption",
)
async def approve_caption(
    request: Request,
    project: str = PROJECT,
    dataset_id: str = DATASET_ID,
    clip_id: str = CLIP_ID,
    principal: Principal = Depends(dataset_access),
) -> Caption:
    """Approve the clip's caption (locks it against automatic re-captioning)."""
    principal.require_write("approve captions")
    g = gw(request)
    await g.state.project(principal.tenant, project)
    ds = DatasetStore(g.store)
    await ds.record(principal.tenant, project, dataset_id)
    await _known_clip(g, principal.tenant, project, dataset_id, clip_id)
    return await g.backends.approve_caption(
        principal.tenant,
        project,
        dataset_id,
        clip_id,
        user=f"key-{principal.key_id}",
        trigger=await ds.trigger(principal.tenant, project, dataset_id),
    )


@router.post(
    "/{dataset_id}/exports", status_code=201, response_model=ExportOut, operation_id="start_export"
)
async def start_export(
    request: Request,
    dataset_id: str = DATASET_ID,
    scope: tuple[Principal, str] = Depends(project_of),
) -> ExportOut:
    """INTERIM export: a JSON manifest of the effective selection (overrides applied) with
    each clip's key and caption, and an expiring download link. The media bundle
    (kohya / diffusion-pipe layout) is captioning's export job once it has the RPC."""
    principal, project = scope
    g = gw(request)
    review = await _review(g, principal.tenant, project, dataset_id, need_captions=True)
    ds = DatasetStore(g.store)
    record = await ds.record(principal.tenant, project, dataset_id)
    keys = {
        str(c.get("clip_id")): c.get("key")
        for c in record.get("inputs") or []
        if isinstance(c, dict)
    }
    clips = [
        {
            "clip_id": c.clip_id,
            "key": keys.get(c.clip_id),
            "bucket": "clips",
            "caption": c.caption.text if c.caption else None,
            "caption_approved": bool(c.caption and c.caption.approved),
        }
        for c in review.clips
        if c.decision == "keep"
    ]
    key = await ds.write_export(
        principal.tenant,
        project,
        dataset_id,
        {
            "dataset_id": dataset_id,
            "created_at": datetime.now(UTC).isoformat(),
            "trigger": review.trigger,
            "clips": clips,
            "dataset": f"{DATASET_RECORD}",
        },
    )
    export_id = key.rsplit("/", 1)[1].removesuffix(".json")
    return ExportOut(
        export_id=export_id,
        dataset_id=dataset_id,
        clips=len(clips),
        download=await g.link(Bucket.DATASETS, key, kind="export"),
    )


@router.post(
    "/{dataset_id}/review-link",
    status_code=201,
    response_model=ReviewLink,
    operation_id="create_review_link",
)
async def review_link(
    request: Request,
    body: ReviewLinkCreate | None = None,
    dataset_id: str = DATASET_ID,
    scope: tuple[Principal, str] = Depends(project_of),
) -> ReviewLink:
    """A short-lived link to the review page of this dataset (the token sits in the URL
    fragment, so it never reaches server logs; it opens this dataset only). `read` (the
    default) shows clips, captions, previews and scores; `write` also sets decisions, edits
    and approves captions. Never checkpoints or other run files. The link dies with the key
    that made it."""
    principal, project = scope
    g = gw(request)
    grant = body.scope if body is not None else "read"
    await DatasetStore(g.store).record(principal.tenant, project, dataset_id)
    token, exp = sign_page_token(
        await g.auth.secret(),
        principal.tenant,
        project,
        dataset_id,
        principal.key_id,
        g.config.page_token_ttl_s,
        grant,
    )
    return ReviewLink(
        url=f"/review/{project}/{dataset_id}#token={token}",
        token=token,
        expires_at=datetime.fromtimestamp(exp, UTC),
        scope=grant,
    )
