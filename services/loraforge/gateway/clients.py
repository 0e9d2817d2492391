"""gRPC clients of the backends: the only gateway module that imports generated protobuf code.

Pydantic API models in, pydantic `Job` out; every call carries a deadline, and a non-OK status
becomes `problems.RpcFailure` (mapped to HTTP in `problems`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from typing import Any, TypeVar

import grpc
from google.protobuf import json_format, struct_pb2

from loraforge.gateway.models import (
    JOB_KINDS,
    Artifact,
    Caption,
    CaptioningStart,
    CurationStart,
    IngestStart,
    Job,
    JobStateName,
    RenderSubmit,
    TrainingStart,
)
from loraforge.gateway.problems import RpcFailure
from loraforge.runtime.grpc_client import DEFAULT_TIMEOUT_S, aio_channel
from loraforge.runtime.settings import EndpointSettings
from loraforge.v1 import (
    captioning_pb2,
    captioning_pb2_grpc,
    common_pb2,
    curation_pb2,
    curation_pb2_grpc,
    ingest_pb2,
    ingest_pb2_grpc,
    render_pb2,
    render_pb2_grpc,
    trainer_pb2,
    trainer_pb2_grpc,
)

T = TypeVar("T")

_STUBS: dict[str, Callable[[grpc.aio.Channel], Any]] = {
    "ingest": ingest_pb2_grpc.IngestServiceStub,
    "curation": curation_pb2_grpc.CurationServiceStub,
    "captioning": captioning_pb2_grpc.CaptioningServiceStub,
    "trainer": trainer_pb2_grpc.TrainerServiceStub,
    "render": render_pb2_grpc.RenderServiceStub,
}
_STATE_NAMES: dict[common_pb2.JobState, JobStateName] = {
    common_pb2.JOB_STATE_PENDING: "PENDING",
    common_pb2.JOB_STATE_RUNNING: "RUNNING",
    common_pb2.JOB_STATE_SUCCEEDED: "SUCCEEDED",
    common_pb2.JOB_STATE_FAILED: "FAILED",
    common_pb2.JOB_STATE_CANCELLED: "CANCELLED",
}
_STATE_VALUES = {v: k for k, v in _STATE_NAMES.items()}


def _struct(value: dict[str, Any]) -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    out.update(value)
    return out


def _time(msg: Any, name: str) -> datetime | None:
    if not msg.HasField(name):
        return None
    when: datetime = getattr(msg, name).ToDatetime(tzinfo=UTC)
    return when


def _deployment(text: str) -> dict[str, Any]:
    """The render service's deployment record (a JSON object, library/deployments.py)."""
    record: dict[str, Any] = json.loads(text)
    return record


def job_from_wire(msg: common_pb2.Job) -> Job:
    return Job(
        id=msg.id,
        kind=msg.kind,
        project=msg.project,
        state=_STATE_NAMES.get(msg.state, "PENDING"),
        progress=msg.progress,
        message=msg.message,
        created_at=_time(msg, "created_at"),
        updated_at=_time(msg, "updated_at"),
        started_at=_time(msg, "started_at"),
        finished_at=_time(msg, "finished_at"),
        artifacts=[
            Artifact(bucket=a.bucket, key=a.key, kind=a.kind, size=a.size, sha256=a.sha256)
            for a in msg.artifacts
        ],
        params=json_format.MessageToDict(msg.params),
        result=json_format.MessageToDict(msg.result),
        cancel_requested=msg.cancel_requested,
    )


def caption_from_wire(msg: captioning_pb2.CaptionRecord, trigger: str = "") -> Caption | None:
    """A captioning record as the API shows it; None for a clip with no caption yet.

    The wire record has no per-version warnings, so `warnings` is always empty here."""
    if not msg.versions:
        return None
    cur = msg.versions[-1]
    return Caption(
        clip_id=msg.clip_id,
        text=msg.text or cur.text,
        trigger=trigger,
        approved=msg.approved,
        approved_by=msg.approved_by,
        edited=cur.author.startswith("user:"),
        author=cur.author,
        updated_at=_time(cur, "created_at"),
        versions=len(msg.versions),
    )


