"""Issue 19's attacks on the gateway, each a regression test against the real app (uvicorn,
real NATS and S3): keys, review tokens, presigned upload sizes, SSE streams per tenant."""

from __future__ import annotations

import asyncio
import hashlib

import httpx

from loraforge.gateway import admin
from loraforge.gateway.auth import hash_key
from loraforge.gateway.config import GatewayConfig
from loraforge.runtime.storage import Bucket

from .conftest import TEST_CONFIG
from .seed import CLIPS, DATASET_ID, seed_dataset
from .test_gateway_api import _problem


async def test_a_leaked_key_cannot_leave_live_keys_behind(gateway, settings) -> None:
    """Attack: a leaked key mints keys, then the owner revokes it; the minted keys must die
    with it. Keys are listed (never their secrets) and revocable by id."""
    async with await gateway.client("acme") as root, await gateway.client() as anon:
        root_id = (await gateway.key("acme")).split("_")[1]
        leaked = (await root.post("/v1/keys", json={"name": "ci"})).json()
        assert leaked["minted_by"] == root_id
        as_leaked = {"X-API-Key": leaked["key"]}
        child = (await anon.post("/v1/keys", json={"name": "spawn"}, headers=as_leaked)).json()
        grandchild = (
            await anon.post("/v1/keys", json={}, headers={"X-API-Key": child["key"]})
        ).json()
        sibling = (await root.post("/v1/keys", json={"name": "farm"})).json()

        listing = await root.get("/v1/keys")
        assert listing.status_code == 200, listing.text
        rows = {k["id"]: k for k in listing.json()["keys"]}
        assert set(rows) == {root_id, leaked["id"], child["id"], grandchild["id"], sibling["id"]}
        assert rows[child["id"]]["minted_by"] == leaked["id"] and rows[root_id]["current"]
        assert rows[grandchild["id"]]["name"] == "" and rows[child["id"]]["name"] == "spawn"
        for k in (leaked, child, grandchild, sibling):  # no secret is ever listed
            assert k["key"] not in listing.text and k["key"].split("_", 2)[2] not in listing.text

        revoked = await root.delete(f"/v1/keys/{leaked['id']}")
        assert revoked.status_code == 200, revoked.text
        assert sorted(revoked.json()["revoked"]) == sorted(
            [leaked["id"], child["id"], grandchild["id"]]
        )
        for k in (leaked, child, grandchild):
            _problem(await anon.get("/v1/projects", headers={"X-API-Key": k["key"]}), 401)
        assert (
            await anon.get("/v1/projects", headers={"X-API-Key": sibling["key"]})
        ).status_code == 200
        assert (await root.get("/v1/projects")).status_code == 200
        assert {k["id"] for k in (await root.get("/v1/keys")).json()["keys"]} == {
            root_id,
            sibling["id"],
        }
        _problem(await root.delete(f"/v1/keys/{leaked['id']}"), 404)  # already gone

        # another tenant neither sees nor revokes acme's keys
        async with await gateway.client("globex") as globex:
            assert sibling["id"] not in (await globex.get("/v1/keys")).text
            _problem(await globex.delete(f"/v1/keys/{sibling['id']}"), 404)
        assert (
            await anon.get("/v1/projects", headers={"X-API-Key": sibling["key"]})
        ).status_code == 200

        # revoking the key in use takes its offspring too
        spawn = (await anon.post("/v1/keys", json={}, headers={"X-API-Key": sibling["key"]})).json()
        assert (
            await anon.delete("/v1/keys/current", headers={"X-API-Key": sibling["key"]})
        ).status_code == 204
        _problem(await anon.get("/v1/projects", headers={"X-API-Key": spawn["key"]}), 401)

        # the key's use is recorded (in the background, at most once a minute)
        for _ in range(50):
            rows = {k["id"]: k for k in (await root.get("/v1/keys")).json()["keys"]}
            if rows[root_id]["last_used_at"]:
                break
            await asyncio.sleep(0.1)
        assert rows[root_id]["last_used_at"]

        # a key made before the key index existed is indexed at start: listed, revocable
        legacy = "lf_0badc0de_" + "x" * 43
        await gateway.state._create(
            f"apikey.{hash_key(legacy)}",
            {
                "tenant": "acme",
                "key_id": "0badc0de",
                "name": "old",
                "created_at": "2025-01-01T00:00:00+00:00",
            },
        )
        assert await gateway.state.index_legacy_keys() == 1
        assert "0badc0de" in {k["id"] for k in (await root.get("/v1/keys")).json()["keys"]}

        # admin (operator command over NATS, not the API): every key of the tenant
        out = await admin.run(settings, ["keys", "revoke-all", "--tenant", "acme"])
        assert {root_id, "0badc0de"} <= set(out["revoked"])
        _problem(await anon.get("/v1/projects", headers={"X-API-Key": legacy}), 401)
        gateway.app.state.gw.auth.keys.forget_tenant("acme")  # else: within the cache ttl
        _problem(await root.get("/v1/projects"), 401)
        assert (await admin.run(settings, ["keys", "list", "--tenant", "acme"]))["keys"] == []


