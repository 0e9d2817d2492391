"""gRPC boundary of the ingest service: wire messages in, typed parameters to the domain."""

from __future__ import annotations

import grpc

from loraforge.ingest.layout import check_source
from loraforge.runtime.job_service import JobService
from loraforge.runtime.keys import ProjectRef
from loraforge.runtime.params import IngestParams
from loraforge.runtime.servicers import JobCalls, job_to_wire, present_fields, scope_from_wire
from loraforge.v1 import common_pb2, ingest_pb2, ingest_pb2_grpc


class IngestServicer(JobCalls, ingest_pb2_grpc.IngestServiceServicer):
    def __init__(self, jobs: JobService):
        self.jobs = jobs

    def attach(self, server: grpc.aio.Server) -> str:
        ingest_pb2_grpc.add_IngestServiceServicer_to_server(self, server)
        return ingest_pb2.DESCRIPTOR.services_by_name["IngestService"].full_name

    async def StartIngest(
        self,
        request: ingest_pb2.StartIngestRequest,
        context: grpc.aio.ServicerContext[ingest_pb2.StartIngestRequest, common_pb2.Job],
    ) -> common_pb2.Job:
        tenant, project = scope_from_wire(request.scope)
        params = IngestParams.parse(
            sources=list(request.sources),
            lora_type=request.lora_type,
            present=present_fields(request, "min_s", "max_s", "fps", "max_long_side"),
        )
        # Refuse other tenants' (and projects') keys here, before a job exists; the worker
        # checks again, for jobs started by other paths.
        ref = ProjectRef(tenant, project)
        params = params.model_copy(
            update={"sources": [check_source(ref, s) for s in params.sources]}
        )
        job = await self.jobs.start(
            tenant, project, params.model_dump(mode="json"), request.request_id or None
        )
        return job_to_wire(job)
