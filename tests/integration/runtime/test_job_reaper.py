"""The heartbeat reaper on a real NATS JetStream: a RUNNING job whose worker died is failed
only when no delivery of its request is coming; one JetStream will still redeliver is left to
the live replica that takes it, and completes exactly once."""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime

import pytest

from loraforge.runtime.events import EventBus
from loraforge.runtime.job_service import JobContext, JobOutcome, JobService, JobWorker
from loraforge.runtime.jobs import Job, JobState, JobStore
from loraforge.runtime.settings import NatsSettings


@pytest.fixture
def nats(settings) -> NatsSettings:
    # Beats every 0.2 s; stale after ack_wait + back-off + 3 beats = 1 + 0.1 + 0.6 = 1.7 s.
    return settings.nats.model_copy(
        update={
            "max_deliver": 2,
            "ack_wait_s": 1.0,
            "backoff_s": (0.1,),
            "job_beat_s": 0.2,
            "reap_every_s": 0.2,
        }
    )


@pytest.fixture
async def jobs(bus: EventBus, settings) -> JobStore:
    store = await JobStore.open(bus.jetstream, settings.nats.jobs_bucket)
    yield store
    await bus.jetstream.delete_key_value(settings.nats.jobs_bucket)


class Replicas:
    """Worker processes of kind `probe`, each on its own NATS connection."""

    def __init__(self, nats: NatsSettings, jobs: JobStore):
        self.nats, self.jobs = nats, jobs
        self.buses: list[EventBus] = []
        self.runs: list[tuple[str, int]] = []  # (job id, attempt) of each run that began

    async def start(self, *, dies: bool, consume: bool = True, reaper: bool = False) -> JobWorker:
        bus = await EventBus.connect(self.nats, name=f"replica-{len(self.buses)}")
        self.buses.append(bus)

        async def work(job: Job, ctx: JobContext) -> JobOutcome:
            self.runs.append((job.id, ctx.job.attempt))
            if dies:
                await asyncio.sleep(0.5)  # long enough to have beaten
                await bus._nc.close()  # kill -9: the socket closes, no ack, no beat, no nak
                raise asyncio.CancelledError
            return JobOutcome(message="done", result={"by": bus._nc.options["name"]})

        worker = JobWorker("probe", self.jobs, bus, work)
        if consume:
            await worker.start(reaper=reaper)
        return worker

    async def close(self) -> None:
        for bus in self.buses:
            if bus.is_connected:
                await bus.close()


async def _until(jobs: JobStore, job: Job, check, timeout: float) -> Job:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        current = await jobs.get(job.tenant, job.project, job.id)
        if check(current):
            return current
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"job {job.id}: {current.state} {current.message!r}")
        await asyncio.sleep(0.05)


async def _stale(nats: NatsSettings, jobs: JobStore, job: Job) -> Job:
    """Wait until the dead worker's last beat is older than the stale bound."""
    await _until(jobs, job, lambda j: j.state is JobState.RUNNING and j.beat_at, 5)
    await asyncio.sleep(0.6)  # the worker dies 0.5 s into the work
    running = await jobs.get(job.tenant, job.project, job.id)
    age = (datetime.now(UTC) - running.beat_at).total_seconds()
    await asyncio.sleep(max(0.0, nats.job_stale_after - age) + 0.2)
    return running


async def test_worker_dead_on_its_last_delivery_with_nobody_to_hear_is_reaped(
    nats: NatsSettings, jobs: JobStore, bus: EventBus
) -> None:
    """Injects: the only replica dies (kill -9) on the request's last delivery, so
    JetStream's max-deliveries advisory reaches no one. Must hold: a replica started later
    fails the job through its reaper, naming the worker and the reason, and announces it."""
    replicas = Replicas(nats.model_copy(update={"max_deliver": 1}), jobs)
    try:
        await replicas.start(dies=True)
        job = await JobService("probe", jobs, bus).start("acme", "jane", {})
        running = await _stale(nats, jobs, job)
        assert running.worker and running.attempt == 1 and running.request_seq > 0
        survivor = await replicas.start(dies=False, reaper=True)  # its reaper's own loop
        final = await _until(jobs, job, lambda j: j.state.terminal, nats.job_stale_after * 3 + 5)
        assert final.state is JobState.FAILED
        assert "stopped heartbeating" in final.message
        assert running.worker in final.message
        assert "last delivery" in final.message
        assert replicas.runs == [(job.id, 1)]
        assert await survivor.reap() == []  # judged once: terminal now
        subject = bus.subject("probe.failed")
        info = await bus.jetstream.stream_info(bus.settings.stream, subjects_filter=subject)
        assert (info.state.subjects or {}).get(subject) == 1
    finally:
        await replicas.close()