class BackendClients:
    """One channel per backend; `targets` maps a job kind to its `host:port`."""

    def __init__(self, targets: dict[str, str], *, timeout_s: float = DEFAULT_TIMEOUT_S):
        unknown = set(targets) - set(JOB_KINDS)
        if unknown:
            raise ValueError(f"unknown backends {sorted(unknown)}")
        self.targets = dict(targets)
        self._timeout = timeout_s
        self._channels = {kind: aio_channel(t) for kind, t in targets.items()}
        self._stubs = {kind: _STUBS[kind](ch) for kind, ch in self._channels.items()}

    @classmethod
    def from_settings(cls, endpoints: EndpointSettings, **kwargs: Any) -> BackendClients:
        return cls({k: endpoints.grpc_target(k) for k in JOB_KINDS}, **kwargs)

    async def close(self) -> None:
        for ch in self._channels.values():
            await ch.close()

    @property
    def kinds(self) -> list[str]:
        return list(self._stubs)

    async def _call(self, kind: str, method: str, request: Any) -> Any:
        stub = self._stubs.get(kind)
        if stub is None:
            raise RpcFailure(kind, grpc.StatusCode.UNAVAILABLE, "no endpoint configured")
        try:
            return await getattr(stub, method)(request, timeout=self._timeout)
        except grpc.aio.AioRpcError as exc:
            raise RpcFailure(kind, exc.code(), exc.details() or "") from None

    @staticmethod
    def _scope(tenant: str, project: str | None) -> common_pb2.ProjectScope:
        return common_pb2.ProjectScope(tenant=tenant, project=project or "")

    # -- starts ------------------------------------------------------------------------------

    async def start_ingest(self, tenant: str, project: str, req: IngestStart) -> Job:
        msg = ingest_pb2.StartIngestRequest(
            scope=self._scope(tenant, project),
            request_id=req.request_id or "",
            sources=req.sources,
            min_s=req.min_s,
            max_s=req.max_s,
            fps=req.fps,
            max_long_side=req.max_long_side,  # optional fields: None leaves them unset
            lora_type=req.lora_type or "",
        )
        return job_from_wire(await self._call("ingest", "StartIngest", msg))

    async def start_curation(self, tenant: str, project: str, req: CurationStart) -> Job:
        msg = curation_pb2.StartCurationRequest(
            scope=self._scope(tenant, project),
            request_id=req.request_id or "",
            reference_keys=req.reference_keys,
            target_size=req.target_size,
            lora_type=req.lora_type,
            policy_overrides=_struct(req.policy_overrides),
        )
        return job_from_wire(await self._call("curation", "StartCuration", msg))

    async def start_captioning(self, tenant: str, project: str, req: CaptioningStart) -> Job:
        msg = captioning_pb2.StartCaptioningRequest(
            scope=self._scope(tenant, project),
            request_id=req.request_id or "",
            dataset_id=req.dataset_id,
            trigger=req.trigger,
            lora_type=req.lora_type,
            source=req.source,
            class_noun=req.class_noun,
            base_preset=req.base_preset,
            motion=req.motion,
        )
        return job_from_wire(await self._call("captioning", "StartCaptioning", msg))

    async def start_training(self, tenant: str, project: str, req: TrainingStart) -> Job:
        # The numbers are proto3 `optional`: None leaves a field unset (the service's default),
        # any value, 0 included, is sent as is.
        run = common_pb2.TrainingRun(
            dataset_id=req.dataset_id,
            base_preset=req.preset,
            rank=req.rank,
            alpha=req.alpha,
            learning_rate=req.learning_rate,
            steps=req.steps,
            resolution=req.resolution,
            frames=req.frames,
            seed=req.seed,
            extra=_struct(req.extra),
        )
        msg = trainer_pb2.StartTrainingRequest(
            scope=self._scope(tenant, project),
            request_id=req.request_id or "",
            run=run,
            on_kubernetes=req.on_kubernetes,
        )
        return job_from_wire(await self._call("trainer", "StartTraining", msg))

    async def submit_render(self, tenant: str, project: str, req: RenderSubmit) -> Job:
        render = common_pb2.RenderRequest(
            scenario_yaml=req.scenario_yaml,
            image_preset=req.image_preset,
            video_preset=req.video_preset,
            loras=[
                common_pb2.LoraWeight(
                    lora_key=w.lora_key, adapter_name=w.adapter_name, weight=w.weight
                )
                for w in req.loras
            ],
        )
        msg = render_pb2.SubmitRenderRequest(
            scope=self._scope(tenant, project), request_id=req.request_id or "", render=render
        )
        return job_from_wire(await self._call("render", "SubmitRender", msg))

    # -- deployments (render) ------------------------------------------------------------------
    # The records travel as JSON (DeploymentSpec in, DeploymentView out): the render servicer
    # validates them into typed values; the gateway's routers shape them for their surface.

    async def create_deployment(
        self, tenant: str, project: str, spec: dict[str, Any]
    ) -> dict[str, Any]:
        msg = render_pb2.DeploymentRequest(
            scope=self._scope(tenant, project), spec_json=json.dumps(spec)
        )
        reply = await self._call("render", "CreateDeployment", msg)
        return _deployment(reply.deployment_json)

    async def get_deployment(self, tenant: str, project: str, name: str) -> dict[str, Any]:
        msg = render_pb2.DeploymentRequest(scope=self._scope(tenant, project), name=name)
        return _deployment((await self._call("render", "GetDeployment", msg)).deployment_json)

    async def list_deployments(self, tenant: str, project: str) -> list[dict[str, Any]]:
        msg = render_pb2.DeploymentRequest(scope=self._scope(tenant, project))
        reply = await self._call("render", "ListDeployments", msg)
        return [_deployment(d) for d in reply.deployment_json]

    async def delete_deployment(self, tenant: str, project: str, name: str) -> dict[str, Any]:
        msg = render_pb2.DeploymentRequest(scope=self._scope(tenant, project), name=name)
        return _deployment((await self._call("render", "DeleteDeployment", msg)).deployment_json)

    async def call_deployment(
        self,
        tenant: str,
        project: str,
        name: str,
        *,
        image: str = "",
        last_image: str = "",
        prompt: str = "",
        seed: int | None = None,
        request_id: str | None = None,
    ) -> Job:
        msg = render_pb2.CallDeploymentRequest(
            scope=self._scope(tenant, project),
            request_id=request_id or "",
            deployment=name,
            image=image,
            last_image=last_image,
            prompt=prompt,
            seed=seed,
        )
        return job_from_wire(await self._call("render", "CallDeployment", msg))

    # -- caption review (captioning) ----------------------------------------------------------

    async def list_captions(
        self, tenant: str, project: str, dataset_id: str, trigger: str = ""
    ) -> list[Caption]:
        msg = captioning_pb2.ListCaptionsRequest(
            scope=self._scope(tenant, project), dataset_id=dataset_id
        )
        resp = await self._call("captioning", "ListCaptions", msg)
        caps = (caption_from_wire(r, trigger) for r in resp.captions)
        return sorted((c for c in caps if c is not None), key=lambda c: c.clip_id)

    async def edit_caption(
        self,
        tenant: str,
        project: str,
        dataset_id: str,
        clip_id: str,
        text: str,
        user: str,
        trigger: str = "",
    ) -> Caption:
        msg = captioning_pb2.EditCaptionRequest(
            scope=self._scope(tenant, project),
            dataset_id=dataset_id,
            clip_id=clip_id,
            text=text,
            user=user,
        )
        return self._one_caption(await self._call("captioning", "EditCaption", msg), trigger)

    async def approve_caption(
        self, tenant: str, project: str, dataset_id: str, clip_id: str, user: str, trigger: str = ""
    ) -> Caption:
        msg = captioning_pb2.ApproveCaptionRequest(
            scope=self._scope(tenant, project), dataset_id=dataset_id, clip_id=clip_id, user=user
        )
        return self._one_caption(await self._call("captioning", "ApproveCaption", msg), trigger)

    @staticmethod
    def _one_caption(msg: captioning_pb2.CaptionRecord, trigger: str) -> Caption:
        cap = caption_from_wire(msg, trigger)
        if cap is None:  # the service answered a record without any version: a backend bug
            raise RpcFailure(
                "captioning",
                grpc.StatusCode.INTERNAL,
                f"caption record of {msg.clip_id!r} has no versions",
            )
        return cap

    # -- the job calls every backend has -----------------------------------------------------

    async def get_job(self, kind: str, tenant: str, project: str, job_id: str) -> Job:
        msg = common_pb2.GetJobRequest(scope=self._scope(tenant, project), job_id=job_id)
        return job_from_wire(await self._call(kind, "GetJob", msg))

    async def list_jobs(
        self,
        kind: str,
        tenant: str,
        project: str | None,
        states: Iterable[JobStateName] = (),
        page_size: int = 0,
    ) -> list[Job]:
        msg = common_pb2.ListJobsRequest(
            scope=self._scope(tenant, project),
            states=[_STATE_VALUES[s] for s in states],
            page_size=page_size,
        )
        resp = await self._call(kind, "ListJobs", msg)
        return [job_from_wire(j) for j in resp.jobs]

    async def cancel_job(self, kind: str, tenant: str, project: str, job_id: str) -> Job:
        msg = common_pb2.CancelJobRequest(scope=self._scope(tenant, project), job_id=job_id)
        return job_from_wire(await self._call(kind, "CancelJob", msg))


async def gather_lists(calls: Iterable[Awaitable[list[T]]]) -> list[T]:
    out: list[T] = []
    for part in await asyncio.gather(*calls):
        out.extend(part)
    return out