async def test_minting_keys_neither_exceeds_the_tenant_limit_nor_multiplies_the_rate(
    make_gateway,
) -> None:
    """Attack: mint many keys and spread requests over them. The rate is per tenant and the
    number of keys is capped."""
    gw = await make_gateway(
        GatewayConfig(
            rate_per_s=0.2,
            rate_burst=6,
            max_keys_per_tenant=3,
            max_upload_bytes=TEST_CONFIG.max_upload_bytes,
        )
    )
    async with await gw.client("acme") as root, await gw.client() as anon:
        keys = [
            (await root.post("/v1/keys", json={"name": f"k{i}"})).json()["key"] for i in range(2)
        ]
        too_many = _problem(await root.post("/v1/keys", json={"name": "k3"}), 409)  # 3rd request
        assert "limit is 3" in too_many["detail"]
        codes = [
            (await anon.get("/v1/projects", headers={"X-API-Key": k})).status_code
            for k in keys + [await gw.key("acme")]
        ]  # requests 4..6: the burst is spent
        assert codes == [200, 200, 200]
        for k in keys:  # every key of the tenant now waits, not just the one that spent it
            r = await anon.get("/v1/projects", headers={"X-API-Key": k})
            _problem(r, 429)
            assert int(r.headers["Retry-After"]) >= 1
    async with await gw.client("globex") as other:  # another tenant has its own bucket
        assert (await other.get("/v1/projects")).status_code == 200


async def test_concurrent_mints_do_not_pass_the_tenant_key_limit(make_gateway) -> None:
    """Attack: fire many mints at once while the tenant is below its key limit; each used to
    count the keys before any of the others had written one, so all passed. Now the count
    and the reservation are one compare-and-set: exactly the room left is minted."""
    gw = await make_gateway(
        GatewayConfig(
            rate_per_s=1000,
            rate_burst=1000,
            max_keys_per_tenant=5,
            max_upload_bytes=TEST_CONFIG.max_upload_bytes,
        )
    )
    async with await gw.client("acme") as root:  # the tenant's first key
        answers = await asyncio.gather(
            *(root.post("/v1/keys", json={"name": f"k{i}"}) for i in range(12))
        )
        codes = sorted(r.status_code for r in answers)
        assert codes == [201] * 4 + [409] * 8, codes
        assert all("limit is 5" in r.json()["detail"] for r in answers if r.status_code == 409)
        assert len((await root.get("/v1/keys")).json()["keys"]) == 5
        # revoking one makes room for exactly one again
        doomed = next(r.json()["id"] for r in answers if r.status_code == 201)
        assert (await root.delete(f"/v1/keys/{doomed}")).status_code in (200, 204)
        again = await asyncio.gather(*(root.post("/v1/keys", json={}) for _ in range(3)))
        assert sorted(r.status_code for r in again) == [201, 409, 409]


