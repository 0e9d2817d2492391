"""gRPC boundary of the render service: wire messages in, typed parameters to the domain."""

from __future__ import annotations

import grpc

from loraforge.runtime.job_service import JobService
from loraforge.runtime.params import LoraWeightParams, RenderParams
from loraforge.runtime.servicers import JobCalls, job_to_wire, scope_from_wire
from loraforge.v1 import common_pb2, render_pb2, render_pb2_grpc


class RenderServicer(JobCalls, render_pb2_grpc.RenderServiceServicer):
    def __init__(self, jobs: JobService):
        self.jobs = jobs

    def attach(self, server: grpc.aio.Server) -> str:
        render_pb2_grpc.add_RenderServiceServicer_to_server(self, server)
        return render_pb2.DESCRIPTOR.services_by_name["RenderService"].full_name

    async def SubmitRender(
        self, request: render_pb2.SubmitRenderRequest, context: grpc.aio.ServicerContext
    ) -> common_pb2.Job:
        tenant, project = scope_from_wire(request.scope)
        params = RenderParams.parse(
            scenario_yaml=request.render.scenario_yaml, image_preset=request.render.image_preset,
            video_preset=request.render.video_preset,
            loras=[
                LoraWeightParams(
                    lora_key=w.lora_key, adapter_name=w.adapter_name,
                    weight=w.weight if w.HasField("weight") else 1.0,
                )
                for w in request.render.loras
            ],
        )
        job = await self.jobs.start(tenant, project, params.model_dump(mode="json"),
                                    request.request_id or None)
        return job_to_wire(job)
