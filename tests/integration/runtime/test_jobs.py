"""The job store against a real JetStream key-value bucket."""

from __future__ import annotations

import asyncio

import pytest

from loraforge.runtime.errors import Conflict, InvalidTransition, NotFound
from loraforge.runtime.jobs import ArtifactRef, Job, JobState, JobStore, new_job_id


@pytest.fixture
async def jobs(bus, settings) -> JobStore:
    store = await JobStore.open(bus.jetstream, settings.nats.jobs_bucket)
    yield store
    await bus.jetstream.delete_key_value(settings.nats.jobs_bucket)


def _job(**kw) -> Job:
    return Job(id=new_job_id(), kind="ingest", tenant="acme", project="jane", **kw)


async def test_two_writers_at_the_same_revision_one_wins(jobs: JobStore) -> None:
    job = await jobs.create(_job())
    a, b = job.model_copy(), job.model_copy()
    results = await asyncio.gather(
        jobs.update(a, state=JobState.RUNNING, message="writer a"),
        jobs.update(b, state=JobState.CANCELLED, message="writer b"),
        return_exceptions=True,
    )
    winners = [r for r in results if isinstance(r, Job)]
    losers = [r for r in results if isinstance(r, Exception)]
    assert len(winners) == 1 and len(losers) == 1
    assert isinstance(losers[0], Conflict)
    stored = await jobs.get("acme", "jane", job.id)
    assert stored.message == winners[0].message
    assert stored.revision == winners[0].revision


async def test_lifecycle_and_terminal_states_are_final(jobs: JobStore) -> None:
    job = await jobs.create(_job())
    job = await jobs.update(job, state=JobState.RUNNING, progress=0.5)
    assert job.started_at is not None
    job = await jobs.update(
        job,
        state=JobState.SUCCEEDED,
        artifacts=[ArtifactRef(bucket="clips", key="acme/jane/c1.mp4", kind="clip")],
    )
    assert job.progress == 1.0 and job.finished_at is not None
    with pytest.raises(InvalidTransition):
        await jobs.update(job, state=JobState.RUNNING)
    stored = await jobs.get("acme", "jane", job.id)
    assert stored.state is JobState.SUCCEEDED
    assert stored.artifacts[0].key == "acme/jane/c1.mp4"


async def test_pending_cannot_jump_to_succeeded(jobs: JobStore) -> None:
    job = await jobs.create(_job())
    with pytest.raises(InvalidTransition):
        await jobs.update(job, state=JobState.SUCCEEDED)


async def test_idempotent_create_returns_the_stored_job(jobs: JobStore) -> None:
    job_id = new_job_id("client-key-1", scope="acme/jane/ingest")
    _first, created = await jobs.create_or_get(
        _job().model_copy(update={"id": job_id, "params": {"a": 1}})
    )
    again, created_again = await jobs.create_or_get(
        _job().model_copy(update={"id": job_id, "params": {"a": 2}})
    )
    assert created and not created_again
    assert again.params == {"a": 1}
    assert job_id == new_job_id("client-key-1", scope="acme/jane/ingest")


async def test_cancel_pending_and_running(jobs: JobStore) -> None:
    pending = await jobs.create(_job())
    cancelled = await jobs.request_cancel("acme", "jane", pending.id)
    assert cancelled.state is JobState.CANCELLED
    running = await jobs.update(await jobs.create(_job()), state=JobState.RUNNING)
    flagged = await jobs.request_cancel("acme", "jane", running.id)
    assert flagged.state is JobState.RUNNING and flagged.cancel_requested


async def test_list_filters_by_tenant_project_kind_state(jobs: JobStore) -> None:
    a = await jobs.create(_job())
    b = await jobs.create(Job(id=new_job_id(), kind="trainer", tenant="acme", project="bob"))
    await jobs.create(Job(id=new_job_id(), kind="ingest", tenant="other", project="jane"))
    await jobs.update(b, state=JobState.RUNNING)
    assert {j.id for j in await jobs.list("acme")} == {a.id, b.id}
    assert [j.id for j in await jobs.list("acme", "jane")] == [a.id]
    assert [j.id for j in await jobs.list("acme", kind="trainer")] == [b.id]
    assert [j.id for j in await jobs.list("acme", states=[JobState.RUNNING])] == [b.id]
    assert await jobs.list("nobody") == []
    assert (await jobs.find("acme", b.id)).project == "bob"
    with pytest.raises(NotFound):
        await jobs.find("other", b.id)  # another tenant's job is invisible


async def test_mutate_retries_through_conflicts(jobs: JobStore) -> None:
    job = await jobs.create(_job(state=JobState.PENDING))
    job = await jobs.update(job, state=JobState.RUNNING)

    async def bump() -> None:
        await jobs.mutate(
            "acme", "jane", job.id, lambda j: {"result": {"n": j.result.get("n", 0) + 1}}
        )

    await asyncio.gather(*(bump() for _ in range(5)))
    assert (await jobs.get("acme", "jane", job.id)).result == {"n": 5}


async def test_oversized_job_record_is_refused_and_the_stored_one_kept(jobs: JobStore) -> None:
    from loraforge.runtime.errors import InvalidInput

    job = await jobs.create(_job())
    with pytest.raises(InvalidInput, match="store large results as an object"):
        await jobs.update(job, result={"blob": "x" * 600_000})
    assert (await jobs.get("acme", "jane", job.id)).result == {}
