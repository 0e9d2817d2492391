"""Webhook delivery: job events from the bus -> signed POSTs to registered URLs.

Two steps, so that no receiver can hold up anything but its own calls:

1. Outbox. One durable consumer (`gateway-webhooks`, shared by every gateway replica) turns
   each job event into one call per matching hook and appends it to that hook's outbox, a
   record in the gateway's KV bucket (`outbox.<tenant>.<project>.<hook>`), then acks the
   event. It never waits for a receiver; a gateway that dies leaves the outbox to another.
2. Delivery. Each hook with a non-empty outbox has one delivery worker in the replica that
   claimed it (`whclaim.` record with a lease, renewed while it works; an expired lease is
   taken over, so a dead replica's hooks move on). The worker posts the oldest call first
   (a hook's calls arrive in order) and removes it once answered 2xx.

Isolation and back-pressure:
- per-tenant concurrency: at most `webhook_concurrency_per_tenant` calls of one tenant are in
  flight at once, across its hooks (a tenant with many slow receivers waits on itself);
  other tenants have their own allowance, so a slow receiver never stalls another tenant.
- circuit breaker per hook: a call is retried with exponential back-off on network errors,
  429 and 5xx (tenacity, `webhook_attempts`); after `webhook_breaker_failures` consecutive
  calls failed that way the hook opens: nothing is sent to it for a cool-down
  (`webhook_cooldown_s`, doubling per consecutive opening up to `MAX_COOLDOWN_S`), its calls
  are held in the outbox, then one call probes it (half-open) and success closes it.
- bounded backlog: an outbox holds at most `webhook_backlog` calls. Appending to a full one
  drops the oldest progress call (a later progress or final call says more); only when every
  held call is final is the oldest final call dropped (a receiver down for days, with more
  finished jobs than the backlog). Drops are counted in the record (`dropped`) and logged.
- a call refused for good (4xx, a redirect, a target the egress guard refuses now) is
  dropped and logged: retrying cannot help.

Delivery is at least once (a replica that dies between the 2xx and the outbox update sends
that call again): receivers de-duplicate on `X-Loraforge-Delivery`.

Signature: `X-Loraforge-Signature: sha256=<hex>` where hex = HMAC-SHA256(secret,
f"{timestamp}." + body) and `X-Loraforge-Timestamp` carries the Unix seconds; receivers should
refuse timestamps older than a few minutes (replays). A terminal job state sends one call with
`"final": true`, after which a per-job registration is removed.

Egress: every attempt resolves the target again through the egress guard
(loraforge.runtime.egress) and connects to the checked address, because DNS may have changed
since registration (which checks too); redirects are never followed (a 3xx is a failed call).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import secrets
import time
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

import httpx
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential

from loraforge.gateway.models import JOB_KINDS
from loraforge.gateway.sse import api_job
from loraforge.gateway.state import GatewayState
from loraforge.runtime.egress import EgressPolicy
from loraforge.runtime.errors import LoraforgeError
from loraforge.runtime.events import Delivery, Event, EventBus
from loraforge.runtime.job_service import job_event_parts
from loraforge.runtime.jobs import JobStore

log = logging.getLogger(__name__)

DURABLE = "gateway-webhooks"
TERMINAL = {"succeeded", "failed", "cancelled"}
SIGNATURE_HEADER = "X-Loraforge-Signature"
TIMESTAMP_HEADER = "X-Loraforge-Timestamp"


def sign(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(
    secret: str, timestamp: str, body: bytes, signature: str, tolerance_s: float = 300
) -> bool:
    """What a receiver does (and the tests do)."""
    if abs(time.time() - float(timestamp)) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


class _Retryable(Exception):
    pass


class _Refused(Exception):
    """The call can never succeed as it is (4xx, redirect, egress refusal): dropped."""


# Upper bound of a hook's cool-down however often it opened in a row.
MAX_COOLDOWN_S = 600.0
# A delivery worker's claim on an outbox lasts this long unless renewed (a dead replica's
# outboxes are taken over after at most this; a stopping one releases them at once); renewed
# between calls once half of it is gone. Longer than one call can take with the defaults
# (5 attempts x 5 s timeout + 7.5 s of back-off = 32.5 s), so a live worker never loses it
# mid-call.
CLAIM_TTL_S = 120.0
# How often each replica looks for outboxes nobody is delivering (another replica died,
# or the events came in while this one was starting).
SCAN_EVERY_S = 2.0


def append_call(
    record: dict[str, Any] | None, call: dict[str, Any], backlog: int
) -> dict[str, Any]:
    """The outbox `record` with `call` appended, under the backlog policy (see the module
    docstring): full -> drop the oldest progress call, else the oldest final one. A call
    already held (same event id: a redelivered event) is not added twice."""
    items: list[dict[str, Any]] = list((record or {}).get("items", []))
    dropped = int((record or {}).get("dropped", 0))
    if any(i["event_id"] == call["event_id"] for i in items):
        return {"items": items, "dropped": dropped}
    items.append(call)
    while len(items) > backlog:
        # Never the head while it may be in flight: it is the oldest, and drop order is by age
        # anyway; a dropped head that was in flight is simply not removed twice.
        victim = next((i for i in items if not i["final"]), None) or items[0]
        items.remove(victim)
        dropped += 1
        log.warning(
            "webhook outbox full (%d calls): dropped %s call of event %s",
            backlog,
            "a final" if victim["final"] else "a progress",
            victim["event_id"],
        )
    return {"items": items, "dropped": dropped}


def remove_call(record: dict[str, Any] | None, event_id: str) -> dict[str, Any] | None:
    """The record without the call of `event_id`; None (delete) once nothing is left."""
    if record is None:
        return None
    items = [i for i in record.get("items", []) if i["event_id"] != event_id]
    return {**record, "items": items} if items else None


@dataclass
class Breaker:
    """A hook's circuit breaker (in the replica delivering it)."""

    failures_to_open: int
    cooldown_s: float
    failures: int = 0  # consecutive failed calls
    openings: int = 0  # consecutive openings (the cool-down doubles with each)
    open_until: float = 0.0  # monotonic; 0 = closed

    def is_open(self, now: float) -> bool:
        return now < self.open_until

    def success(self) -> None:
        self.failures = 0
        self.openings = 0
        self.open_until = 0.0

    def failure(self, now: float) -> float:
        """Count a failed call; the cool-down to wait when this opens the breaker, else 0.
        After an opening, the first call is a probe (half-open): its failure opens the
        breaker again at once, for twice as long."""
        self.failures += 1
        if self.failures < self.failures_to_open and self.openings == 0:
            return 0.0
        self.failures = 0
        self.openings += 1
        wait = min(MAX_COOLDOWN_S, self.cooldown_s * 2.0 ** (self.openings - 1))
        self.open_until = now + wait
        return wait


