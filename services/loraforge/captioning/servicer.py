"""gRPC boundary of the captioning service: wire messages in, typed parameters to the domain."""

from __future__ import annotations

import asyncio

import grpc
from google.protobuf import timestamp_pb2

from loraforge.captioning.review import CaptionRecord, CaptionReviewStore
from loraforge.runtime.job_service import JobService
from loraforge.runtime.keys import ProjectRef
from loraforge.runtime.params import CaptioningParams
from loraforge.runtime.servicers import JobCalls, job_to_wire, scope_from_wire
from loraforge.runtime.storage import ObjectStore
from loraforge.v1 import captioning_pb2, captioning_pb2_grpc, common_pb2


class CaptioningServicer(JobCalls, captioning_pb2_grpc.CaptioningServiceServicer):
    def __init__(self, jobs: JobService, store: ObjectStore):
        self.jobs = jobs
        self._store = store

    def _review(self, scope: common_pb2.ProjectScope, dataset_id: str) -> CaptionReviewStore:
        tenant, project = scope_from_wire(scope)
        return CaptionReviewStore(self._store, ProjectRef(tenant, project), dataset_id)

    async def ListCaptions(
        self,
        request: captioning_pb2.ListCaptionsRequest,
        context: grpc.aio.ServicerContext[
            captioning_pb2.ListCaptionsRequest, captioning_pb2.ListCaptionsResponse
        ],
    ) -> captioning_pb2.ListCaptionsResponse:
        review = self._review(request.scope, request.dataset_id)
        records = await asyncio.to_thread(review.list)
        return captioning_pb2.ListCaptionsResponse(captions=[_record_to_wire(r) for r in records])

    async def EditCaption(
        self,
        request: captioning_pb2.EditCaptionRequest,
        context: grpc.aio.ServicerContext[
            captioning_pb2.EditCaptionRequest, captioning_pb2.CaptionRecord
        ],
    ) -> captioning_pb2.CaptionRecord:
        review = self._review(request.scope, request.dataset_id)
        record = await asyncio.to_thread(
            review.checked_edit,
            request.clip_id,
            request.text,
            user=request.user or "user",
            approve=request.approve,
        )
        return _record_to_wire(record)

    async def ApproveCaption(
        self,
        request: captioning_pb2.ApproveCaptionRequest,
        context: grpc.aio.ServicerContext[
            captioning_pb2.ApproveCaptionRequest, captioning_pb2.CaptionRecord
        ],
    ) -> captioning_pb2.CaptionRecord:
        review = self._review(request.scope, request.dataset_id)
        record = await asyncio.to_thread(
            review.approve,
            request.clip_id,
            user=request.user or "user",
            approved=not request.revoke,
        )
        return _record_to_wire(record)

    def attach(self, server: grpc.aio.Server) -> str:
        captioning_pb2_grpc.add_CaptioningServiceServicer_to_server(self, server)
        return captioning_pb2.DESCRIPTOR.services_by_name["CaptioningService"].full_name

    async def StartCaptioning(
        self,
        request: captioning_pb2.StartCaptioningRequest,
        context: grpc.aio.ServicerContext[captioning_pb2.StartCaptioningRequest, common_pb2.Job],
    ) -> common_pb2.Job:
        tenant, project = scope_from_wire(request.scope)
        params = CaptioningParams.parse(
            dataset_id=request.dataset_id,
            trigger=request.trigger,
            lora_type=request.lora_type,
            source=request.source,
            class_noun=request.class_noun,
            base_preset=request.base_preset,
            motion=request.motion,
        )
        job = await self.jobs.start(
            tenant, project, params.model_dump(mode="json"), request.request_id or None
        )
        return job_to_wire(job)


def _record_to_wire(record: CaptionRecord) -> captioning_pb2.CaptionRecord:
    versions = []
    for v in record.versions:
        ts = timestamp_pb2.Timestamp()
        ts.FromDatetime(v.created_at)
        versions.append(
            captioning_pb2.CaptionVersion(text=v.text, author=v.author, created_at=ts, note=v.note)
        )
    return captioning_pb2.CaptionRecord(
        clip_id=record.clip_id,
        dataset_id=record.dataset_id,
        text=record.text if record.versions else "",
        approved=record.approved,
        approved_by=record.approved_by,
        versions=versions,
    )