async def test_stale_job_whose_request_will_be_redelivered_is_left_to_the_next_replica(
    nats: NatsSettings, jobs: JobStore, bus: EventBus
) -> None:
    """Injects: the worker dies on the first of two deliveries; while every other replica is
    busy (not consuming) the beat goes stale. Must hold: the reaper leaves the job (the
    request is still pending), and the replica that takes the redelivery completes it once."""
    replicas = Replicas(nats, jobs)
    try:
        await replicas.start(dies=True)
        job = await JobService("probe", jobs, bus).start("acme", "jane", {})
        await _stale(nats, jobs, job)
        judge = await replicas.start(dies=False, consume=False)
        assert await judge.reap() == []
        assert (await jobs.get(job.tenant, job.project, job.id)).state is JobState.RUNNING
        await replicas.start(dies=False)  # a replica frees up and takes the redelivery
        final = await _until(jobs, job, lambda j: j.state.terminal, 10)
        assert final.state is JobState.SUCCEEDED
        assert replicas.runs == [(job.id, 1), (job.id, 2)]
        assert final.attempt == 2
        assert await judge.reap() == []
    finally:
        await replicas.close()


async def test_stale_job_whose_request_is_gone_from_the_stream_is_reaped(
    nats: NatsSettings, jobs: JobStore, bus: EventBus
) -> None:
    """Injects: the worker dies with deliveries left, then its request disappears from the
    stream (an operator purge, lost storage). Must hold: no delivery can come, so the
    reaper fails the job and says why."""
    replicas = Replicas(nats, jobs)
    try:
        await replicas.start(dies=True)
        job = await JobService("probe", jobs, bus).start("acme", "jane", {})
        running = await _stale(nats, jobs, job)
        await bus.jetstream.delete_msg(nats.stream, running.request_seq)
        judge = await replicas.start(dies=False, consume=False)
        [reaped] = await judge.reap()
        assert reaped.id == job.id and reaped.state is JobState.FAILED
        assert "no longer in the stream" in reaped.message
        assert await judge.reap() == []
    finally:
        await replicas.close()


def test_a_stale_bound_shorter_than_a_redelivery_is_refused() -> None:
    with pytest.raises(ValueError, match="reaper would fail jobs JetStream is about to redeliver"):
        NatsSettings(ack_wait_s=60, backoff_s=(1.0, 60.0), job_beat_s=10, job_stale_after_s=100)
    assert NatsSettings(ack_wait_s=60, backoff_s=(1.0, 60.0), job_beat_s=10).job_stale_after == 150


async def test_a_job_from_another_queue_of_its_kind_is_judged_by_that_queue(
    nats: NatsSettings, jobs: JobStore, bus: EventBus
) -> None:
    """Injects: a job whose request came through another queue of its kind (a deployment's
    calls) loses its worker with a delivery left, while the kind's main queue has acked later
    requests. Must hold: the reaper asks the queue that delivered it (recorded in the job) and
    leaves the job, since that queue will deliver it again."""
    replicas = Replicas(nats, jobs)
    calls_bus = await EventBus.connect(nats, name="calls-replica")
    try:

        async def dies(job: Job, ctx: JobContext) -> JobOutcome:
            await asyncio.sleep(0.5)
            await calls_bus._nc.close()  # kill -9
            raise asyncio.CancelledError

        calls = JobWorker("probe", jobs, calls_bus, dies, durable="probe-calls")
        await calls_bus.subscribe("probe-calls", "probe.calls", calls.handle)
        call = await jobs.create(Job(id="jcall0001", kind="probe", tenant="acme", project="jane"))
        from loraforge.runtime.events import Event

        await bus.publish(
            Event(
                id="call-1",
                type="probe.calls",
                tenant="acme",
                project="jane",
                data={"job_id": call.id},
            )
        )
        running = await _stale(nats, jobs, call)
        assert running.consumer == "probe-calls"
        await replicas.start(dies=False)  # the main queue acks a later request
        later = await JobService("probe", jobs, bus).start("acme", "jane", {})
        await _until(jobs, later, lambda j: j.state is JobState.SUCCEEDED, 10)
        judge = await replicas.start(dies=False, consume=False)
        assert await judge.reap() == []
        assert (await jobs.get("acme", "jane", call.id)).state is JobState.RUNNING
    finally:
        await replicas.close()


async def test_fail_pending_fails_only_a_job_nobody_took_and_announces_it(
    jobs: JobStore, bus: EventBus
) -> None:
    service = JobService("probe", jobs, bus)
    waiting = await service.start("acme", "jane", {})
    taken = await service.start("acme", "jane", {"n": 2})
    taken = await jobs.update(taken, state=JobState.RUNNING)
    failed = await service.fail_pending(waiting, "its queue was deleted")
    assert (failed.state, failed.message) == (JobState.FAILED, "its queue was deleted")
    assert (await service.fail_pending(taken, "x")).state is JobState.RUNNING
    subject = bus.subject("probe.failed")
    info = await bus.jetstream.stream_info(bus.settings.stream, subjects_filter=subject)
    assert (info.state.subjects or {}).get(subject) == 1