async def test_a_revoked_key_is_refused_at_once_by_every_replica(make_gateway) -> None:
    """Attack: use a leaked key on another gateway replica right after it was revoked; the
    replica's key cache answered from memory for its ttl. Now every replica watches the key
    records and forgets a revoked key at once (the ttl here is 10 minutes)."""
    config = GatewayConfig(
        rate_per_s=1000,
        rate_burst=1000,
        key_cache_ttl_s=600,
        max_upload_bytes=TEST_CONFIG.max_upload_bytes,
    )
    a, b = await make_gateway(config), await make_gateway(config)
    async with await a.client("acme") as on_a, await b.client() as anon:
        leaked = (await on_a.post("/v1/keys", json={"name": "leaked"})).json()
        as_leaked = {"X-API-Key": leaked["key"]}
        assert (await anon.get("/v1/projects", headers=as_leaked)).status_code == 200  # cached
        assert (await on_a.delete(f"/v1/keys/{leaked['id']}")).status_code == 200
        deadline = asyncio.get_running_loop().time() + 3
        while (status := (await anon.get("/v1/projects", headers=as_leaked)).status_code) == 200:
            assert asyncio.get_running_loop().time() < deadline, "replica b still takes the key"
            await asyncio.sleep(0.05)
        assert status == 401


async def test_review_tokens_die_with_their_key_and_are_read_only(gateway, store) -> None:
    """Attack: a review link outlives its key's revocation, downloads checkpoints, reads the
    Kubernetes spec and approves captions. Now: dead with the key; read-only unless minted
    with scope write; previews and scores only."""
    async with await gateway.client("acme") as c, await gateway.client() as page:
        await c.post("/v1/projects", json={"name": "jane"})
        seed_dataset(store, "acme", "jane")
        run = (
            await c.post(
                "/v1/projects/jane/training-runs",
                json={"dataset_id": DATASET_ID, "preset": "tiny-sdxl", "rank": 8, "steps": 10},
            )
        ).json()
        prefix = f"acme/jane/runs/{run['id']}"
        store.put_bytes(
            Bucket.LORAS, f"{prefix}/checkpoints/step-00000010/lora.safetensors", b"w10"
        )
        store.put_bytes(Bucket.LORAS, f"{prefix}/previews/step-10-seed-0.png", b"png")
        store.put_json(Bucket.LORAS, f"{prefix}/scores.json", {"best_step": 10})
        store.put_json(Bucket.LORAS, f"{prefix}/k8s-spec.json", {"job": {"params": {}}})
        base = f"/v1/projects/jane/datasets/{DATASET_ID}"
        first = CLIPS[0][0]

        key = (await c.post("/v1/keys", json={"name": "reviewer-links"})).json()
        as_key = {"X-API-Key": key["key"]}
        link = (await page.post(f"{base}/review-link", headers=as_key)).json()
        assert link["scope"] == "read"
        ro = {"X-Review-Token": link["token"]}
        review = await page.get(f"{base}/review", headers=ro)
        assert review.status_code == 200, review.text
        [runs] = review.json()["training_runs"]
        assert len(runs["previews"]) == 1 and len(runs["scores"]) == 1
        assert runs["checkpoints"] == [] and runs["other"] == []
        assert "safetensors" not in review.text and "k8s-spec" not in review.text
        with_key = (await c.get(f"{base}/review")).json()["training_runs"][0]  # the key sees all
        assert with_key["checkpoints"] and with_key["other"]
        assert _problem(await page.post(f"{base}/captions/{first}/approve", headers=ro), 403)[
            "detail"
        ]
        _problem(
            await page.put(
                f"{base}/clips/{first}/decision", json={"decision": "reject"}, headers=ro
            ),
            403,
        )
        _problem(
            await page.put(f"{base}/captions/{first}", json={"text": "j4ne x"}, headers=ro), 403
        )
        _problem(
            await page.get(f"/v1/projects/jane/training-runs/{run['id']}/artifacts", headers=ro),
            401,
        )

        rw = {
            "X-Review-Token": (
                await page.post(f"{base}/review-link", json={"scope": "write"}, headers=as_key)
            ).json()["token"]
        }
        ok = await page.put(
            f"{base}/clips/{first}/decision", json={"decision": "reject"}, headers=rw
        )
        assert ok.status_code == 200, ok.text
        assert (await page.post(f"{base}/captions/{first}/approve", headers=rw)).json()["approved"]
        _problem(
            await page.post(f"{base}/review-link", json={"scope": "admin"}, headers=as_key), 422
        )

        assert (
            await page.delete(
                f"/v1/keys/{key['id']}", headers={"X-API-Key": await gateway.key("acme")}
            )
        ).status_code == 200
        for token in (ro, rw):
            assert (
                "revoked"
                in _problem(await page.get(f"{base}/review", headers=token), 401)["detail"]
            )
        assert (await c.get(f"{base}/review")).status_code == 200


