"""Every backend service over real gRPC: health, reflection, job calls, error mapping, and
the shutdown path (NOT_SERVING before the port closes)."""

from __future__ import annotations

import asyncio
import importlib

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from loraforge.runtime.host import ServiceProcess
from loraforge.v1 import common_pb2, ingest_pb2, ingest_pb2_grpc

BACKENDS = ["ingest", "curation", "captioning", "trainer", "render"]


@pytest.fixture
async def running(settings):
    started: list[ServiceProcess] = []

    async def start(
        name: str, drain_delay_s: float = 0.0, mount=None
    ) -> tuple[ServiceProcess, grpc.aio.Channel]:
        mount = mount or importlib.import_module(f"loraforge.{name}.main").mount
        proc = ServiceProcess(name, settings, mount, drain_delay_s=drain_delay_s)
        await proc.start()
        started.append(proc)
        return proc, grpc.aio.insecure_channel(f"127.0.0.1:{proc.port}")

    yield start
    for proc in started:
        await proc.stop()


async def _health(channel: grpc.aio.Channel, service: str = "") -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    resp = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=2)
    return resp.status


@pytest.mark.parametrize("name", BACKENDS)
async def test_backend_serves_health_and_reflection(running, name: str) -> None:
    _, channel = await running(name)
    assert await _health(channel) == health_pb2.HealthCheckResponse.SERVING
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)

    async def ask():
        yield reflection_pb2.ServerReflectionRequest(list_services="")

    names = set()
    async for resp in stub.ServerReflectionInfo(ask()):
        names |= {s.name for s in resp.list_services_response.service}
    expected = f"loraforge.v1.{name.capitalize()}Service"
    assert expected in names
    assert await _health(channel, expected) == health_pb2.HealthCheckResponse.SERVING
    assert "grpc.health.v1.Health" in names
    await channel.close()


async def _job_calls_only(clients, server) -> None:
    # The servicer without the ingest worker, so the job stays PENDING until cancelled (the
    # worker itself is covered in tests/integration/ingest).
    from loraforge.ingest.servicer import IngestServicer
    from loraforge.runtime.job_service import JobService

    server.add(IngestServicer(JobService("ingest", clients.jobs, clients.bus)))


async def test_ingest_job_calls_and_idempotent_start(running) -> None:
    _, channel = await running("ingest", mount=_job_calls_only)
    stub = ingest_pb2_grpc.IngestServiceStub(channel)
    scope = common_pb2.ProjectScope(tenant="acme", project="jane")
    req = ingest_pb2.StartIngestRequest(
        scope=scope, request_id="k1", sources=["acme/jane/a.mp4"], max_s=5
    )
    job = await stub.StartIngest(req, timeout=5)
    again = await stub.StartIngest(req, timeout=5)
    assert job.id == again.id
    assert job.state == common_pb2.JOB_STATE_PENDING
    assert job.params["sources"] == ["acme/jane/a.mp4"]
    got = await stub.GetJob(common_pb2.GetJobRequest(scope=scope, job_id=job.id), timeout=5)
    assert got.id == job.id and got.created_at.seconds > 0
    listed = await stub.ListJobs(common_pb2.ListJobsRequest(scope=scope), timeout=5)
    assert [j.id for j in listed.jobs] == [job.id]
    cancelled = await stub.CancelJob(
        common_pb2.CancelJobRequest(scope=scope, job_id=job.id), timeout=5
    )
    assert cancelled.state == common_pb2.JOB_STATE_CANCELLED
    other = common_pb2.ProjectScope(tenant="other", project="jane")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.GetJob(common_pb2.GetJobRequest(scope=other, job_id=job.id), timeout=5)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    await channel.close()


