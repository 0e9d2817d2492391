"""The HTTP API end to end: auth, tenants, limits, uploads, jobs, SSE, webhooks, errors."""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from loraforge.gateway.config import GatewayConfig
from loraforge.gateway.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from loraforge.runtime.storage import STAGING_PREFIX, Bucket

from .conftest import TEST_CONFIG

PROBLEM = "application/problem+json"


def _problem(resp: httpx.Response, status: int) -> dict:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith(PROBLEM), resp.headers
    body = resp.json()
    assert (
        body["status"] == status
        and body["title"]
        and body["type"].startswith("urn:loraforge:problem:")
    )
    assert body["detail"]
    return body


async def test_no_key_is_401_and_other_tenants_projects_are_404(gateway) -> None:
    async with (
        await gateway.client() as anon,
        await gateway.client("acme") as acme,
        await gateway.client("globex") as globex,
    ):
        body = _problem(await anon.get("/v1/projects"), 401)
        assert "X-API-Key" in body["detail"]
        r = await anon.get("/v1/projects", headers={"X-API-Key": "lf_deadbeef_nope"})
        _problem(r, 401)
        r = await anon.get(
            "/v1/projects", headers={"Authorization": f"Bearer {await gateway.key('acme')}"}
        )
        assert r.status_code == 200

        r = await acme.post("/v1/projects", json={"name": "jane", "description": "Jane"})
        assert r.status_code == 201, r.text
        _problem(await acme.post("/v1/projects", json={"name": "jane"}), 409)
        bad = _problem(await acme.post("/v1/projects", json={"name": "Not A Slug"}), 422)
        assert "name" in bad["detail"]
        assert [p["name"] for p in (await acme.get("/v1/projects")).json()["projects"]] == ["jane"]

        # globex sees nothing of acme's: 404, never 403
        _problem(await globex.get("/v1/projects/jane"), 404)
        _problem(await globex.get("/v1/projects/jane/ingest-jobs"), 404)
        _problem(await globex.post("/v1/projects/jane/ingest-jobs", json={"sources": ["x"]}), 404)
        assert (await globex.get("/v1/projects")).json()["projects"] == []
        # the same name is free for another tenant, and stays separate
        assert (await globex.post("/v1/projects", json={"name": "jane"})).status_code == 201
        r = await acme.post(
            "/v1/projects/jane/uploads", files={"file": ("a.jpg", b"acme-bytes", "image/jpeg")}
        )
        assert r.status_code == 201
        assert (await globex.get("/v1/jobs", params={"project": "jane"})).json()["jobs"] == []


def _raw_keys(store, prefix: str) -> list[str]:
    name = store.bucket_name(Bucket.RAW)
    return [o.object_name for o in store._client.list_objects(name, prefix=prefix, recursive=True)]


async def test_uploads_are_content_addressed_and_oversize_is_413_with_nothing_stored(
    gateway, store
) -> None:
    async with await gateway.client("acme") as c:
        await c.post("/v1/projects", json={"name": "jane"})
        data = b"\x00\x01video" * 1000
        r = await c.post(
            "/v1/projects/jane/uploads", files={"file": ("Take 1.MP4", data, "video/mp4")}
        )
        assert r.status_code == 201, r.text
        up = r.json()
        sha = hashlib.sha256(data).hexdigest()
        assert up == {
            "key": f"acme/jane/sources/{sha}.mp4",
            "sha256": sha,
            "size": len(data),
            "created": True,
        }
        assert store.get_bytes(Bucket.RAW, up["key"]) == data
        again = (await c.post("/v1/projects/jane/uploads", files={"file": ("x.mp4", data)})).json()
        assert again["created"] is False and again["key"] == up["key"]

        before = set(_raw_keys(store, ""))
        big = b"x" * (TEST_CONFIG.max_upload_bytes + 200 * 1024)
        body = _problem(
            await c.post("/v1/projects/jane/uploads", files={"file": ("big.mp4", big)}), 413
        )
        assert "presigned" in body["detail"]

        async def chunks():  # no Content-Length: the limit is enforced while reading
            boundary = b"--b0undary\r\n"
            yield (
                boundary
                + b'Content-Disposition: form-data; name="file"; filename="big2.mp4"\r\n\r\n'
            )
            for _ in range(40):
                yield b"y" * 16384
            yield b"\r\n--b0undary--\r\n"

        r = await c.post(
            "/v1/projects/jane/uploads",
            content=chunks(),
            headers={"Content-Type": "multipart/form-data; boundary=b0undary"},
        )
        _problem(r, 413)
        # a file just over the limit but within the multipart allowance: refused by size
        over = b"z" * (TEST_CONFIG.max_upload_bytes + 10)
        _problem(await c.post("/v1/projects/jane/uploads", files={"file": ("over.mp4", over)}), 413)
        assert set(_raw_keys(store, "")) == before
        assert not list(_raw_keys(store, STAGING_PREFIX))


