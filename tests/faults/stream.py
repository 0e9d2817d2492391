"""What the event stream holds about a job: every stored event, counted by type."""

from __future__ import annotations

from collections import Counter
from typing import Any

import nats
from nats.js import api as js_api


def events_about(fs: Any, job_id: str) -> Counter:
    """Stored events that name the job (its id in the event id or in data.job_id), by type.
    A de-duplicated re-publish is stored once, so a count above one is a real duplicate."""

    async def read(bus, jobs, store) -> Counter:
        from loraforge.runtime.events import Event

        js = bus.jetstream
        info = await js.stream_info(bus.settings.stream)
        last = info.state.last_seq
        sub = await js.subscribe(
            f"{bus.settings.subject_root}.>",
            ordered_consumer=True,
            deliver_policy=js_api.DeliverPolicy.ALL,
            stream=bus.settings.stream,
        )
        found: Counter = Counter()
        root = f"{bus.settings.subject_root}."
        try:
            while True:
                try:
                    msg = await sub.next_msg(timeout=2)
                except nats.errors.TimeoutError:
                    break
                if not msg.subject.startswith(f"{root}dlq."):
                    try:
                        event = Event.model_validate_json(msg.data)
                    except ValueError:
                        event = None
                    if event is not None and (
                        job_id in event.id or event.data.get("job_id") == job_id
                    ):
                        found[event.type] += 1
                if msg.metadata.sequence.stream >= last:
                    break
        finally:
            await sub.unsubscribe()
        return found

    return fs.run(read)


def consumers(fs: Any) -> dict[str, str]:
    """Each durable consumer's backlog (a stage stuck after a fault names where it waits)."""

    async def read(bus, jobs, store) -> dict[str, str]:
        out = {}
        for info in await bus.jetstream.consumers_info(bus.settings.stream):
            out[info.name] = (
                f"pending={info.num_pending} ack_pending={info.num_ack_pending} "
                f"redelivered={info.num_redelivered} waiting={info.num_waiting}"
            )
        return out

    return fs.run(read)
