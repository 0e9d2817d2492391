"""gRPC boundary of the render service: wire messages in, typed parameters to the domain."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass

import grpc
from nats.js.errors import NotFoundError

from loraforge.library.deployments import Deployments, DeploymentStatus, parse_spec, view_of
from loraforge.render.inputs import check_input_images
from loraforge.render.scenario import Scenario, parse_scenario
from loraforge.render.warm import request_warm, start_call
from loraforge.runtime.errors import InvalidInput, Unavailable
from loraforge.runtime.events import EventBus
from loraforge.runtime.job_service import JobService
from loraforge.runtime.jobs import JobState, JobStore
from loraforge.runtime.keys import ProjectRef
from loraforge.runtime.params import DeploymentCallParams, LoraWeightParams, RenderParams
from loraforge.runtime.servicers import JobCalls, job_to_wire, present_fields, scope_from_wire
from loraforge.runtime.storage import ObjectStore
from loraforge.v1 import common_pb2, render_pb2, render_pb2_grpc


@dataclass(frozen=True)
class _DeploymentClients:
    """What the deployment calls need; a service started without them answers Unavailable."""

    records: Deployments
    store: ObjectStore
    bus: EventBus
    jobs: JobStore


class RenderServicer(JobCalls, render_pb2_grpc.RenderServiceServicer):
    def __init__(
        self,
        jobs: JobService,
        store: ObjectStore | None = None,
        *,
        bus: EventBus | None = None,
        job_store: JobStore | None = None,
    ):
        self.jobs = jobs
        self.store = store  # to check the shots' input images at submission
        self._bus = bus  # deployments: warm requests and calls
        self._job_store = job_store

    def attach(self, server: grpc.aio.Server) -> str:
        render_pb2_grpc.add_RenderServiceServicer_to_server(self, server)
        return render_pb2.DESCRIPTOR.services_by_name["RenderService"].full_name

    async def SubmitRender(
        self,
        request: render_pb2.SubmitRenderRequest,
        context: grpc.aio.ServicerContext[render_pb2.SubmitRenderRequest, common_pb2.Job],
    ) -> common_pb2.Job:
        tenant, project = scope_from_wire(request.scope)
        params = RenderParams.parse(
            scenario_yaml=request.render.scenario_yaml,
            image_preset=request.render.image_preset,
            video_preset=request.render.video_preset,
            loras=[
                LoraWeightParams(
                    lora_key=w.lora_key,
                    adapter_name=w.adapter_name,
                    weight=w.weight if w.HasField("weight") else 1.0,
                )
                for w in request.render.loras
            ],
        )
        if self.store is not None:  # a bad input image is refused now, not by a GPU job later
            scenario: Scenario | None
            try:
                scenario = parse_scenario(params.scenario_yaml)
            except InvalidInput:
                scenario = None  # the job fails at once, naming the field (as it always did)
            if scenario is not None:
                await asyncio.to_thread(
                    check_input_images,
                    self.store,
                    ProjectRef(tenant, project),
                    [shot.image for shot in scenario.shots],
                )
        job = await self.jobs.start(
            tenant, project, params.model_dump(mode="json"), request.request_id or None
        )
        return job_to_wire(job)

    # -- deployments ----------------------------------------------------------------------------

    def _deployments(self) -> _DeploymentClients:
        if self.store is None or self._bus is None or self._job_store is None:
            raise Unavailable("this render service was started without deployments")
        return _DeploymentClients(Deployments(self.store), self.store, self._bus, self._job_store)

    async def CreateDeployment(
        self,
        request: render_pb2.DeploymentRequest,
        context: grpc.aio.ServicerContext[render_pb2.DeploymentRequest, render_pb2.DeploymentReply],
    ) -> render_pb2.DeploymentReply:
        tenant, project = scope_from_wire(request.scope)
        ref = ProjectRef(tenant, project)
        try:
            data = json.loads(request.spec_json or "{}")
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"spec_json is not JSON: {exc}") from None
        if request.name:
            data = {**data, "name": request.name}
        spec = parse_spec(data)
        clients = self._deployments()
        records = clients.records
        record = await asyncio.to_thread(records.create, ref, spec)
        await request_warm(clients.bus, record)
        return render_pb2.DeploymentReply(
            deployment_json=(
                await asyncio.to_thread(records.view, ref, record.name)
            ).model_dump_json()
        )

    async def GetDeployment(
        self,
        request: render_pb2.DeploymentRequest,
        context: grpc.aio.ServicerContext[render_pb2.DeploymentRequest, render_pb2.DeploymentReply],
    ) -> render_pb2.DeploymentReply:
        tenant, project = scope_from_wire(request.scope)
        ref = ProjectRef(tenant, project)
        clients = self._deployments()
        records = clients.records
        record = await asyncio.to_thread(records.get, ref, request.name)
        beats = await asyncio.to_thread(records.beats, ref, request.name)
        view = view_of(record, beats)
        if view.status is DeploymentStatus.PENDING and beats and view.warm_workers == 0:
            # every worker that held it stopped beating (died): ask for the slots again, at
            # most once a minute (the event ids of one minute are de-duplicated)
            await request_warm(clients.bus, record, generation=f"{int(time.time() // 60)}")
        return render_pb2.DeploymentReply(deployment_json=view.model_dump_json())

    async def ListDeployments(
        self,
        request: render_pb2.DeploymentRequest,
        context: grpc.aio.ServicerContext[render_pb2.DeploymentRequest, render_pb2.DeploymentList],
    ) -> render_pb2.DeploymentList:
        tenant, project = scope_from_wire(request.scope)
        ref = ProjectRef(tenant, project)
        records = self._deployments().records

        def views() -> list[str]:
            return [
                view_of(d, records.beats(ref, d.name)).model_dump_json() for d in records.list(ref)
            ]

        return render_pb2.DeploymentList(deployment_json=await asyncio.to_thread(views))

    async def DeleteDeployment(
        self,
        request: render_pb2.DeploymentRequest,
        context: grpc.aio.ServicerContext[render_pb2.DeploymentRequest, render_pb2.DeploymentReply],
    ) -> render_pb2.DeploymentReply:
        tenant, project = scope_from_wire(request.scope)
        ref = ProjectRef(tenant, project)
        clients = self._deployments()
        record = await asyncio.to_thread(clients.records.delete, ref, request.name)
        # its calls' work queue goes too (a durable consumer lives until deleted); a warm
        # worker still bound to it lets the deployment go at its next beat
        with contextlib.suppress(NotFoundError):
            await clients.bus.jetstream.delete_consumer(
                clients.bus.settings.stream, record.consumer
            )
        # Calls still waiting in that queue will never be served: they fail now, with why,
        # instead of staying PENDING (calls already rendering finish on their warm worker).
        for job in await self.jobs.list(tenant, project, [JobState.PENDING]):
            if job.params.get("deployment") == request.name:
                await self.jobs.fail_pending(
                    job,
                    f"deployment {request.name!r} was deleted before this call was served; "
                    "deploy it again and repeat the call",
                )
        return render_pb2.DeploymentReply(deployment_json=view_of(record, []).model_dump_json())

    async def CallDeployment(
        self,
        request: render_pb2.CallDeploymentRequest,
        context: grpc.aio.ServicerContext[render_pb2.CallDeploymentRequest, common_pb2.Job],
    ) -> common_pb2.Job:
        tenant, project = scope_from_wire(request.scope)
        clients = self._deployments()
        params = DeploymentCallParams.parse(
            deployment=request.deployment,
            image=request.image,
            last_image=request.last_image,
            prompt=request.prompt,
            present=present_fields(request, "seed"),
        )
        job = await start_call(
            clients.jobs,
            clients.bus,
            clients.store,
            tenant,
            project,
            params,
            request.request_id or None,
        )
        return job_to_wire(job)
