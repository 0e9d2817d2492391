"""gRPC boundary of the captioning service: wire messages in, typed parameters to the domain."""

from __future__ import annotations

import grpc

from loraforge.runtime.job_service import JobService
from loraforge.runtime.params import CaptioningParams
from loraforge.runtime.servicers import JobCalls, job_to_wire, scope_from_wire
from loraforge.v1 import common_pb2, captioning_pb2, captioning_pb2_grpc


class CaptioningServicer(JobCalls, captioning_pb2_grpc.CaptioningServiceServicer):
    def __init__(self, jobs: JobService):
        self.jobs = jobs

    def attach(self, server: grpc.aio.Server) -> str:
        captioning_pb2_grpc.add_CaptioningServiceServicer_to_server(self, server)
        return captioning_pb2.DESCRIPTOR.services_by_name["CaptioningService"].full_name

    async def StartCaptioning(
        self, request: captioning_pb2.StartCaptioningRequest, context: grpc.aio.ServicerContext
    ) -> common_pb2.Job:
        tenant, project = scope_from_wire(request.scope)
        params = CaptioningParams.parse(
            dataset_id=request.dataset_id, trigger=request.trigger, lora_type=request.lora_type,
            source=request.source, class_noun=request.class_noun,
            base_preset=request.base_preset, motion=request.motion,
        )
        job = await self.jobs.start(tenant, project, params.model_dump(mode="json"),
                                    request.request_id or None)
        return job_to_wire(job)
