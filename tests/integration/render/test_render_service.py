"""The render service end to end on tiny presets, and its NATS work queue."""

from __future__ import annotations

import asyncio
import contextlib

import grpc
import imageio_ffmpeg
import pytest

from loraforge.render.main import mount
from loraforge.runtime.events import Delivery, Event
from loraforge.runtime.host import ServiceProcess
from loraforge.runtime.jobs import JobState
from loraforge.runtime.storage import Bucket
from loraforge.v1 import common_pb2, render_pb2, render_pb2_grpc

pytestmark = pytest.mark.timeout(300)

FOUR_SHOTS = """
name: film
image_preset: tiny-sdxl
video_preset: tiny-wan2.1-flf2v
shots:
  - {prompt: "a red ball on grass", seed: 1}
  - {prompt: "a blue cube on sand", seed: 2}
  - {prompt: "a green cone in snow", seed: 3}
  - {prompt: "a gold ring on wood", seed: 4}
transition: {frames: 9, fps: 8}
output: {width: 64, height: 64}
steps: 2
"""

ONE_SHOT = """
image_preset: tiny-sdxl
shots: [{prompt: "a red ball number {i}", seed: {i}}]
output: {width: 64, height: 64}
steps: 1
"""


def _probe_frames(path) -> tuple[int, float]:
    return imageio_ffmpeg.count_frames_and_secs(str(path))


@pytest.fixture
async def render_service(settings):
    procs = []

    async def start() -> ServiceProcess:
        proc = ServiceProcess("render", settings, mount, drain_delay_s=0)
        await proc.start()
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        with contextlib.suppress(Exception):
            await proc.stop()


async def _wait_terminal(jobs, tenant, project, job_id, timeout=240):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        job = await jobs.get(tenant, project, job_id)
        if job.state.terminal:
            return job
        assert asyncio.get_running_loop().time() < deadline, (
            f"job stuck in {job.state}: {job.message}"
        )
        await asyncio.sleep(0.3)


async def test_four_shot_scenario_gives_images_transitions_and_film(
    render_service, store, tmp_path
) -> None:
    proc = await render_service()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{proc.port}")
    stub = render_pb2_grpc.RenderServiceStub(channel)
    scope = common_pb2.ProjectScope(tenant="acme", project="jane")
    job = await stub.SubmitRender(
        render_pb2.SubmitRenderRequest(
            scope=scope,
            request_id="film-1",
            render=common_pb2.RenderRequest(scenario_yaml=FOUR_SHOTS),
        ),
        timeout=10,
    )
    done = await _wait_terminal(proc.clients.jobs, "acme", "jane", job.id)
    assert done.state is JobState.SUCCEEDED, done.message
    kinds = [a.kind for a in done.artifacts]
    assert (
        kinds.count("keyframe") == 4 and kinds.count("transition") == 2 and kinds.count("film") == 1
    )
    film_key = done.result["film"]
    film = store.download(Bucket.RENDERS, film_key, tmp_path / "film.mp4")
    frames, seconds = _probe_frames(film)
    assert frames == 2 * 9  # two transitions of 9 frames, cut together
    assert abs(seconds - 18 / 8) < 0.2
    # Resubmitting the same request id answers with the same job and artifacts, no new render.
    again = await stub.SubmitRender(
        render_pb2.SubmitRenderRequest(
            scope=scope,
            request_id="film-1",
            render=common_pb2.RenderRequest(scenario_yaml=FOUR_SHOTS),
        ),
        timeout=10,
    )
    assert again.id == job.id and again.state == common_pb2.JOB_STATE_SUCCEEDED
    await channel.close()


async def test_batch_over_two_workers_survives_a_killed_worker(
    render_service, bus, settings
) -> None:
    completed: list[str] = []

    async def record(event: Event, delivery: Delivery) -> None:
        completed.append(event.data["job_id"])

    await bus.subscribe("test-completed", "render.completed", record)
    worker_a = await render_service()
    for i in range(10):
        await bus.publish(
            Event(
                type="render.requests",
                tenant="acme",
                project="batch",
                data={"request_id": f"req-{i}", "scenario_yaml": ONE_SHOT.replace("{i}", str(i))},
            )
        )
    jobs = worker_a.clients.jobs
    # Kill worker A in the middle of a request: no ack, no heartbeat, connection gone.
    for _ in range(400):
        running = await jobs.list("acme", "batch", states=[JobState.RUNNING])
        if running:
            break
        await asyncio.sleep(0.05)
    assert running, "worker A never started a request"
    await worker_a.clients.bus._nc.close()
    worker_b = await render_service()
    for _ in range(600):
        listed = await worker_b.clients.jobs.list("acme", "batch")
        if len(listed) == 10 and all(j.state.terminal for j in listed):
            break
        await asyncio.sleep(0.3)
    listed = await worker_b.clients.jobs.list("acme", "batch")
    assert len(listed) == 10
    assert all(j.state is JobState.SUCCEEDED for j in listed), [
        (j.id, j.state, j.message) for j in listed
    ]
    await asyncio.sleep(1.0)
    assert sorted(completed) == sorted(j.id for j in listed)  # each exactly once


async def test_bad_scenario_is_refused_with_the_field(render_service) -> None:
    proc = await render_service()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{proc.port}")
    stub = render_pb2_grpc.RenderServiceStub(channel)
    scope = common_pb2.ProjectScope(tenant="acme", project="jane")
    job = await stub.SubmitRender(
        render_pb2.SubmitRenderRequest(
            scope=scope,
            render=common_pb2.RenderRequest(
                scenario_yaml=FOUR_SHOTS.replace("frames: 9", "frames: 8")
            ),
        ),
        timeout=10,
    )
    done = await _wait_terminal(proc.clients.jobs, "acme", "jane", job.id)
    assert done.state is JobState.FAILED and "4k+1" in done.message
    await channel.close()


async def test_cancel_a_running_render(render_service) -> None:
    proc = await render_service()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{proc.port}")
    stub = render_pb2_grpc.RenderServiceStub(channel)
    scope = common_pb2.ProjectScope(tenant="acme", project="jane")
    slow = FOUR_SHOTS.replace("steps: 2", "steps: 6").replace("frames: 9", "frames: 17")
    job = await stub.SubmitRender(
        render_pb2.SubmitRenderRequest(
            scope=scope, request_id="to-cancel", render=common_pb2.RenderRequest(scenario_yaml=slow)
        ),
        timeout=10,
    )
    jobs = proc.clients.jobs
    for _ in range(300):
        if (await jobs.get("acme", "jane", job.id)).state is JobState.RUNNING:
            break
        await asyncio.sleep(0.05)
    await stub.CancelJob(common_pb2.CancelJobRequest(scope=scope, job_id=job.id), timeout=10)
    done = await _wait_terminal(jobs, "acme", "jane", job.id, timeout=120)
    assert done.state is JobState.CANCELLED
    assert done.result.get("film") is None  # nothing was committed
    await channel.close()
