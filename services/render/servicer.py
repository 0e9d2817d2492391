"""gRPC boundary of the render service: wire messages in, typed parameters to the domain."""

from __future__ import annotations

import asyncio

import grpc
from loraforge.render.inputs import check_input_images
from loraforge.render.scenario import parse_scenario
from loraforge.runtime.errors import InvalidInput
from loraforge.runtime.job_service import JobService
from loraforge.runtime.keys import ProjectRef
from loraforge.runtime.params import LoraWeightParams, RenderParams
from loraforge.runtime.servicers import JobCalls, job_to_wire, scope_from_wire
from loraforge.runtime.storage import ObjectStore
from loraforge.v1 import common_pb2, render_pb2, render_pb2_grpc


class RenderServicer(JobCalls, render_pb2_grpc.RenderServiceServicer):
    def __init__(self, jobs: JobService, store: ObjectStore | None = None):
        self.jobs = jobs
        self.store = store  # to check the shots' input images at submission

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
        if self.store is not None:  # a bad input image is refused now, not by a GPU job later
            try:
                scenario = parse_scenario(params.scenario_yaml)
            except InvalidInput:
                scenario = None  # the job fails at once, naming the field (as it always did)
            if scenario is not None:
                await asyncio.to_thread(check_input_images, self.store, ProjectRef(tenant, project),
                                        [shot.image for shot in scenario.shots])
        job = await self.jobs.start(tenant, project, params.model_dump(mode="json"),
                                    request.request_id or None)
        return job_to_wire(job)
