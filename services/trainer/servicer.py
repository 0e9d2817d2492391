"""gRPC boundary of the trainer service: wire messages in, typed parameters to the domain."""

from __future__ import annotations

import grpc
from loraforge.runtime.job_service import JobService
from loraforge.runtime.params import TrainingParams
from loraforge.runtime.servicers import (
    JobCalls,
    dict_from_struct,
    job_to_wire,
    scope_from_wire,
)
from loraforge.v1 import common_pb2, trainer_pb2, trainer_pb2_grpc


class TrainerServicer(JobCalls, trainer_pb2_grpc.TrainerServiceServicer):
    def __init__(self, jobs: JobService):
        self.jobs = jobs

    def attach(self, server: grpc.aio.Server) -> str:
        trainer_pb2_grpc.add_TrainerServiceServicer_to_server(self, server)
        return trainer_pb2.DESCRIPTOR.services_by_name["TrainerService"].full_name

    async def StartTraining(
        self, request: trainer_pb2.StartTrainingRequest, context: grpc.aio.ServicerContext
    ) -> common_pb2.Job:
        tenant, project = scope_from_wire(request.scope)
        params = TrainingParams.parse(
            dataset_id=request.run.dataset_id, base_preset=request.run.base_preset,
            rank=request.run.rank, alpha=request.run.alpha, learning_rate=request.run.learning_rate,
            steps=request.run.steps, resolution=request.run.resolution, frames=request.run.frames,
            seed=request.run.seed, extra=dict_from_struct(request.run.extra),
            on_kubernetes=request.on_kubernetes,
        )
        # Refuse what can never run before a job exists: an unknown preset, Kubernetes runs.
        from loraforge.trainer.presets import get_preset
        from loraforge.trainer.worker import refuse_kubernetes

        get_preset(params.base_preset)
        refuse_kubernetes(params)
        job = await self.jobs.start(tenant, project, params.model_dump(mode="json"),
                                    request.request_id or None)
        return job_to_wire(job)
