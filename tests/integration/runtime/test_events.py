"""The event bus against a real NATS JetStream server."""

from __future__ import annotations

import asyncio

import pytest

from loraforge.runtime.errors import InvalidInput
from loraforge.runtime.events import Delivery, Event, EventBus, read_dead_letters


async def _wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


def _event(**kw) -> Event:
    return Event(type="clips.ingested", tenant="acme", project="jane", data={"n": 1}, **kw)


async def test_crash_before_ack_redelivers_then_succeeds(bus: EventBus) -> None:
    attempts: list[int] = []

    async def flaky(event: Event, delivery: Delivery) -> None:
        attempts.append(delivery.attempt)
        if delivery.attempt == 1:
            raise RuntimeError("crashed before ack")

    consumer = await bus.subscribe("curation", "clips.ingested", flaky)
    await bus.publish(_event())
    await _wait_for(lambda: consumer.handled == 1)
    assert attempts == [1, 2]
    assert await read_dead_letters(bus, "curation", timeout=0.5) == []


async def test_max_deliveries_lands_on_dead_letter_subject(bus: EventBus) -> None:
    attempts: list[int] = []

    async def always_fails(event: Event, delivery: Delivery) -> None:
        attempts.append(delivery.attempt)
        raise RuntimeError("boom")

    await bus.subscribe("curation", "clips.ingested", always_fails)
    event = _event()
    await bus.publish(event)
    await _wait_for(lambda: len(attempts) >= bus.settings.max_deliver)
    letters: list = []

    async def letters_arrived() -> None:
        while not letters:
            letters.extend(await read_dead_letters(bus, "curation", timeout=0.5))

    await asyncio.wait_for(letters_arrived(), timeout=10)
    assert attempts == list(range(1, bus.settings.max_deliver + 1))
    assert len(letters) == 1
    letter = letters[0]
    assert letter.reason == "max_deliveries"
    assert "boom" in letter.error
    assert Event.model_validate_json(letter.payload()).id == event.id
    await asyncio.sleep(0.5)  # no further delivery after the letter
    assert len(attempts) == bus.settings.max_deliver


async def test_handler_that_dies_without_verdict_is_redelivered_after_ack_wait(
    bus: EventBus,
) -> None:
    """A worker that hangs (or whose process dies) never acks: JetStream gives the event to
    the consumer again after ack_wait, once the heartbeat has stopped."""
    attempts: list[int] = []
    release = asyncio.Event()

    async def hangs_first_time(event: Event, delivery: Delivery) -> None:
        attempts.append(delivery.attempt)
        if delivery.attempt == 1:
            raise asyncio.CancelledError  # the task dies: no ack, no nak, no heartbeat
        release.set()

    consumer = await bus.subscribe("render-workers", "render.requests", hangs_first_time)
    await bus.publish(Event(type="render.requests", tenant="acme", project="jane"))
    # The first dispatch killed the consumer loop: start a second worker on the same durable.
    await asyncio.sleep(0.2)
    assert attempts == [1]
    await bus.subscribe("render-workers", "render.requests", hangs_first_time)
    await asyncio.wait_for(release.wait(), timeout=bus.settings.ack_wait_s + 8)
    assert attempts == [1, 2]
    del consumer


async def test_duplicate_publish_is_stored_once(bus: EventBus) -> None:
    event = _event()
    assert await bus.publish(event) is True
    assert await bus.publish(event) is False
    info = await bus.jetstream.stream_info(bus.settings.stream)
    assert info.state.messages == 1
    seen: list[str] = []

    async def record(e: Event, d: Delivery) -> None:
        seen.append(e.id)

    consumer = await bus.subscribe("once", "clips.ingested", record)
    await _wait_for(lambda: consumer.handled == 1)
    await asyncio.sleep(0.3)
    assert seen == [event.id]