def _staging(store) -> list[str]:
    return [o.key for o in store.list(Bucket.RAW, "_staging/gw.acme.")]


async def test_presigned_upload_accepts_only_the_declared_size(gateway, store) -> None:
    """Attack: declare a small size, PUT a huge body to the presigned URL. The URL signs the
    Content-Length: any other length is refused by the object store and nothing is stored."""
    async with await gateway.client("acme") as c:
        await c.post("/v1/projects", json={"name": "jane"})
        data = b"declared bytes " * 4000
        _problem(
            await c.post("/v1/projects/jane/uploads/presigned", json={"filename": "a.mov"}), 422
        )
        p = (
            await c.post(
                "/v1/projects/jane/uploads/presigned", json={"filename": "a.mov", "size": len(data)}
            )
        ).json()
        assert "content-length" in p["url"].lower()
        async with httpx.AsyncClient() as s3:
            bigger = await s3.put(p["url"], content=data + b"x" * 100_000)
            assert bigger.status_code == 403, bigger.text
            smaller = await s3.put(p["url"], content=data[:-1])
            assert smaller.status_code == 403, smaller.text
            assert _staging(store) == []  # nothing stored by the refused bodies

            async def chunked():  # no Content-Length at all
                yield data
                yield b"more"

            assert (await s3.put(p["url"], content=chunked())).status_code >= 400
            assert _staging(store) == []
            assert (await s3.put(p["url"], content=data)).status_code == 200
        sha = hashlib.sha256(data).hexdigest()
        r = await c.post(
            "/v1/projects/jane/uploads/commit",
            json={"staging_key": p["staging_key"], "sha256": sha, "filename": "a.mov"},
        )
        assert r.status_code == 201, r.text
        assert r.json()["size"] == len(data) and _staging(store) == []


async def test_progress_streams_per_tenant_are_limited(make_gateway) -> None:
    """Attack: open progress streams without end (each holds a connection and polls the job
    store). Beyond the tenant's limit: 429 with Retry-After; a closed stream frees its slot;
    other tenants are unaffected."""
    import asyncio
    import contextlib

    gw = await make_gateway(
        GatewayConfig(sse_streams_per_tenant=2, rate_per_s=1000, rate_burst=1000, sse_poll_s=0.1)
    )

    async def pending_job(client: httpx.AsyncClient) -> str:
        await client.post("/v1/projects", json={"name": "jane"})
        r = await client.post(
            "/v1/projects/jane/training-runs",
            json={"dataset_id": "ds-1", "preset": "tiny-sdxl", "rank": 8, "steps": 10},
        )
        assert r.status_code == 201, r.text  # stays PENDING: no trainer worker here
        return f"/v1/projects/jane/training-runs/{r.json()['id']}/events"

    async with (
        await gw.client("acme") as c,
        await gw.client("globex") as g,
        contextlib.AsyncExitStack() as streams,
    ):
        url = await pending_job(c)
        readers = []  # kept: a dropped line iterator closes its response
        for _ in range(2):
            resp = await streams.enter_async_context(c.stream("GET", url))
            assert resp.status_code == 200
            readers.append(resp.aiter_lines())
            assert await readers[-1].__anext__() == "retry: 2000"  # open and sending
        r = await c.get(url)
        _problem(r, 429)
        assert int(r.headers["Retry-After"]) >= 1 and "streams" in r.json()["detail"]
        other = await pending_job(g)
        async with g.stream("GET", other) as resp:
            assert resp.status_code == 200
        for reader in readers:
            await reader.aclose()
        await streams.aclose()  # the client goes away: its slots come back
        for _ in range(50):
            async with c.stream("GET", url) as resp:
                if resp.status_code == 200:
                    break
            await asyncio.sleep(0.1)
        assert resp.status_code == 200


