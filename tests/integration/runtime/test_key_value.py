"""Reading what a JetStream key-value bucket holds now (`current_entries`): the listings of
jobs, projects, API keys and webhooks all read through it, against a real nats-server."""

from __future__ import annotations

import asyncio

import pytest

from loraforge.runtime.events import current_entries, open_key_value
from loraforge.runtime.jobs import Job, JobStore, new_job_id
from loraforge.runtime.projects import ProjectRegistry


@pytest.fixture
async def kv(bus, settings):
    bucket = f"{settings.nats.jobs_bucket}_kv"
    yield await open_key_value(bus.jetstream, bucket)
    await bus.jetstream.delete_key_value(bucket)


async def _consumers(bus, kv) -> int:
    return (await bus.jetstream.stream_info(kv._stream)).state.consumer_count


async def test_the_current_entries_are_the_live_keys_at_their_newest_value(bus, kv) -> None:
    await kv.put("acme.a", b"1")
    await kv.put("acme.b", b"1")
    await kv.put("acme.a", b"2")  # rewritten: read once, at its new revision
    await kv.put("acme.c", b"1")
    await kv.delete("acme.c")  # deleted: not read
    await kv.put("globex.a", b"1")  # outside the pattern
    entries = await current_entries(kv, "acme.*")
    assert {e.key: e.value for e in entries} == {"acme.a": b"2", "acme.b": b"1"}
    assert len(entries) == 2
    newest = await kv.get("acme.a")
    assert next(e for e in entries if e.key == "acme.a").revision == newest.revision
    # meta_only: the keys without their values
    assert {(e.key, e.value) for e in await current_entries(kv, "acme.*", meta_only=True)} == {
        ("acme.a", b""),
        ("acme.b", b""),
    }
    assert await current_entries(kv, "nobody.*") == []


async def test_more_entries_than_one_fetch_are_all_read(bus, kv) -> None:
    await asyncio.gather(*[kv.put(f"acme.k{i}", str(i).encode()) for i in range(600)])
    entries = await current_entries(kv, "acme.*")
    assert sorted(int(e.value) for e in entries) == list(range(600))


async def test_reading_leaves_no_consumer_on_the_server(bus, settings, kv) -> None:
    """nats-py's watch left each listing's consumer on the server for 5 minutes, and the server
    refuses new consumers on a stream once 1000 are held: a gateway listing a few times a
    second failed within minutes."""
    await kv.put("acme.a", b"1")
    for _ in range(3):
        await asyncio.gather(*[current_entries(kv, "acme.*") for _ in range(20)])
    assert await _consumers(bus, kv) == 0

    projects = await ProjectRegistry.open(bus.jetstream, f"{settings.nats.jobs_bucket}_projects")
    jobs = await JobStore.open(bus.jetstream, settings.nats.jobs_bucket)
    try:
        await projects.create("acme", "jane")
        job = await jobs.create(Job(id=new_job_id(), kind="ingest", tenant="acme", project="jane"))
        for _ in range(30):
            assert [p["name"] for p in await projects.list("acme")] == ["jane"]
            assert [j.id for j in await jobs.list("acme")] == [job.id]
            assert (await jobs.find("acme", job.id)).id == job.id
            assert [j.id for j in await jobs.scan(kind="ingest")] == [job.id]
        assert await _consumers(bus, jobs._kv) == 0
        assert await _consumers(bus, projects._kv) == 0
    finally:
        await bus.jetstream.delete_key_value(settings.nats.jobs_bucket)
        await bus.jetstream.delete_key_value(f"{settings.nats.jobs_bucket}_projects")


async def test_entries_removed_while_reading_end_the_read(bus, kv, monkeypatch) -> None:
    """Messages counted at the start that are gone when fetched (keys purged, old revisions
    dropped) neither hang the read nor fail it."""
    await kv.put("acme.a", b"1")
    await kv.put("acme.b", b"1")
    js = bus.jetstream
    bind = js.pull_subscribe_bind

    async def bind_then_remove(*args, **kwargs):
        sub = await bind(*args, **kwargs)
        # after the consumer counted them: a stream purge leaves no marker behind
        await js.purge_stream(kv._stream, subject=f"{kv._pre}acme.*")
        return sub

    monkeypatch.setattr(js, "pull_subscribe_bind", bind_then_remove)
    assert await asyncio.wait_for(current_entries(kv, "acme.*"), timeout=8) == []


async def test_a_server_that_delivers_nothing_is_a_clear_error(bus, kv, monkeypatch) -> None:
    """Entries pending that never come (a stalled server) end the read with Unavailable after
    a bounded wait, not a loop."""
    from loraforge.runtime.errors import Unavailable

    await kv.put("acme.a", b"1")
    js = bus.jetstream
    bind = js.pull_subscribe_bind

    async def bind_stalled(*args, **kwargs):
        sub = await bind(*args, **kwargs)

        async def fetch(*_a, **_k):
            raise TimeoutError

        sub.fetch = fetch
        return sub

    monkeypatch.setattr(js, "pull_subscribe_bind", bind_stalled)
    with pytest.raises(Unavailable, match=r"holds 1 entries .* delivered none"):
        await asyncio.wait_for(current_entries(kv, "acme.*"), timeout=20)
    monkeypatch.undo()
    assert await _consumers(bus, kv) == 0  # deleted on the way out