class WebhookDispatcher:
    def __init__(
        self,
        state: GatewayState,
        jobs: JobStore,
        *,
        timeout_s: float = 5.0,
        attempts: int = 5,
        backoff_s: float = 0.5,
        client: httpx.AsyncClient | None = None,
        egress: EgressPolicy | None = None,
        concurrency_per_tenant: int = 4,
        breaker_failures: int = 3,
        cooldown_s: float = 30.0,
        backlog: int = 100,
    ):
        self._state = state
        self._egress = egress or EgressPolicy()  # no allow-list: public addresses only
        self._jobs = jobs
        self._attempts = attempts
        self._backoff = backoff_s
        self._client = client or httpx.AsyncClient(timeout=timeout_s, follow_redirects=False)
        # https targets connect to the checked IP, so the pool's key is the IP: one client per
        # host name keeps a TLS connection (verified for one name) from carrying another
        # name's calls to the same address (shared hosting, CDNs).
        self._timeout_s = timeout_s
        self._tls_clients: dict[str, httpx.AsyncClient] = {}
        self._per_tenant = concurrency_per_tenant
        self._tenant_slots: dict[str, asyncio.Semaphore] = {}
        self._breaker_failures = breaker_failures
        self._cooldown_s = cooldown_s
        self.backlog = backlog
        self.breakers: dict[str, Breaker] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}  # outbox key -> its delivery worker
        self._owner = secrets.token_hex(8)  # this replica, in claims
        self._scanner: asyncio.Task[None] | None = None
        self._closing = False
        self.delivered = 0
        self.failed = 0
        self.dropped = 0

    async def start(self, bus: EventBus) -> None:
        await bus.subscribe(DURABLE, ">", self.handle)
        self._scanner = asyncio.create_task(self._scan(), name="webhook-outbox-scan")

    async def close(self) -> None:
        self._closing = True
        tasks = list(self._workers.values()) + ([self._scanner] if self._scanner else [])
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=10)
        for key in list(self._workers):
            await self._release(key)
        await self._client.aclose()
        for c in self._tls_clients.values():
            await c.aclose()

    # -- 1. events -> outboxes --------------------------------------------------------------

    async def handle(self, event: Event, delivery: Delivery) -> None:
        kind, what = job_event_parts(event.type)
        if kind not in JOB_KINDS or not (what == "progress" or what in TERMINAL):
            return
        job_id = event.data.get("job_id")
        if not isinstance(job_id, str):
            return
        hooks = await self._state.webhooks(event.tenant, event.project)
        hooks = [
            h
            for h in hooks
            if h.get("job_id") in (None, job_id)
            and datetime.fromisoformat(h["created_at"]) <= event.time
        ]
        if not hooks:
            return
        final = what in TERMINAL
        payload: dict[str, Any] = {
            "event_id": event.id,
            "type": event.type,
            "time": event.time.isoformat(),
            "project": event.project,
            "job_id": job_id,
            "kind": kind,
            "final": final,
            "state": "RUNNING" if not final else what.upper(),
            "progress": event.data.get("progress", 1.0 if what == "succeeded" else None),
            "message": event.data.get("message", ""),
        }
        if final:
            try:
                job = await self._jobs.get(event.tenant, event.project, job_id)
                payload["job"] = api_job(job).model_dump(mode="json")
                payload["state"] = job.state.value
                payload["progress"] = job.progress
            except LoraforgeError:
                pass
        for hook in hooks:
            key = f"outbox.{event.tenant}.{event.project}.{hook['id']}"
            call = {
                "event_id": event.id,
                "final": final,
                "payload": {**payload, "webhook_id": hook["id"]},
            }
            drops = [0]

            # defaults bind this iteration's call and counter (`change` calls it before the
            # loop moves on, possibly several times when another writer got in between)
            def append(
                record: dict[str, Any] | None,
                c: dict[str, Any] = call,
                d: list[int] = drops,
            ) -> dict[str, Any]:
                new = append_call(record, c, self.backlog)
                d[0] = new["dropped"] - int((record or {}).get("dropped", 0))
                return new

            await self._state.change(key, append)
            self.dropped += drops[0]
            self._ensure_worker(key)

    # -- 2. outboxes -> receivers -----------------------------------------------------------

    def _ensure_worker(self, key: str) -> None:
        if self._closing:
            return
        task = self._workers.get(key)
        if task is None or task.done():
            self._workers[key] = asyncio.create_task(self._worker(key), name=f"webhook:{key}")

    async def _scan(self) -> None:
        while True:
            try:
                for key in await self._state.outbox_keys():
                    self._ensure_worker(key)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("webhook outbox scan failed: %s", exc)
            await asyncio.sleep(SCAN_EVERY_S)

    async def _claim(self, key: str) -> bool:
        """Take or renew this replica's lease on the outbox `key`."""
        now = time.time()

        def take(record: dict[str, Any] | None) -> dict[str, Any] | None:
            if record and record["owner"] != self._owner and record["until"] > now:
                raise _Taken
            return {"owner": self._owner, "until": now + CLAIM_TTL_S}

        try:
            await self._state.change("whclaim." + key.removeprefix("outbox."), take)
        except _Taken:
            return False
        return True

    async def _release(self, key: str) -> None:
        def drop(record: dict[str, Any] | None) -> dict[str, Any] | None:
            if record and record["owner"] != self._owner:
                raise _Taken
            return None

        try:
            await self._state.change("whclaim." + key.removeprefix("outbox."), drop)
        except (_Taken, LoraforgeError):
            pass
        except Exception as exc:
            log.debug("webhook claim of %s not released: %s", key, exc)

    async def _worker(self, key: str) -> None:
        _, tenant, project, hid = key.split(".", 3)
        breaker = self.breakers.setdefault(key, Breaker(self._breaker_failures, self._cooldown_s))
        if not await self._claim(key):
            return  # another replica delivers it
        claimed_at = time.monotonic()
        try:
            while True:
                if time.monotonic() - claimed_at > CLAIM_TTL_S / 2:
                    if not await self._claim(key):
                        return
                    claimed_at = time.monotonic()
                wait = breaker.open_until - time.monotonic()
                if wait > 0:  # open: hold the calls; the lease is renewed meanwhile
                    await asyncio.sleep(min(wait, CLAIM_TTL_S / 4))
                    continue
                record = await self._state.get(key)
                if not record or not record.get("items"):
                    return
                call = record["items"][0]
                hook = await self._hook(tenant, project, hid)
                if hook is None:  # unregistered meanwhile
                    await self._state.change(key, lambda r: None)
                    return
                outcome = await self._send({**hook, "_tenant": tenant}, call["payload"])
                if outcome == "retry":
                    self.failed += 1
                    opened = breaker.failure(time.monotonic())
                    if opened:
                        log.warning(
                            "webhook %s open after %d failed calls: holding %d calls for %.0f s",
                            hid,
                            breaker.failures_to_open,
                            len(record["items"]),
                            opened,
                        )
                    continue  # the same call again (after the cool-down when open)
                if outcome == "ok":
                    breaker.success()
                else:  # refused for good: dropped, the breaker is about reachability
                    self.failed += 1
                await self._state.change(key, partial(remove_call, event_id=call["event_id"]))
                if call["final"] and hook.get("job_id"):
                    with contextlib.suppress(LoraforgeError):
                        await self._state.delete_webhook(tenant, project, hid)
                    return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("webhook delivery of %s stopped: %s", key, exc)
        finally:
            if not self._closing:
                await self._release(key)

    async def _hook(self, tenant: str, project: str, hid: str) -> dict[str, Any] | None:
        try:
            return await self._state.webhook(tenant, project, hid)
        except LoraforgeError:
            return None

    def _slots(self, tenant: str) -> asyncio.Semaphore:
        if tenant not in self._tenant_slots:
            self._tenant_slots[tenant] = asyncio.Semaphore(self._per_tenant)
        return self._tenant_slots[tenant]

    async def _deliver(self, hook: dict[str, Any], payload: dict[str, Any]) -> bool:
        """One call with its retries; True when the receiver took it."""
        return await self._send(hook, payload) == "ok"

    async def _send(self, hook: dict[str, Any], payload: dict[str, Any]) -> str:
        """ok | retry (network, 429, 5xx after every attempt) | refused (never deliverable)."""
        body = json.dumps(payload, separators=(",", ":"), default=str).encode()
        tenant = hook.get("_tenant") or hook["id"]

        async def attempt() -> None:
            ts = str(int(time.time()))
            try:
                target = await self._egress.aresolve(hook["url"])
            except Exception as exc:
                raise _Refused(f"target refused: {exc}") from exc
            try:
                client = self._client
                if "sni_hostname" in target.extensions:
                    name = target.extensions["sni_hostname"]
                    if name not in self._tls_clients:
                        self._tls_clients[name] = httpx.AsyncClient(
                            timeout=self._timeout_s, follow_redirects=False
                        )
                    client = self._tls_clients[name]
                async with self._slots(tenant):
                    resp = await client.post(
                        target.url,
                        content=body,
                        extensions=target.extensions,
                        headers={
                            **target.headers,
                            "Content-Type": "application/json",
                            SIGNATURE_HEADER: sign(hook["secret"], ts, body),
                            TIMESTAMP_HEADER: ts,
                            "X-Loraforge-Event": payload["type"],
                            "X-Loraforge-Delivery": f"{payload['event_id']}:{hook['id']}",
                            "User-Agent": "loraforge-webhooks/1",
                        },
                    )
            except httpx.HTTPError as exc:
                raise _Retryable(f"{type(exc).__name__}: {exc}") from exc
            if resp.status_code == 429 or resp.status_code >= 500:
                raise _Retryable(f"HTTP {resp.status_code}")
            if resp.status_code >= 400:
                raise _Refused(f"HTTP {resp.status_code}")
            if resp.status_code >= 300:
                raise _Refused(
                    f"HTTP {resp.status_code} redirect, not followed: register the final URL"
                )

        try:
            async for attempt_ctx in AsyncRetrying(
                stop=stop_after_attempt(self._attempts),
                wait=wait_exponential(multiplier=self._backoff, max=30),
                retry=retry_if_exception(lambda e: isinstance(e, _Retryable)),
                reraise=True,
            ):
                with attempt_ctx:
                    await attempt()
        except _Retryable as exc:
            log.warning(
                "webhook %s to %s failed on %s: %s", hook["id"], hook["url"], payload["type"], exc
            )
            return "retry"
        except Exception as exc:
            log.warning(
                "webhook %s to %s gave up on %s: %s", hook["id"], hook["url"], payload["type"], exc
            )
            return "refused"
        self.delivered += 1
        return "ok"


class _Taken(Exception):
    """Another replica holds the outbox's lease."""