class _Hooks:
    """A webhook receiver on loopback that can be made slow (sleeps past the gateway's
    timeout) or fast; records arrivals and the calls it answered."""

    def __init__(self, slow_s: float = 0.0):
        import threading
        import time
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.slow_s = slow_s
        self.arrivals: list[float] = []
        self.answered: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                import json as _json

                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.arrivals.append(time.monotonic())
                slow = outer.slow_s
                if slow:
                    time.sleep(slow)
                try:
                    self.send_response(204)
                    self.end_headers()
                except OSError:
                    return  # the gateway gave up waiting
                if not slow:  # a call that hung is one the gateway gave up on
                    outer.answered.append(_json.loads(body))

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def finals(self, job_id: str) -> list[dict]:
        return [p for p in self.answered if p["job_id"] == job_id and p["final"]]

    def close(self) -> None:
        self.server.shutdown()


async def test_a_slow_receiver_stalls_only_its_own_tenant_and_opens_its_breaker(
    make_gateway,
) -> None:
    """Attack/fault: tenant acme's receiver hangs on every call. globex's receiver must get
    its events within a bound meanwhile; acme's hook opens after 2 failed calls and gets
    nothing during its cool-down, its calls held; once the receiver answers again, the held
    calls (final ones included) arrive, in order."""
    import asyncio
    import dataclasses
    import time

    config = dataclasses.replace(
        TEST_CONFIG,
        webhook_timeout_s=0.5,
        webhook_attempts=2,
        webhook_breaker_failures=2,
        webhook_cooldown_s=3.0,
    )
    gw = await make_gateway(config)
    slow, fast = _Hooks(slow_s=5.0), _Hooks()
    try:
        async with await gw.client("acme") as acme, await gw.client("globex") as globex:
            jobs = {}
            for client, receiver, _name in ((acme, slow, "acme"), (globex, fast, "globex")):
                await client.post("/v1/projects", json={"name": "jane"})
                assert (
                    await client.post("/v1/projects/jane/webhooks", json={"url": receiver.url})
                ).status_code == 201
            acme_jobs = [
                (
                    await acme.post(
                        "/v1/projects/jane/ingest-jobs",
                        json={"sources": ["acme/jane/sources/a.mp4"], "request_id": f"a{i}"},
                    )
                ).json()["id"]
                for i in range(3)
            ]
            await asyncio.sleep(0.5)  # acme's events are first in line
            started = time.monotonic()
            jobs["globex"] = (
                await globex.post(
                    "/v1/projects/jane/ingest-jobs", json={"sources": ["globex/jane/sources/b.mp4"]}
                )
            ).json()["id"]
            # the receiver is a thread of its own: its answers are polled
            while not fast.finals(jobs["globex"]) and time.monotonic() - started < 20:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            took = time.monotonic() - started
            # the bound: the fake ingest work (~0.2 s) plus a few event hops, far below one
            # acme call's timeout x attempts (1 s) times acme's 12 calls ahead of it
            assert fast.finals(jobs["globex"]), "globex's final call never arrived"
            assert took < 5.0, f"globex waited {took:.1f}s behind acme's slow receiver"
            progress = [
                p for p in fast.answered if p["job_id"] == jobs["globex"] and not p["final"]
            ]
            assert progress and fast.answered[-1]["final"]

            # acme's hook: 2 calls x 2 attempts, then open (3 s cool-down): no arrivals
            for _ in range(100):
                if len(slow.arrivals) >= 4:
                    break
                await asyncio.sleep(0.1)
            assert len(slow.arrivals) == 4, slow.arrivals
            opened = time.monotonic()
            await asyncio.sleep(1.5)
            assert len(slow.arrivals) == 4 and time.monotonic() - opened < 3.0  # held while open
            [held] = (await acme.get("/v1/projects/jane/webhooks")).json()["webhooks"]
            assert held["pending"] >= 3 and held["dropped"] == 0  # at least the 3 finals wait
            slow.slow_s = 0.0  # the receiver recovers: the probe after the cool-down closes it
            for _ in range(150):
                if all(slow.finals(j) for j in acme_jobs):
                    break
                await asyncio.sleep(0.1)
            assert all(slow.finals(j) for j in acme_jobs), slow.answered
            assert len({p["event_id"] for p in slow.answered}) == len(slow.answered)  # each once
            for j in acme_jobs:  # a hook's calls arrive in order: the final after its progress
                mine = [p for p in slow.answered if p["job_id"] == j]
                assert mine[-1]["final"] and [p["progress"] for p in mine[:-1]] == sorted(
                    p["progress"] for p in mine[:-1]
                )
            # acme's outbox drains: its last entry goes once the receiver's answer is in, a
            # moment after the receiver has recorded the call (other tenants' keys may remain)
            for _ in range(50):
                left = [k for k in await gw.state.outbox_keys() if ".acme." in k]
                if not left:
                    break
                await asyncio.sleep(0.1)
            assert left == []
    finally:
        slow.close()
        fast.close()


