"""JobWorker on a real NATS JetStream (and SeaweedFS for the trainer's dataset): no job stays
RUNNING when its request is given up on, and a finished job's outcome events survive a
publish that failed once."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from loraforge.runtime.errors import Unavailable
from loraforge.runtime.events import Delivery, Event, EventBus, read_dead_letters
from loraforge.runtime.job_service import (
    JobContext,
    JobOutcome,
    JobService,
    JobWorker,
    follow_up_request_id,
)
from loraforge.runtime.jobs import Job, JobState, JobStore


@pytest.fixture
async def jobs(bus: EventBus, settings) -> JobStore:
    store = await JobStore.open(bus.jetstream, settings.nats.jobs_bucket)
    yield store
    await bus.jetstream.delete_key_value(settings.nats.jobs_bucket)


async def _terminal(jobs: JobStore, job: Job, timeout: float) -> Job:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        current = await jobs.get(job.tenant, job.project, job.id)
        if current.state.terminal:
            return current
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"job {job.id} still {current.state} ({current.message!r})")
        await asyncio.sleep(0.05)


async def _letters(bus: EventBus, consumer: str, timeout: float = 5.0) -> list:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        letters = await read_dead_letters(bus, consumer, timeout=0.3)
        if letters:
            return letters
    return []


async def _stored(bus: EventBus, event_type: str) -> int:
    subject = bus.subject(event_type)
    info = await bus.jetstream.stream_info(bus.settings.stream, subjects_filter=subject)
    return (info.state.subjects or {}).get(subject, 0)


async def test_missing_dataset_fails_the_training_job_with_the_reason(
    bus: EventBus, jobs: JobStore, store, tmp_path: Path
) -> None:
    """The trainer's read of a dataset that was never curated raises NotFound, a permanent
    error: the request is dead-lettered at once and the job must say FAILED, and why."""
    from loraforge.trainer.worker import TrainingWork

    await JobWorker("trainer", jobs, bus, TrainingWork(store, workdir_root=tmp_path)).start()
    job = await JobService("trainer", jobs, bus).start(
        "acme", "jane", {"dataset_id": "never-curated", "base_preset": "tiny-sdxl"}
    )
    final = await _terminal(jobs, job, timeout=15)
    assert final.state is JobState.FAILED
    assert "dataset never-curated of acme/jane does not exist" in final.message
    letters = await _letters(bus, "trainer-workers")
    assert [letter.reason for letter in letters] == ["permanent_error"]
    assert await _stored(bus, "trainer.failed") == 1


async def test_work_that_keeps_failing_ends_failed_after_max_deliver(
    bus: EventBus, jobs: JobStore
) -> None:
    attempts: list[int] = []

    async def always_fails(job: Job, ctx: JobContext) -> JobOutcome:
        attempts.append(len(attempts) + 1)
        raise RuntimeError("GPU fell off the bus")

    await JobWorker("probe", jobs, bus, always_fails).start()
    job = await JobService("probe", jobs, bus).start("acme", "jane", {})
    final = await _terminal(jobs, job, timeout=15)
    assert final.state is JobState.FAILED
    assert "GPU fell off the bus" in final.message
    assert len(attempts) == bus.settings.max_deliver
    assert [letter.reason for letter in await _letters(bus, "probe-workers")] == ["max_deliveries"]


async def test_worker_dying_on_every_delivery_ends_failed_after_the_last(
    settings, jobs: JobStore
) -> None:
    """Each delivery kills its worker the way kill -9 would: the connection drops with no
    ack, no nak and no heartbeat. After the last delivery only JetStream's max-deliveries
    advisory is left to tell of it; a surviving replica must turn it into FAILED."""
    nats = settings.nats.model_copy(update={"max_deliver": 2, "ack_wait_s": 1.0})
    buses: list[EventBus] = []
    deaths: list[int] = []

    def dies(bus: EventBus):
        async def work(job: Job, ctx: JobContext) -> JobOutcome:
            deaths.append(1)
            await bus._nc.close()  # the process is gone: its socket closes, nothing is acked
            raise asyncio.CancelledError

        return work

    try:
        # One replica more than deliveries: at least one lives to hear the advisory.
        for i in range(nats.max_deliver + 1):
            bus = await EventBus.connect(nats, name=f"replica-{i}")
            buses.append(bus)
            await JobWorker("probe", jobs, bus, dies(bus)).start()
        job = await JobService("probe", jobs, buses[-1]).start("acme", "jane", {})
        final = await _terminal(jobs, job, timeout=15)
        assert final.state is JobState.FAILED
        assert "gave up after 2 deliveries" in final.message
        assert "worker crashed or hung" in final.message
        # Each delivery a replica took killed it (a delivery to a pull request of a replica
        # already dead would count as an attempt too, without a death).
        assert 1 <= len(deaths) <= nats.max_deliver
    finally:
        for bus in buses:
            if bus.is_connected:
                await bus.close()


class PublishFailsOnce(EventBus):
    """The worker's bus in the test below: the first publish of `fail_type` raises as a NATS
    outage would; every publish is recorded."""

    fail_type = "alpha.done"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.failed = False
        self.tried: list[tuple[str, str]] = []

    async def publish(self, event: Event) -> bool:
        self.tried.append((event.type, event.id))
        if event.type == self.fail_type and not self.failed:
            self.failed = True
            raise Unavailable("nats: timeout (injected once by the test)")
        return await super().publish(event)


async def test_follow_up_whose_publish_failed_is_republished_and_the_next_stage_runs_once(
    bus: EventBus, jobs: JobStore, settings
) -> None:
    flaky = await PublishFailsOnce.connect(settings.nats, name="alpha-worker")
    runs = {"alpha": 0, "beta": 0}

    async def alpha(job: Job, ctx: JobContext) -> JobOutcome:
        runs["alpha"] += 1
        done = Event(
            id=f"alpha-done-{job.id}",
            type="alpha.done",
            tenant=job.tenant,
            project=job.project,
            data={"job_id": job.id},
        )
        return JobOutcome(message="alpha done", events=[done])

    async def beta(job: Job, ctx: JobContext) -> JobOutcome:
        runs["beta"] += 1
        return JobOutcome(message="beta done")

    betas = JobService("beta", jobs, bus)
    heard: list[str] = []

    async def next_stage(event: Event, delivery: Delivery) -> None:  # like AutoCurator
        heard.append(event.id)
        await betas.start(
            event.tenant, event.project, {}, request_id=follow_up_request_id(event.id)
        )

    try:
        await JobWorker("alpha", jobs, flaky, alpha).start()
        await JobWorker("beta", jobs, bus, beta).start()
        await bus.subscribe("beta-auto", "alpha.done", next_stage)
        job = await JobService("alpha", jobs, bus).start("acme", "jane", {})
        assert (await _terminal(jobs, job, timeout=15)).state is JobState.SUCCEEDED
        follow_up = f"alpha-done-{job.id}"
        beta_job = None
        for _ in range(200):
            found = await betas.list("acme", "jane", [])
            if found and found[0].state.terminal:
                beta_job = found
                break
            await asyncio.sleep(0.05)
        assert beta_job is not None, "the next stage never started"
        await asyncio.sleep(0.5)  # time for a duplicate to show, were there one
        assert flaky.failed
        assert flaky.tried.count(("alpha.done", follow_up)) == 2  # failed, then re-published
        assert runs == {"alpha": 1, "beta": 1}
        assert heard == [follow_up]
        assert await _stored(bus, "alpha.done") == 1
        assert await _stored(bus, "alpha.succeeded") == 1
        assert [j.state for j in await betas.list("acme", "jane", [])] == [JobState.SUCCEEDED]
    finally:
        await flaky.close()


MISSING_LORA = """
image_preset: tiny-sdxl
shots: [{prompt: "hero on a beach", seed: 1}]
loras: [{name: hero, path: acme/jane/loras/never-trained.safetensors}]
output: {width: 64, height: 64}
steps: 1
"""


async def test_render_with_a_missing_lora_fails_the_job_with_the_reason(
    bus: EventBus, settings
) -> None:
    """The render service as deployed (its own requests handler, render/main.py): a LoRA that
    was never trained is a permanent NotFound, and the job says so instead of staying RUNNING."""
    from loraforge.render.main import mount
    from loraforge.runtime.host import ServiceProcess

    proc = ServiceProcess("render", settings, mount, drain_delay_s=0)
    await proc.start()
    try:
        await bus.publish(
            Event(
                type="render.requests",
                tenant="acme",
                project="jane",
                data={"request_id": "missing-lora", "scenario_yaml": MISSING_LORA},
            )
        )
        found: list[Job] = []
        for _ in range(200):
            found = await proc.clients.jobs.list("acme", "jane", kind="render")
            if found:
                break
            await asyncio.sleep(0.05)
        assert found, "the render request never became a job"
        final = await _terminal(proc.clients.jobs, found[0], timeout=30)
        assert final.state is JobState.FAILED
        assert "loras/acme/jane/loras/never-trained.safetensors does not exist" in final.message
        assert await _stored(bus, "render.failed") == 1
    finally:
        await proc.stop()
