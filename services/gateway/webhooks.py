"""Webhook delivery: job events from the bus -> signed POSTs to registered URLs.

One durable consumer (`gateway-webhooks`) shared by every gateway replica, so each event is
delivered by one of them. Each webhook has its own queue and worker, so a slow receiver never
holds up others and its calls arrive in order; the handler waits until every call of the event
was made (or gave up after its retries) before the event is acked, so a gateway that dies
mid-delivery leaves the event to another replica: delivery is at least once (receivers
de-duplicate on `X-Loraforge-Delivery`).

Signature: `X-Loraforge-Signature: sha256=<hex>` where hex = HMAC-SHA256(secret,
f"{timestamp}." + body) and `X-Loraforge-Timestamp` carries the Unix seconds; receivers should
refuse timestamps older than a few minutes (replays). Delivery is retried with exponential
back-off (tenacity) on network errors, 429 and 5xx; a terminal job state sends one more call
with `"final": true`, after which a per-job registration is removed.

Egress: every attempt resolves the target again through the egress guard
(loraforge.runtime.egress) and connects to the checked address, because DNS may have changed
since registration (which checks too); redirects are never followed (a 3xx is a failed call).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from datetime import datetime
from typing import Any

import httpx
from loraforge.gateway.models import JOB_KINDS
from loraforge.gateway.sse import api_job
from loraforge.gateway.state import GatewayState
from loraforge.runtime.errors import LoraforgeError
from loraforge.runtime.egress import EgressPolicy
from loraforge.runtime.events import Delivery, Event, EventBus
from loraforge.runtime.job_service import job_event_parts
from loraforge.runtime.jobs import JobStore
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential

log = logging.getLogger(__name__)

DURABLE = "gateway-webhooks"
TERMINAL = {"succeeded", "failed", "cancelled"}
SIGNATURE_HEADER = "X-Loraforge-Signature"
TIMESTAMP_HEADER = "X-Loraforge-Timestamp"


def sign(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(secret: str, timestamp: str, body: bytes, signature: str, tolerance_s: float = 300) -> bool:
    """What a receiver does (and the tests do)."""
    if abs(time.time() - float(timestamp)) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


class _Retryable(Exception):
    pass


class WebhookDispatcher:
    def __init__(self, state: GatewayState, jobs: JobStore, *, timeout_s: float = 5.0,
                 attempts: int = 5, backoff_s: float = 0.5, client: httpx.AsyncClient | None = None,
                 egress: EgressPolicy | None = None):
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
        self._queues: dict[str, asyncio.Queue[tuple[dict[str, Any], dict[str, Any]] | None]] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}
        self.delivered = 0
        self.failed = 0

    async def start(self, bus: EventBus) -> None:
        await bus.subscribe(DURABLE, ">", self.handle)

    async def close(self) -> None:
        for q in self._queues.values():
            q.put_nowait(None)
        if self._workers:
            await asyncio.wait(list(self._workers.values()), timeout=10)
        await self._client.aclose()
        for c in self._tls_clients.values():
            await c.aclose()

    async def handle(self, event: Event, delivery: Delivery) -> None:
        kind, what = job_event_parts(event.type)
        if kind not in JOB_KINDS or not (what == "progress" or what in TERMINAL):
            return
        job_id = event.data.get("job_id")
        if not isinstance(job_id, str):
            return
        hooks = await self._state.webhooks(event.tenant, event.project)
        hooks = [h for h in hooks if h.get("job_id") in (None, job_id)
                 and datetime.fromisoformat(h["created_at"]) <= event.time]
        if not hooks:
            return
        final = what in TERMINAL
        payload: dict[str, Any] = {
            "event_id": event.id, "type": event.type, "time": event.time.isoformat(),
            "project": event.project, "job_id": job_id, "kind": kind, "final": final,
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
        done = [self._enqueue(hook, {**payload, "webhook_id": hook["id"]}, event.tenant, event.project)
                for hook in hooks]
        await asyncio.gather(*done)

    def _enqueue(self, hook: dict[str, Any], payload: dict[str, Any], tenant: str,
                 project: str) -> asyncio.Future[bool]:
        hid = hook["id"]
        if hid not in self._queues:
            self._queues[hid] = asyncio.Queue()
            self._workers[hid] = asyncio.create_task(self._worker(hid), name=f"webhook:{hid}")
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._queues[hid].put_nowait(({**hook, "_tenant": tenant, "_project": project, "_done": done},
                                      payload))
        return done

    async def _worker(self, hid: str) -> None:
        q = self._queues[hid]
        while True:
            item = await q.get()
            if item is None:
                return
            hook, payload = item
            done = hook.pop("_done")
            ok = False
            try:
                ok = await self._deliver(hook, payload)
                if payload["final"] and hook.get("job_id"):
                    try:
                        await self._state.delete_webhook(hook["_tenant"], hook["_project"], hid)
                    except LoraforgeError:
                        pass
                if not ok:
                    self.failed += 1
            finally:
                if not done.done():
                    done.set_result(ok)

    async def _deliver(self, hook: dict[str, Any], payload: dict[str, Any]) -> bool:
        body = json.dumps(payload, separators=(",", ":"), default=str).encode()

        async def attempt() -> None:
            ts = str(int(time.time()))
            # Refused targets are not retried: the next event checks again.
            target = await self._egress.aresolve(hook["url"])
            try:
                client = self._client
                if "sni_hostname" in target.extensions:
                    name = target.extensions["sni_hostname"]
                    if name not in self._tls_clients:
                        self._tls_clients[name] = httpx.AsyncClient(timeout=self._timeout_s,
                                                                    follow_redirects=False)
                    client = self._tls_clients[name]
                resp = await client.post(target.url, content=body, extensions=target.extensions, headers={
                    **target.headers,
                    "Content-Type": "application/json",
                    SIGNATURE_HEADER: sign(hook["secret"], ts, body),
                    TIMESTAMP_HEADER: ts,
                    "X-Loraforge-Event": payload["type"],
                    "X-Loraforge-Delivery": f"{payload['event_id']}:{hook['id']}",
                    "User-Agent": "loraforge-webhooks/1",
                })
            except httpx.HTTPError as exc:
                raise _Retryable(f"{type(exc).__name__}: {exc}") from exc
            if resp.status_code == 429 or resp.status_code >= 500:
                raise _Retryable(f"HTTP {resp.status_code}")
            if resp.status_code >= 400:
                raise RuntimeError(f"HTTP {resp.status_code}")
            if resp.status_code >= 300:
                raise RuntimeError(f"HTTP {resp.status_code} redirect, not followed: register the final URL")

        try:
            async for attempt_ctx in AsyncRetrying(
                stop=stop_after_attempt(self._attempts),
                wait=wait_exponential(multiplier=self._backoff, max=30),
                retry=retry_if_exception(lambda e: isinstance(e, _Retryable)),
                reraise=True,
            ):
                with attempt_ctx:
                    await attempt()
        except Exception as exc:  # noqa: BLE001 - log and move on; the job is unaffected
            log.warning("webhook %s to %s gave up on %s: %s", hook["id"], hook["url"],
                        payload["type"], exc)
            return False
        self.delivered += 1
        return True