async def test_held_webhook_calls_survive_their_gateway_and_another_replica_delivers_them(
    settings,
) -> None:
    """Fault: the receiver is down while events come in, then the gateway that took them
    stops. The calls are in the hook's durable outbox (NATS KV): another gateway replica
    finds them and delivers them, in order, once the receiver is back."""
    from datetime import UTC, datetime, timedelta

    from loraforge.gateway.config import gateway_bucket
    from loraforge.gateway.state import GatewayState
    from loraforge.gateway.webhooks import WebhookDispatcher
    from loraforge.runtime.egress import EgressPolicy
    from loraforge.runtime.events import Event, EventBus
    from loraforge.runtime.jobs import JobStore
    from loraforge.runtime.settings import EgressSettings

    bus = await EventBus.connect(settings.nats, name="webhook-replicas")
    receiver = _Hooks()
    down = [True]
    import http.server

    handler = receiver.server.RequestHandlerClass
    real_post = handler.do_POST

    def maybe_down(self: http.server.BaseHTTPRequestHandler) -> None:
        if down[0]:
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(503)
            self.end_headers()
            return
        real_post(self)

    handler.do_POST = maybe_down
    egress = EgressPolicy.from_settings(
        settings.model_copy(update={"egress": EgressSettings(allow="127.0.0.1/32")})
    )
    replicas: list[WebhookDispatcher] = []
    try:
        jobs = await JobStore.open(bus.jetstream, settings.nats.jobs_bucket)
        state = await GatewayState.open(bus.jetstream, gateway_bucket(settings), jobs.projects)
        await state.add_webhook(
            "acme",
            "jane",
            {
                "id": "wh-00000000beef",
                "url": receiver.url,
                "job_id": None,
                "secret": "s",
                "created_at": (datetime.now(UTC) - timedelta(minutes=1)).isoformat(),
            },
        )

        def dispatcher() -> WebhookDispatcher:
            d = WebhookDispatcher(
                state,
                None,
                attempts=1,
                backoff_s=0.01,
                egress=egress,  # type: ignore[arg-type]
                breaker_failures=1,
                cooldown_s=60,
            )
            replicas.append(d)
            return d

        first = dispatcher()
        for n in range(3):
            await first.handle(
                Event(
                    type="ingest.progress",
                    tenant="acme",
                    project="jane",
                    data={"job_id": "j1", "progress": (n + 1) / 4},
                ),
                None,
            )  # type: ignore[arg-type]
        key = "outbox.acme.jane.wh-00000000beef"
        for _ in range(50):  # the first call failed: the hook is open for a minute, calls held
            if first.failed:
                break
            await asyncio.sleep(0.1)
        assert first.failed == 1 and len((await state.get(key))["items"]) == 3
        await first.close()  # this replica goes away; its calls stay in the outbox

        down[0] = False
        second = dispatcher()
        second._scanner = asyncio.create_task(
            second._scan()
        )  # what start() runs besides the consumer
        for _ in range(100):
            if len(receiver.answered) == 3:
                break
            await asyncio.sleep(0.1)
        assert [p["progress"] for p in receiver.answered] == [0.25, 0.5, 0.75]
        for _ in range(20):
            if await state.get(key) is None:
                break
            await asyncio.sleep(0.1)
        assert await state.get(key) is None  # delivered calls leave the outbox
    finally:
        for d in replicas[1:]:
            await d.close()
        receiver.close()
        await bus.close()