async def test_presigned_upload_then_commit(gateway, store) -> None:
    async with await gateway.client("acme") as c:
        await c.post("/v1/projects", json={"name": "jane"})
        data = b"big original " * 5000
        sha = hashlib.sha256(data).hexdigest()
        p = (
            await c.post(
                "/v1/projects/jane/uploads/presigned",
                json={"filename": "take.mov", "size": len(data)},
            )
        ).json()
        assert p["staging_key"].startswith("_staging/gw.acme.jane.")
        async with httpx.AsyncClient() as s3:
            assert (await s3.put(p["url"], content=data)).status_code == 200
        wrong = {"staging_key": p["staging_key"], "sha256": "0" * 64, "filename": "take.mov"}
        _problem(await c.post("/v1/projects/jane/uploads/commit", json=wrong), 422)
        assert _raw_keys(store, "acme/") == []  # a bad checksum commits nothing (and drops staging)

        p = (
            await c.post(
                "/v1/projects/jane/uploads/presigned",
                json={"filename": "take.mov", "size": len(data)},
            )
        ).json()
        async with httpx.AsyncClient() as s3:
            await s3.put(p["url"], content=data)
        # another tenant cannot commit (or even see) this staging key
        async with await gateway.client("globex") as g:
            await g.post("/v1/projects", json={"name": "jane"})
            _problem(
                await g.post("/v1/projects/jane/uploads/commit", json={**wrong, "sha256": sha}), 404
            )
        r = await c.post(
            "/v1/projects/jane/uploads/commit",
            json={"staging_key": p["staging_key"], "sha256": sha, "filename": "take.mov"},
        )
        assert r.status_code == 201, r.text
        assert r.json()["key"] == f"acme/jane/sources/{sha}.mov"
        assert store.get_bytes(Bucket.RAW, r.json()["key"]) == data