async def test_malformed_event_is_dead_lettered_and_consumer_keeps_going(bus: EventBus) -> None:
    good: list[str] = []

    async def record(e: Event, d: Delivery) -> None:
        good.append(e.id)

    await bus.subscribe("curation", "clips.ingested", record)
    await bus.jetstream.publish(
        bus.subject("clips.ingested"), b"{not json", stream=bus.settings.stream
    )
    await bus.jetstream.publish(
        bus.subject("clips.ingested"), b'{"type": 3}', stream=bus.settings.stream
    )
    event = _event()
    await bus.publish(event)
    await _wait_for(lambda: good == [event.id])
    letters = await read_dead_letters(bus, "curation")
    assert sorted(letter.reason for letter in letters) == ["malformed", "malformed"]
    assert any(letter.payload() == b"{not json" for letter in letters)


async def test_permanent_error_is_dead_lettered_without_retries(bus: EventBus) -> None:
    attempts: list[int] = []

    async def bad_input(e: Event, d: Delivery) -> None:
        attempts.append(d.attempt)
        raise InvalidInput("clip.mp4 is empty; upload it again")

    await bus.subscribe("ingest", "clips.ingested", bad_input)
    await bus.publish(_event())
    letters: list = []
    for _ in range(40):
        letters = await read_dead_letters(bus, "ingest", timeout=0.3)
        if letters:
            break
    assert attempts == [1]
    assert letters[0].reason == "permanent_error"
    assert "upload it again" in letters[0].error


async def test_work_queue_shares_requests_between_workers(bus: EventBus) -> None:
    seen: dict[str, list[str]] = {"a": [], "b": []}

    def worker(name: str):
        async def handle(e: Event, d: Delivery) -> None:
            seen[name].append(e.id)
            await asyncio.sleep(0.02)

        return handle

    await bus.subscribe("render-workers", "render.requests", worker("a"))
    await bus.subscribe("render-workers", "render.requests", worker("b"))
    ids = []
    for i in range(20):
        e = Event(type="render.requests", tenant="acme", project="jane", data={"i": i})
        ids.append(e.id)
        await bus.publish(e)
    await _wait_for(lambda: len(seen["a"]) + len(seen["b"]) == 20)
    await asyncio.sleep(0.3)
    assert sorted(seen["a"] + seen["b"]) == sorted(ids)  # each exactly once
    assert seen["a"] and seen["b"]  # and both workers took some


async def test_ensure_stream_is_idempotent(bus: EventBus) -> None:
    await bus.ensure_stream()
    await bus.ensure_stream()
    info = await bus.jetstream.stream_info(bus.settings.stream)
    assert info.config.subjects == [f"{bus.settings.subject_root}.>"]


async def test_unreachable_nats_names_the_address(settings) -> None:
    from loraforge.runtime.errors import Unavailable
    from loraforge.stack.binaries import free_port

    url = f"nats://127.0.0.1:{free_port()}"
    bad = settings.nats.model_copy(update={"url": url, "connect_timeout_s": 0.3})
    with pytest.raises(Unavailable) as info:
        await EventBus.connect(bad, name="t", attempts=2, backoff_s=0.01)
    assert url in str(info.value)
    assert "LORAFORGE_NATS__URL" in str(info.value)


async def test_dead_letter_hook_hears_each_given_up_event_and_a_failed_hook_keeps_it(
    bus: EventBus,
) -> None:
    """`on_dead_letter` is where a job worker records FAILED: if it cannot, the event must not
    be terminated (the verdict would be lost), but come back and be told again."""
    attempts: list[int] = []
    told: list[tuple[str, str]] = []

    async def bad_input(e: Event, d: Delivery) -> None:
        attempts.append(d.attempt)
        raise InvalidInput("dataset d1 does not exist")

    async def hook(e: Event, letter) -> None:
        told.append((e.id, letter.reason))
        if len(told) == 1:
            raise RuntimeError("job store unreachable (injected)")

    await bus.subscribe("ingest", "clips.ingested", bad_input, on_dead_letter=hook)
    event = _event()
    await bus.publish(event)
    await _wait_for(lambda: len(told) == 2)
    await asyncio.sleep(0.5)  # terminated after the hook succeeded: no third delivery
    assert attempts == [1, 2]
    assert told == [(event.id, "permanent_error")] * 2
    assert len(await read_dead_letters(bus, "ingest", timeout=0.5)) == 1  # same letter id
