"""gRPC boundary of the curation service: wire messages in, typed parameters to the domain."""

from __future__ import annotations

import grpc

from loraforge.curation.worker import build_policy, check_reference_keys
from loraforge.runtime.job_service import JobService
from loraforge.runtime.keys import ProjectRef
from loraforge.runtime.params import CurationParams
from loraforge.runtime.servicers import (
    JobCalls,
    dict_from_struct,
    job_to_wire,
    present_fields,
    scope_from_wire,
)
from loraforge.v1 import common_pb2, curation_pb2, curation_pb2_grpc


class CurationServicer(JobCalls, curation_pb2_grpc.CurationServiceServicer):
    def __init__(self, jobs: JobService):
        self.jobs = jobs

    def attach(self, server: grpc.aio.Server) -> str:
        curation_pb2_grpc.add_CurationServiceServicer_to_server(self, server)
        return curation_pb2.DESCRIPTOR.services_by_name["CurationService"].full_name

    async def StartCuration(
        self,
        request: curation_pb2.StartCurationRequest,
        context: grpc.aio.ServicerContext[curation_pb2.StartCurationRequest, common_pb2.Job],
    ) -> common_pb2.Job:
        tenant, project = scope_from_wire(request.scope)
        params = CurationParams.parse(
            reference_keys=list(request.reference_keys),
            lora_type=request.lora_type,
            policy_overrides=dict_from_struct(request.policy_overrides),
            present=present_fields(request, "target_size"),
        )
        # refuse at the door what the job would fail on: bad overrides, foreign references
        build_policy(params)
        check_reference_keys(ProjectRef(tenant, project), params.reference_keys)
        job = await self.jobs.start(
            tenant, project, params.model_dump(mode="json"), request.request_id or None
        )
        return job_to_wire(job)
