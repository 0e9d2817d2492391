"""gRPC boundary of the trainer service: wire messages in, typed parameters to the domain."""

from __future__ import annotations

import grpc

from loraforge.runtime.job_service import JobService
from loraforge.runtime.params import TrainingParams
from loraforge.runtime.servicers import (
    JobCalls,
    dict_from_struct,
    job_to_wire,
    present_fields,
    scope_from_wire,
)
from loraforge.trainer.presets import get_preset
from loraforge.trainer.run.options import refuse_conflicts, refuse_kubernetes, validate_extra
from loraforge.v1 import common_pb2, trainer_pb2, trainer_pb2_grpc

# TrainingRun's numbers are proto3 `optional`: a set value (0 included) is validated as sent.
RUN_NUMBERS = ("rank", "alpha", "learning_rate", "steps", "resolution", "frames", "seed")


def training_params_from_wire(request: trainer_pb2.StartTrainingRequest) -> TrainingParams:
    """StartTrainingRequest -> TrainingParams: an unset number takes the default, a set one
    (rank 0 included) reaches validation and is refused there if invalid."""
    run = request.run
    return TrainingParams.parse(
        dataset_id=run.dataset_id,
        base_preset=run.base_preset,
        extra=dict_from_struct(run.extra),
        on_kubernetes=request.on_kubernetes,
        present=present_fields(run, *RUN_NUMBERS),
    )


class TrainerServicer(JobCalls, trainer_pb2_grpc.TrainerServiceServicer):
    def __init__(self, jobs: JobService, *, kubernetes: bool = False):
        self.jobs = jobs
        self.kubernetes = kubernetes  # on_kubernetes runs are accepted (k8s_run.py)

    def attach(self, server: grpc.aio.Server) -> str:
        trainer_pb2_grpc.add_TrainerServiceServicer_to_server(self, server)
        return trainer_pb2.DESCRIPTOR.services_by_name["TrainerService"].full_name

    async def StartTraining(
        self,
        request: trainer_pb2.StartTrainingRequest,
        context: grpc.aio.ServicerContext[trainer_pb2.StartTrainingRequest, common_pb2.Job],
    ) -> common_pb2.Job:
        tenant, project = scope_from_wire(request.scope)
        params = training_params_from_wire(request)
        # Refuse what can never run before a job exists: an unknown preset, unknown or
        # mistyped options in extra, Kubernetes runs on a service without Kubernetes Jobs.
        get_preset(params.base_preset)
        validate_extra(params.extra)
        refuse_conflicts(params)
        if not self.kubernetes:
            refuse_kubernetes(params)
        job = await self.jobs.start(
            tenant, project, params.model_dump(mode="json"), request.request_id or None
        )
        return job_to_wire(job)
