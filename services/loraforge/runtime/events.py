"""Pipeline events on NATS JetStream.

One stream holds every subject under the root (`lf.>`). Each service reads through durable
pull consumers; work queues (render/training requests) are one durable consumer shared by
all workers, so each request goes to exactly one of them.

Delivery rules, in one place:
- publish carries the event id as `Nats-Msg-Id`: a re-publish inside the duplicate window is
  stored once;
- a handler's event is acked only after the handler returned (its side effect is stored);
- a handler that raises is redelivered with back-off; after `max_deliver` attempts, or at once
  for a malformed event or a permanent error (bad input), the event goes to the dead-letter
  subject `<root>.dlq.<consumer>` with the reason, and is terminated;
- a consumer that dies mid-handler stops heartbeating (`in_progress`), so JetStream
  redelivers after `ack_wait`; if that was the last attempt, the max-deliveries advisory is
  turned into a dead letter as well;
- every dead letter of a well-formed event is handed to the subscriber's `on_dead_letter`
  (the job worker marks the job FAILED with the reason there), so no verdict is lost with
  the event. If that hook fails on the handler path the event is nak'ed instead of
  terminated: the next delivery (or the max-deliveries advisory) tries again.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import nats
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js.errors import BucketNotFoundError, NotFoundError
from nats.js.kv import KeyValue
from pydantic import BaseModel, Field, ValidationError

from loraforge.runtime.errors import InvalidInput, NotFound, Unavailable
from loraforge.runtime.retry import retry_startup
from loraforge.runtime.settings import NatsSettings

log = logging.getLogger(__name__)

# Errors that another attempt cannot fix: dead-letter at once instead of burning retries.
PERMANENT_ERRORS: tuple[type[BaseException], ...] = (InvalidInput, NotFound)


class Event(BaseModel):
    """The envelope of every pipeline event. `id` doubles as the de-duplication key."""

    id: str = Field(default_factory=lambda: f"{time.time_ns():x}-{secrets.token_hex(6)}")
    type: str
    time: datetime = Field(default_factory=lambda: datetime.now(UTC))
    tenant: str
    project: str
    data: dict[str, Any] = Field(default_factory=dict)


class Delivery(BaseModel):
    """What a handler knows about the delivery of the event it got."""

    subject: str
    stream_seq: int
    attempt: int


Handler = Callable[[Event, Delivery], Awaitable[None]]


class DeadLetter(BaseModel):
    consumer: str
    subject: str
    stream_seq: int
    deliveries: int
    reason: str
    error: str
    payload_b64: str
    time: datetime = Field(default_factory=lambda: datetime.now(UTC))

    def payload(self) -> bytes:
        return base64.b64decode(self.payload_b64)


# Told of each dead letter whose payload is a well-formed event (the event, the letter).
DeadLetterHook = Callable[[Event, DeadLetter], Awaitable[None]]


class EventBus:
    def __init__(self, nc: NatsClient, settings: NatsSettings):
        self._nc = nc
        self._js: JetStreamContext = nc.jetstream()
        self._settings = settings
        self._consumers: list[Consumer] = []
        self._background: list[asyncio.Task[None]] = []

    @classmethod
    async def connect(
        cls, settings: NatsSettings, name: str, *, attempts: int = 5, backoff_s: float = 0.5
    ) -> EventBus:
        async def _connect() -> NatsClient:
            try:
                # nats-py applies its reconnect policy to the first connect as well, which
                # with "reconnect forever" would hang start-up on a wrong address. Connect
                # once without it (our retry loop owns start-up), then turn it on.
                nc = await nats.connect(
                    settings.url,
                    name=name,
                    connect_timeout=settings.connect_timeout_s,
                    allow_reconnect=False,
                    max_reconnect_attempts=1,
                    reconnect_time_wait=0.2,
                    error_cb=_quiet_connect_errors,
                    drain_timeout=10,
                )
                nc.options["allow_reconnect"] = True
                nc.options["max_reconnect_attempts"] = -1
                nc.options["reconnect_time_wait"] = 1
                return nc
            except Exception as exc:  # nats raises several unrelated types for "no server"
                raise Unavailable(
                    f"cannot reach NATS at {settings.url} ({type(exc).__name__}: {exc}); "
                    "start it (`loraforge stack up`) or fix LORAFORGE_NATS__URL"
                ) from exc

        nc = await retry_startup(
            _connect, what=f"NATS at {settings.url}", attempts=attempts, backoff_s=backoff_s
        )
        bus = cls(nc, settings)
        await bus.ensure_stream()
        return bus

    @property
    def jetstream(self) -> JetStreamContext:
        return self._js

    @property
    def settings(self) -> NatsSettings:
        return self._settings

    def subject(self, event_type: str) -> str:
        return f"{self._settings.subject_root}.{event_type}"

    def dead_letter_subject(self, consumer: str) -> str:
        return self.subject(f"dlq.{consumer}")

    async def ensure_stream(self) -> None:
        """Create the stream, or bring an existing one to our config; safe on every start."""
        config = js_api.StreamConfig(
            name=self._settings.stream,
            subjects=[f"{self._settings.subject_root}.>"],
            retention=js_api.RetentionPolicy.LIMITS,
            storage=js_api.StorageType.FILE,
            duplicate_window=self._settings.duplicate_window_s,
            max_age=30 * 24 * 3600.0,
        )
        try:
            await self._js.stream_info(self._settings.stream)
        except NotFoundError:
            await self._js.add_stream(config)
            return
        await self._js.update_stream(config)

    async def publish(self, event: Event) -> bool:
        """Store the event; returns False when it was a duplicate of one already stored."""
        ack = await self._js.publish(
            self.subject(event.type),
            event.model_dump_json().encode(),
            stream=self._settings.stream,
            headers={"Nats-Msg-Id": event.id},
        )
        return not ack.duplicate

    async def subscribe(
        self,
        durable: str,
        event_type: str,
        handler: Handler,
        *,
        batch: int = 1,
        on_dead_letter: DeadLetterHook | None = None,
    ) -> Consumer:
        """Start a durable pull consumer running `handler` for `event_type` (wildcards ok);
        `on_dead_letter` hears of every event this consumer gives up on."""
        consumer = Consumer(
            self,
            durable,
            self.subject(event_type),
            handler,
            batch=batch,
            on_dead_letter=on_dead_letter,
        )
        await consumer.start()
        self._consumers.append(consumer)
        return consumer

    async def dead_letter(self, letter: DeadLetter) -> None:
        # The message id makes the handler path and the advisory path write one letter.
        await self._js.publish(
            self.dead_letter_subject(letter.consumer),
            letter.model_dump_json().encode(),
            stream=self._settings.stream,
            headers={
                "Nats-Msg-Id": f"dlq-{self._settings.stream}-{letter.stream_seq}-{letter.consumer}"
            },
        )

    def background(self, coro: Awaitable[None], name: str) -> asyncio.Task[None]:
        """Run a task that lives as long as the consumers (the job reaper): it is cancelled
        on the same shutdown path."""
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._background.append(task)
        return task

    async def stop_consumers(self) -> None:
        """Stop fetching; in-flight handlers finish (bounded by ack_wait)."""
        tasks, self._background = self._background, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        consumers, self._consumers = self._consumers, []
        await asyncio.gather(*(c.stop() for c in consumers))

    async def close(self) -> None:
        """Stop consumers, then drain the connection (flushes publishes still buffered)."""
        await self.stop_consumers()
        if not self._nc.is_closed:
            try:
                await self._nc.drain()
            except Exception:
                await self._nc.close()

    @property
    def is_connected(self) -> bool:
        return self._nc.is_connected


class Consumer:
    def __init__(
        self,
        bus: EventBus,
        durable: str,
        subject: str,
        handler: Handler,
        *,
        batch: int,
        on_dead_letter: DeadLetterHook | None = None,
    ):
        self._bus = bus
        self._on_dead_letter = on_dead_letter
        self.durable = durable
        self._subject = subject
        self._handler = handler
        self._batch = batch
        self._task: asyncio.Task[None] | None = None
        self._advisories: Any = None
        self._stopping = asyncio.Event()
        self.handled = 0

    @property
    def _settings(self) -> NatsSettings:
        return self._bus.settings

    async def start(self) -> None:
        js = self._bus.jetstream
        s = self._settings
        # No server-side `backoff`: it would replace ack_wait, which paces the heartbeat that
        # tells a slow handler from a dead one. Failed handlers get nak(delay) instead.
        config = js_api.ConsumerConfig(
            durable_name=self.durable,
            filter_subject=self._subject,
            ack_policy=js_api.AckPolicy.EXPLICIT,
            deliver_policy=js_api.DeliverPolicy.ALL,
            max_deliver=s.max_deliver,
            ack_wait=s.ack_wait_s,
            max_ack_pending=1000,
        )
        # add_consumer with the same config is a no-op; with a changed config it updates.
        await js.add_consumer(s.stream, config)
        self._sub = await js.pull_subscribe_bind(durable=self.durable, stream=s.stream)
        advisory = f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{s.stream}.{self.durable}"
        self._advisories = await self._bus._nc.subscribe(advisory, cb=self._on_max_deliveries)
        self._task = asyncio.create_task(self._run(), name=f"consumer:{self.durable}")

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, timeout=self._settings.ack_wait_s)
            except (TimeoutError, asyncio.CancelledError):
                self._task.cancel()
        for sub in (self._advisories, getattr(self, "_sub", None)):
            if sub is None:
                continue
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                msgs = await self._sub.fetch(self._batch, timeout=0.5)
            except nats.errors.TimeoutError:
                continue
            except (nats.errors.ConnectionClosedError, nats.errors.ConnectionDrainingError):
                return
            except Exception:
                log.exception("fetch failed on consumer %s", self.durable)
                await asyncio.sleep(0.5)
                continue
            for msg in msgs:
                try:
                    await self._dispatch(msg)
                except Exception:
                    # Left without a verdict, the message is redelivered after ack_wait; the
                    # consumer must live on to take it.
                    log.exception("dispatch failed on consumer %s", self.durable)

    async def _dispatch(self, msg: Msg) -> None:
        meta = msg.metadata
        delivery = Delivery(
            subject=msg.subject, stream_seq=meta.sequence.stream, attempt=meta.num_delivered
        )
        try:
            event = Event.model_validate_json(msg.data)
        except ValidationError as exc:
            await self._to_dead_letter(msg, "malformed", _first_line(exc))
            return
        heartbeat = asyncio.create_task(self._heartbeat(msg))
        try:
            await self._handler(event, delivery)
        except PERMANENT_ERRORS as exc:
            await self._to_dead_letter(msg, "permanent_error", f"{type(exc).__name__}: {exc}")
        except Exception as exc:
            if delivery.attempt >= self._settings.max_deliver:
                await self._to_dead_letter(msg, "max_deliveries", f"{type(exc).__name__}: {exc}")
            else:
                delay = _backoff(self._settings.backoff_s, delivery.attempt)
                log.warning(
                    "handler failed on %s (attempt %d, retry in %.1fs): %s",
                    msg.subject,
                    delivery.attempt,
                    delay,
                    exc,
                )
                await msg.nak(delay=delay)
        else:
            # Wait for the server's confirmation: an ack lost on the wire means redelivery,
            # which idempotent handlers absorb, but we must not count it as done.
            await msg.ack_sync()
            self.handled += 1
        finally:
            heartbeat.cancel()

    async def _heartbeat(self, msg: Msg) -> None:
        interval = max(self._settings.ack_wait_s / 3, 0.2)
        while True:
            await asyncio.sleep(interval)
            try:
                await msg.in_progress()
            except Exception:
                return

    async def _to_dead_letter(self, msg: Msg, reason: str, error: str) -> None:
        meta = msg.metadata
        log.error(
            "dead-lettering %s seq=%d on %s: %s: %s",
            msg.subject,
            meta.sequence.stream,
            self.durable,
            reason,
            error,
        )
        letter = DeadLetter(
            consumer=self.durable,
            subject=msg.subject,
            stream_seq=meta.sequence.stream,
            deliveries=meta.num_delivered,
            reason=reason,
            error=error,
            payload_b64=base64.b64encode(msg.data).decode(),
        )
        await self._bus.dead_letter(letter)
        if not await self._tell_dead_letter(letter):
            # The verdict (e.g. the job's FAILED) is not stored: keep the event so that the
            # next delivery, or the max-deliveries advisory after the last, records it.
            await msg.nak(delay=_backoff(self._settings.backoff_s, meta.num_delivered))
            return
        await msg.term()

    async def _tell_dead_letter(self, letter: DeadLetter) -> bool:
        """Run `on_dead_letter` for a well-formed event; False when the hook failed."""
        if self._on_dead_letter is None:
            return True
        try:
            event = Event.model_validate_json(letter.payload())
        except ValidationError:
            return True  # malformed: there is no job or subscriber state to tell
        try:
            await self._on_dead_letter(event, letter)
        except Exception:
            log.exception(
                "on_dead_letter failed for %s seq=%d on %s",
                letter.subject,
                letter.stream_seq,
                self.durable,
            )
            return False
        return True

    async def _on_max_deliveries(self, advisory: Msg) -> None:
        """A message ran out of deliveries without a handler verdict (a crashed worker)."""
        try:
            info = json.loads(advisory.data)
            seq = int(info["stream_seq"])
            raw = await self._bus.jetstream.get_msg(self._settings.stream, seq)
            letter = DeadLetter(
                consumer=self.durable,
                subject=raw.subject or "",
                stream_seq=seq,
                deliveries=int(info.get("deliveries", self._settings.max_deliver)),
                reason="max_deliveries",
                error="no acknowledgement after the last delivery (worker crashed or hung)",
                payload_b64=base64.b64encode(raw.data or b"").decode(),
            )
            await self._bus.dead_letter(letter)
            # Every live replica of the consumer gets the advisory: the hook must be
            # idempotent (the job worker's FAILED is a compare-and-set on a non-terminal job).
            await self._tell_dead_letter(letter)
        except Exception:
            log.exception("could not dead-letter after max deliveries advisory")


async def _quiet_connect_errors(exc: Exception) -> None:
    # nats-py logs a full traceback per failed socket; our start-up retry logs one line.
    log.debug("nats connection error: %s", exc)


def _backoff(steps: tuple[float, ...], attempt: int) -> float:
    if not steps:
        return 0.0
    return steps[min(attempt - 1, len(steps) - 1)]


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


async def read_dead_letters(bus: EventBus, consumer: str, timeout: float = 2.0) -> list[DeadLetter]:
    """Every dead letter of `consumer` stored so far (operators' inspection, tests)."""
    js = bus.jetstream
    sub = await js.subscribe(
        bus.dead_letter_subject(consumer),
        ordered_consumer=True,
        deliver_policy=js_api.DeliverPolicy.ALL,
        stream=bus.settings.stream,
    )
    letters: list[DeadLetter] = []
    try:
        pending = await js.stream_info(
            bus.settings.stream, subjects_filter=bus.dead_letter_subject(consumer)
        )
        expected = sum((pending.state.subjects or {}).values())
        deadline = time.monotonic() + timeout
        while len(letters) < expected and time.monotonic() < deadline:
            try:
                msg = await sub.next_msg(timeout=max(0.05, deadline - time.monotonic()))
            except nats.errors.TimeoutError:
                break
            letters.append(DeadLetter.model_validate_json(msg.data))
    finally:
        await sub.unsubscribe()
    return letters


__all__ = [
    "Consumer",
    "DeadLetter",
    "DeadLetterHook",
    "Delivery",
    "Event",
    "EventBus",
    "Handler",
    "KeyValueEntry",
    "current_entries",
    "read_dead_letters",
]


async def open_key_value(js: JetStreamContext, bucket: str, *, history: int = 1) -> KeyValue:
    """A JetStream key-value bucket, created on first use (file storage). Many processes may
    open it at once: one that loses the race to create it binds to the winner's."""
    try:
        return await js.key_value(bucket)
    except BucketNotFoundError:
        try:
            return await js.create_key_value(
                js_api.KeyValueConfig(
                    bucket=bucket, history=history, storage=js_api.StorageType.FILE
                )
            )
        except Exception:
            return await js.key_value(bucket)


# A snapshot's consumer is deleted when the read ends; this is how long the server keeps one
# whose reader died before it could.
SNAPSHOT_CONSUMER_IDLE_S = 30.0
SNAPSHOT_BATCH = 256
SNAPSHOT_EMPTY_FETCHES = 5  # 2 s fetches that bring nothing while entries are pending: give up


@dataclass(frozen=True)
class KeyValueEntry:
    key: str
    value: bytes  # empty when read with meta_only
    revision: int


async def current_entries(
    kv: KeyValue, pattern: str, *, meta_only: bool = False
) -> list[KeyValueEntry]:
    """The live (not deleted) entries whose keys match `pattern`, each key once with its
    newest value (a key written while we read comes with its new revision).

    Why not `kv.watch()`, as nats-py's own `keys()` does:
    - its watcher's consumer is not deleted when the watch stops. The server keeps it for the
      inactive threshold (5 min), and the nats-server we ship refused new consumers on the
      stream once 1000 were held: a gateway listing jobs, projects or keys a few times a
      second answered "maximum consumers limit reached" within minutes;
    - it marks the end of the current values by comparing the consumer's pending count with
      what the client has received, which races with the push delivery: under load a listing
      came back empty while its project existed.
    A pull consumer holds nothing back until asked, so its pending count at creation is the
    snapshot's size; it is deleted as soon as the read is over."""
    js, stream, prefix = kv._js, kv._stream, kv._pre  # nats-py keeps these private
    info = await js.add_consumer(
        stream,
        js_api.ConsumerConfig(
            filter_subject=f"{prefix}{pattern}",
            deliver_policy=js_api.DeliverPolicy.LAST_PER_SUBJECT,
            ack_policy=js_api.AckPolicy.NONE,
            headers_only=meta_only,
            inactive_threshold=SNAPSHOT_CONSUMER_IDLE_S,
            mem_storage=True,
            num_replicas=1,
        ),
    )
    name = info.name or info.config.name or ""
    found: dict[str, KeyValueEntry] = {}
    try:
        left = info.num_pending or 0
        if left:
            sub = await js.pull_subscribe_bind(consumer=name, stream=stream)
            empty_fetches = 0
            try:
                while left > 0:
                    try:
                        msgs = await sub.fetch(min(left, SNAPSHOT_BATCH), timeout=2)
                    except TimeoutError:  # nats-py raises asyncio's or its own subclass
                        # what was pending went away meanwhile (a key purged, old revisions
                        # dropped); the consumer knows what is left
                        left = (await sub.consumer_info()).num_pending or 0
                        empty_fetches += 1
                        if left and empty_fetches >= SNAPSHOT_EMPTY_FETCHES:
                            raise Unavailable(
                                f"NATS holds {left} entries of {stream} for {pattern!r} but "
                                f"delivered none in {2 * empty_fetches} s; check the "
                                "server's health and retry"
                            ) from None
                        continue
                    empty_fetches = 0
                    for msg in msgs:
                        key = msg.subject[len(prefix) :]
                        if _deleted(msg):
                            found.pop(key, None)
                        else:
                            found[key] = KeyValueEntry(
                                key, b"" if meta_only else msg.data, msg.metadata.sequence.stream
                            )
                        left = msg.metadata.num_pending
            finally:
                await sub.unsubscribe()
    finally:
        with contextlib.suppress(Exception):  # it expires on its own if this fails
            await js.delete_consumer(stream, name)
    return list(found.values())


def _deleted(msg: Msg) -> bool:
    headers = msg.headers or {}
    # KV-Operation: DEL / PURGE from clients; Nats-Marker-Reason from the server (2.11+) for
    # entries that expired or were removed.
    return headers.get("KV-Operation") in ("DEL", "PURGE") or "Nats-Marker-Reason" in headers