# A worker process whose work hangs while its heartbeat goes on: it reports the same progress
# on a timer (what the trainer's tick does while its training thread is stuck) and otherwise
# waits forever. It prints what happens to its work, for the test to read.
HUNG_WORKER = """
import asyncio, sys
from loraforge.runtime.events import EventBus
from loraforge.runtime.job_service import JobWorker
from loraforge.runtime.jobs import JobStore
from loraforge.runtime.settings import NatsSettings

async def main():
    nats = NatsSettings.model_validate_json(sys.argv[1])
    bus = await EventBus.connect(nats, name="hung-worker")
    jobs = await JobStore.open(bus.jetstream, nats.jobs_bucket)

    async def work(job, ctx):
        print("working", flush=True)
        try:
            if sys.argv[2] == "silent":  # waits forever: only its beat can stop it
                await ctx.progress(0.5, "step 3 of 10")
                await asyncio.Event().wait()
            while True:
                await ctx.progress(0.5, "step 3 of 10")  # the same report, again and again
                await asyncio.sleep(0.1)
        finally:  # stopped by its beat or at its next report, whichever sees the verdict first
            print("work stopped", flush=True)

    await JobWorker("probe", jobs, bus, work).start(reaper=False)
    await asyncio.Event().wait()

asyncio.run(main())
"""


@pytest.mark.parametrize("hang", ["repeats", "silent"])
async def test_worker_that_beats_without_progress_is_reaped_and_its_work_stopped(
    hang: str, nats: NatsSettings, jobs: JobStore, bus: EventBus
) -> None:
    """Injects: a real worker process whose work hangs (it repeats one progress report and
    never moves on, or waits forever without a word) while its heartbeat goes on. Must hold:
    past the kind's progress deadline the reaper fails the job, naming the deadline and the
    setting that raises it; the work is stopped (at its next report, or by its beat); the
    request is acknowledged (not redelivered) and the verdict announced once."""
    nats = nats.model_copy(update={"progress_deadline_s": {"probe": 1.0}})
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        HUNG_WORKER,
        nats.model_dump_json(),
        hang,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        job = await JobService("probe", jobs, bus).start("acme", "jane", {})
        assert proc.stdout is not None
        assert await asyncio.wait_for(proc.stdout.readline(), 30) == b"working\n"
        judge_bus = await EventBus.connect(nats, name="judge")
        judge = JobWorker("probe", jobs, judge_bus, _never)
        running = await _until(jobs, job, lambda j: j.progress == 0.5, 5)
        assert await judge.reap() == []  # within the deadline
        await asyncio.sleep(1.2)
        [reaped] = await judge.reap()
        assert reaped.id == job.id and reaped.state is JobState.FAILED
        age = (datetime.now(UTC) - (await jobs.get("acme", "jane", job.id)).beat_at).total_seconds()
        assert age < 1.0  # still beating: the stale path would never have judged it
        assert "no progress since" in reaped.message
        assert "'step 3 of 10' at 50%" in reaped.message
        assert running.worker in reaped.message
        assert "1 s progress deadline of probe jobs" in reaped.message
        assert "LORAFORGE_NATS__PROGRESS_DEADLINE_S" in reaped.message
        assert await asyncio.wait_for(proc.stdout.readline(), 5) == b"work stopped\n"
        info = await bus.jetstream.consumer_info(nats.stream, "probe-workers")
        deadline = asyncio.get_running_loop().time() + 5
        while info.num_ack_pending and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.1)
            info = await bus.jetstream.consumer_info(nats.stream, "probe-workers")
        assert info.num_ack_pending == 0 and info.ack_floor.stream_seq >= running.request_seq
        final = await jobs.get("acme", "jane", job.id)
        assert final.state is JobState.FAILED and final.message == reaped.message
        subject = bus.subject("probe.failed")
        info_s = await bus.jetstream.stream_info(nats.stream, subjects_filter=subject)
        assert (info_s.state.subjects or {}).get(subject) == 1
        await judge_bus.close()
    finally:
        proc.kill()
        await proc.wait()


async def _never(job: Job, ctx: JobContext) -> JobOutcome:
    raise AssertionError("the judge consumes nothing")


async def test_progress_is_a_change_in_what_the_job_shows(jobs: JobStore, bus: EventBus) -> None:
    job = await JobService("probe", jobs, bus).start("acme", "jane", {})
    job = await jobs.update(
        job, state=JobState.RUNNING, progress_at=datetime(2026, 1, 1, tzinfo=UTC)
    )
    ctx = JobContext(job, jobs, bus)
    await ctx.progress(0.5, "step 3")
    moved = ctx.job.progress_at
    assert moved is not None and moved > job.progress_at
    await ctx.progress(0.5, "step 3")
    assert ctx.job.progress_at == moved  # the same report again is no progress
    await ctx.progress(0.5, "step 3", step=3)
    assert ctx.job.progress_at > moved  # a new result is