class _Receiver:
    """A tiny local HTTP server that records webhook calls."""

    def __init__(self, fail_first: int = 0):
        self.calls: list[tuple[dict[str, str], bytes]] = []
        self.fail_first = fail_first
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if outer.fail_first > 0:
                    outer.fail_first -= 1
                    self.send_response(503)
                    self.end_headers()
                    return
                outer.calls.append((dict(self.headers.items()), body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


async def test_ingest_job_listed_streams_progress_and_calls_signed_webhooks(gateway) -> None:
    receiver = _Receiver(fail_first=1)  # the first delivery is retried
    try:
        async with await gateway.client("acme") as c:
            await c.post("/v1/projects", json={"name": "jane"})
            hook = (await c.post("/v1/projects/jane/webhooks", json={"url": receiver.url})).json()
            assert hook["secret"] and hook["id"].startswith("wh-")
            assert "secret" not in (await c.get("/v1/projects/jane/webhooks")).json()["webhooks"][0]
            up = (
                await c.post("/v1/projects/jane/uploads", files={"file": ("a.mp4", b"frames")})
            ).json()

            r = await c.post(
                "/v1/projects/jane/ingest-jobs",
                json={"sources": [up["key"]], "max_s": 4, "request_id": "batch-1"},
            )
            assert r.status_code == 201, r.text
            job = r.json()
            assert job["kind"] == "ingest" and job["params"]["sources"] == [up["key"]]
            again = (
                await c.post(
                    "/v1/projects/jane/ingest-jobs",
                    json={"sources": [up["key"]], "max_s": 4, "request_id": "batch-1"},
                )
            ).json()
            assert again["id"] == job["id"]

            listed = (await c.get("/v1/jobs", params={"kind": "ingest"})).json()["jobs"]
            assert job["id"] in [j["id"] for j in listed]
            assert job["id"] in [j["id"] for j in (await c.get("/v1/jobs")).json()["jobs"]]
            assert job["id"] in [
                j["id"] for j in (await c.get("/v1/projects/jane/ingest-jobs")).json()["jobs"]
            ]
            assert (await c.get("/v1/jobs", params={"kind": "render"})).json()["jobs"] == []

            # SSE: progress frames, then done with the final job
            events = []
            async with c.stream("GET", f"/v1/projects/jane/ingest-jobs/{job['id']}/events") as s:
                assert s.headers["content-type"].startswith("text/event-stream")
                kind = None
                async for line in s.aiter_lines():
                    if line.startswith("event: "):
                        kind = line[7:]
                    elif line.startswith("data: ") and kind:
                        events.append((kind, json.loads(line[6:])))
                        if kind == "done":
                            break
            assert events[-1][0] == "done" and events[-1][1]["state"] == "SUCCEEDED"
            got = (await c.get(f"/v1/projects/jane/ingest-jobs/{job['id']}")).json()
            assert got["state"] == "SUCCEEDED" and got["progress"] == 1.0

            # bad input from the backend's own validation comes back as 400 with its reason
            r = await c.post("/v1/projects/jane/ingest-jobs", json={"sources": ["globex/x/a.mp4"]})
            assert "not an object key of acme/jane" in _problem(r, 400)["detail"]
            _problem(await c.get("/v1/projects/jane/ingest-jobs/jnope"), 404)

        for _ in range(100):
            if any(json.loads(b)["final"] for _, b in receiver.calls):
                break
            await asyncio.sleep(0.1)
        payloads = []
        for headers, body in receiver.calls:
            assert verify(
                hook["secret"], headers[TIMESTAMP_HEADER], body, headers[SIGNATURE_HEADER]
            )
            assert not verify(
                "wrong-secret", headers[TIMESTAMP_HEADER], body, headers[SIGNATURE_HEADER]
            )
            payloads.append(json.loads(body))
        mine = [p for p in payloads if p["job_id"] == job["id"]]
        progress = [p for p in mine if not p["final"]]
        final = [p for p in mine if p["final"]]
        assert len(progress) >= 2, payloads
        assert [p["progress"] for p in progress] == sorted(p["progress"] for p in progress)
        assert len(final) == 1 and final[0]["state"] == "SUCCEEDED"
        assert final[0]["job"]["id"] == job["id"]
        assert mine[-1]["final"] is True  # the final call comes last
    finally:
        receiver.close()


async def test_rate_limit_is_429_with_retry_after(make_gateway) -> None:
    gw = await make_gateway(GatewayConfig(rate_per_s=0.5, rate_burst=3))
    async with await gw.client("acme") as c:
        codes = [(await c.get("/v1/projects")).status_code for _ in range(3)]
        assert codes == [200, 200, 200]
        r = await c.get("/v1/projects")
        _problem(r, 429)
        assert int(r.headers["Retry-After"]) >= 1
    async with await gw.client("globex") as other:  # buckets are per tenant
        assert (await other.get("/v1/projects")).status_code == 200


async def test_backend_down_is_503_problem(gateway) -> None:
    async with await gateway.client("acme") as c:
        await c.post("/v1/projects", json={"name": "jane"})
        assert (await c.get("/v1/projects/jane/training-runs")).status_code == 200
        await gateway.procs["trainer"].stop()
        body = _problem(await c.get("/v1/projects/jane/training-runs"), 503)
        assert "trainer" in body["detail"]
        r = await c.post(
            "/v1/projects/jane/training-runs", json={"dataset_id": "ds-1", "preset": "tiny-sdxl"}
        )
        _problem(r, 503)


@pytest.mark.parametrize("path", ["/openapi.json"])
async def test_openapi_is_served_and_complete(gateway, path) -> None:
    async with await gateway.client() as c:
        doc = (await c.get(path)).json()
    ops = {(m.upper(), p) for p, item in doc["paths"].items() for m in item}
    for needed in [
        ("POST", "/v1/projects"),
        ("POST", "/v1/projects/{project}/uploads"),
        ("POST", "/v1/projects/{project}/ingest-jobs"),
        ("GET", "/v1/jobs"),
        ("GET", "/v1/projects/{project}/training-runs/{job_id}/lora"),
        ("POST", "/v1/projects/{project}/renders"),
        ("PUT", "/v1/projects/{project}/datasets/{dataset_id}/clips/{clip_id}/decision"),
    ]:
        assert needed in ops
    schemas = doc["components"]["schemas"]
    for name in ("IngestStart", "TrainingStart", "RenderSubmit", "Job", "Problem", "ProjectCreate"):
        assert schemas[name].get("examples"), name
    assert {"APIKeyHeader", "HTTPBearer"} <= set(doc["components"]["securitySchemes"])


async def test_training_run_files_through_expiring_links(gateway, store) -> None:
    async with await gateway.client("acme") as c:
        await c.post("/v1/projects", json={"name": "jane"})
        r = await c.post(
            "/v1/projects/jane/training-runs",
            json={"dataset_id": "ds-1", "preset": "tiny-sdxl", "rank": 8, "steps": 10},
        )
        assert r.status_code == 201, r.text
        run = r.json()
        assert run["kind"] == "trainer" and run["params"]["base_preset"] == "tiny-sdxl"
        prefix = f"acme/jane/runs/{run['id']}"
        store.put_bytes(
            Bucket.LORAS, f"{prefix}/checkpoints/step-00000010/lora.safetensors", b"w10"
        )
        store.put_bytes(Bucket.LORAS, f"{prefix}/checkpoints/step-00000010/optimizer.pt", b"opt")
        store.put_bytes(Bucket.LORAS, f"{prefix}/previews/step-10-seed-0.png", b"png")
        store.put_json(Bucket.LORAS, f"{prefix}/scores.json", {"best_step": 10})
        store.put_bytes(Bucket.LORAS, f"{prefix}/best.safetensors", b"best-lora")

        files = (await c.get(f"/v1/projects/jane/training-runs/{run['id']}/artifacts")).json()
        names = sorted(x["key"].rsplit("/", 1)[1] for x in files["checkpoints"])
        assert names == ["best.safetensors", "lora.safetensors"]  # no optimizer state
        assert len(files["previews"]) == 1 and len(files["scores"]) == 1
        best = (await c.get(f"/v1/projects/jane/training-runs/{run['id']}/lora")).json()
        async with httpx.AsyncClient() as s3:
            assert (await s3.get(best["url"])).content == b"best-lora"
        assert "X-Amz-Expires=900" in best["url"]  # short-lived
        _problem(
            await c.get(
                f"/v1/projects/jane/training-runs/{run['id']}/lora", params={"which": "last"}
            ),
            404,
        )
        async with await gateway.client("globex") as g:
            await g.post("/v1/projects", json={"name": "jane"})
            _problem(await g.get(f"/v1/projects/jane/training-runs/{run['id']}/artifacts"), 404)

        cancelled = (await c.post(f"/v1/projects/jane/training-runs/{run['id']}/cancel")).json()
        assert cancelled["state"] == "CANCELLED"
        render = (
            await c.post("/v1/projects/jane/renders", json={"scenario_yaml": "shots: []\n"})
        ).json()
        res = (await c.get(f"/v1/projects/jane/renders/{render['id']}/results")).json()
        assert res["job"]["id"] == render["id"] and res["results"] == []


async def test_key_rotation_issue_then_revoke(gateway) -> None:
    async with await gateway.client("acme") as acme:
        assert (await acme.post("/v1/projects", json={"name": "rot"})).status_code == 201
        issued = await acme.post("/v1/keys", json={"name": "farm"})
        assert issued.status_code == 201, issued.text
        new_key = issued.json()["key"]
        assert new_key.startswith("lf_") and issued.json()["tenant"] == "acme"
        async with await gateway.client() as anon:
            headers = {"X-API-Key": new_key}
            # the new key sees the same tenant's projects
            names = [
                p["name"]
                for p in (await anon.get("/v1/projects", headers=headers)).json()["projects"]
            ]
            assert "rot" in names
            assert (await anon.delete("/v1/keys/current", headers=headers)).status_code == 204
            _problem(await anon.get("/v1/projects", headers=headers), 401)
        # the old key still works
        assert (await acme.get("/v1/projects")).status_code == 200


async def test_a_project_made_on_the_local_stack_is_the_gateways_too(gateway, store) -> None:
    """`loraforge ingest --project cli-made` talks gRPC to the ingest service, never to the
    gateway; the project it makes is in the one registry, so the API finds it."""
    import grpc

    from loraforge.v1 import common_pb2, ingest_pb2, ingest_pb2_grpc

    data = b"cli-source-bytes"
    key = f"acme/cli-made/sources/{hashlib.sha256(data).hexdigest()}.mp4"
    store.put_bytes(Bucket.RAW, key, data)  # what the CLI's upload does
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.procs['ingest'].port}") as channel:
        job = await ingest_pb2_grpc.IngestServiceStub(channel).StartIngest(
            ingest_pb2.StartIngestRequest(
                scope=common_pb2.ProjectScope(tenant="acme", project="cli-made"), sources=[key]
            ),
            timeout=10,
        )
    async with await gateway.client("acme") as acme, await gateway.client("globex") as globex:
        r = await acme.get("/v1/projects/cli-made")
        assert r.status_code == 200, r.text
        assert "cli-made" in [
            p["name"] for p in (await acme.get("/v1/projects")).json()["projects"]
        ]
        r = await acme.get(f"/v1/projects/cli-made/ingest-jobs/{job.id}")
        assert r.status_code == 200 and r.json()["id"] == job.id
        _problem(await globex.get("/v1/projects/cli-made"), 404)
        _problem(await acme.post("/v1/projects", json={"name": "cli-made"}), 409)


async def test_projects_recorded_by_an_older_gateway_move_into_the_registry(gateway) -> None:
    state = gateway.state
    await state._create(
        "project.acme.legacy",
        {"name": "legacy", "description": "old", "created_at": "2025-01-01T00:00:00+00:00"},
    )
    assert await state.move_legacy_projects() == 1
    assert (await state.project("acme", "legacy"))["description"] == "old"
    assert await state._get("project.acme.legacy") is None
    assert await state.move_legacy_projects() == 0


async def test_progress_stream_reports_changes_not_heartbeats(gateway, bus, settings) -> None:
    """A worker's heartbeat rewrites the job record every few seconds; a client watching the
    job's events hears of what changed (progress, state), not of every beat."""
    from datetime import UTC, datetime

    from loraforge.runtime.jobs import JobState, JobStore

    jobs = await JobStore.open(bus.jetstream, settings.nats.jobs_bucket)
    async with await gateway.client("acme") as c:
        assert (await c.post("/v1/projects", json={"name": "beats"})).status_code == 201
        from loraforge.runtime.job_service import JobService

        job = await JobService("probe", jobs, bus).start("acme", "beats", {})  # no worker takes it
        job = await jobs.update(
            job, state=JobState.RUNNING, progress=0.1, beat_at=datetime.now(UTC)
        )
        events: list[tuple[str, dict]] = []

        async def watch() -> None:
            async with c.stream("GET", f"/v1/projects/beats/jobs/{job.id}/events") as s:
                kind = None
                async for line in s.aiter_lines():
                    if line.startswith("event: "):
                        kind = line[7:]
                    elif line.startswith("data: ") and kind:
                        events.append((kind, json.loads(line[6:])))
                        if kind == "done":
                            return

        watcher = asyncio.create_task(watch())
        for _ in range(6):  # beats: only beat_at (and updated_at) move
            await asyncio.sleep(0.15)
            job = await jobs.update(job, beat_at=datetime.now(UTC))
        job = await jobs.update(job, progress=0.5, message="half")
        await asyncio.sleep(0.3)
        await jobs.update(job, state=JobState.SUCCEEDED, message="done")
        await asyncio.wait_for(watcher, 15)
    assert [(k, e["progress"]) for k, e in events] == [
        ("progress", 0.1),
        ("progress", 0.5),
        ("done", 1.0),
    ]