@pytest.mark.parametrize(
    ("request_kwargs", "fragment"),
    [
        ({"sources": []}, "sources"),
        ({"sources": ["a.mp4"], "min_s": 6, "max_s": 5}, "min_s"),
        ({"sources": ["a.mp4"], "fps": 500}, "fps"),
        ({"sources": ["a.mp4"], "min_s": 0}, "min_s"),  # optional: an explicit 0 is not "unset"
        ({"sources": ["a.mp4"], "max_long_side": 0}, "max_long_side"),
    ],
)
async def test_bad_requests_are_invalid_argument_with_a_reason(
    running, request_kwargs, fragment
) -> None:
    _, channel = await running("ingest")
    stub = ingest_pb2_grpc.IngestServiceStub(channel)
    scope = common_pb2.ProjectScope(tenant="acme", project="jane")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.StartIngest(
            ingest_pb2.StartIngestRequest(scope=scope, **request_kwargs), timeout=5
        )
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert fragment in info.value.details()
    bad_scope = common_pb2.ProjectScope(tenant="Not A Slug", project="jane")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.StartIngest(
            ingest_pb2.StartIngestRequest(scope=bad_scope, sources=["a"]), timeout=5
        )
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    await channel.close()


async def _trainer_calls_only(clients, server) -> None:
    from loraforge.runtime.job_service import JobService
    from loraforge.trainer.servicer import TrainerServicer

    server.add(TrainerServicer(JobService("trainer", clients.jobs, clients.bus)))


async def test_trainer_refuses_rank_zero_and_defaults_an_unset_rank(running) -> None:
    """TrainingRun's numbers are proto3 `optional`: rank 0 sent on the wire is refused with
    INVALID_ARGUMENT naming the field, an omitted rank stays unset in the job (the trainer
    fills in the preset family's default: trainer/config.py)."""
    from loraforge.v1 import trainer_pb2, trainer_pb2_grpc

    _, channel = await running("trainer", mount=_trainer_calls_only)
    stub = trainer_pb2_grpc.TrainerServiceStub(channel)
    scope = common_pb2.ProjectScope(tenant="acme", project="jane")

    def start(request_id: str, **run) -> trainer_pb2.StartTrainingRequest:
        return trainer_pb2.StartTrainingRequest(
            scope=scope,
            request_id=request_id,
            run=common_pb2.TrainingRun(dataset_id="ds-1", base_preset="tiny-wan2.1-t2v", **run),
        )

    for field in ("rank", "steps", "learning_rate"):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.StartTraining(start(f"zero-{field}", **{field: 0}), timeout=5)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field in info.value.details()
    job = await stub.StartTraining(start("unset", steps=4), timeout=5)
    assert job.params["rank"] is None and job.params["learning_rate"] is None
    assert job.params["steps"] == 4
    given = await stub.StartTraining(start("given", rank=8, seed=0), timeout=5)
    assert (given.params["rank"], given.params["seed"]) == (8, 0)
    await channel.close()


async def test_shutdown_reports_not_serving_before_closing(running) -> None:
    proc, channel = await running("ingest", drain_delay_s=1.5)
    assert await _health(channel) == health_pb2.HealthCheckResponse.SERVING
    stopping = asyncio.create_task(proc.stop())
    await asyncio.sleep(0.3)
    assert await _health(channel) == health_pb2.HealthCheckResponse.NOT_SERVING
    await stopping
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await _health(channel)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert proc.clients.bus.is_connected is False
    await channel.close()


async def test_metrics_endpoint_counts_rpcs(settings) -> None:
    import urllib.request

    from loraforge.ingest.main import mount
    from loraforge.runtime.grpc_client import aio_channel
    from loraforge.stack.binaries import free_port

    port = free_port()
    with_metrics = settings.model_copy(
        update={"server": settings.server.model_copy(update={"metrics_port": port})}
    )
    proc = ServiceProcess("ingest", with_metrics, mount, drain_delay_s=0)
    await proc.start()
    try:
        channel = aio_channel(f"127.0.0.1:{proc.port}")
        stub = ingest_pb2_grpc.IngestServiceStub(channel)
        scope = common_pb2.ProjectScope(tenant="acme", project="jane")
        await stub.ListJobs(common_pb2.ListJobsRequest(scope=scope), timeout=5)
        body = await asyncio.to_thread(
            lambda: (
                urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5)
                .read()
                .decode()
            )
        )
        assert (
            'loraforge_rpc_seconds_count{code="OK",method="/loraforge.v1.IngestService/ListJobs"'
            in body
        )
        await channel.close()
    finally:
        await proc.stop()
