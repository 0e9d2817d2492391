"""Gateway load: job-status latency under a sustained request rate, and job submission
throughput, against the local stack (real gateway process -> gRPC -> services -> NATS KV).

    .venv/bin/python bench/load.py [--rate 200] [--seconds 30] [--submit 200]

What it does:
1. brings the local stack up in a private data dir on free ports (or uses a running one with
   `--use-stack`), and starts one more gateway process on it whose per-tenant rate limit is
   raised above the offered load (`--rate-limit`, default 2x the rate): the gateway's default
   limit (20 req/s per tenant) would answer most of this load with 429, and the bench
   measures serving, not throttling;
2. creates a few captioning jobs (on a dataset that does not exist: they fail at once in the
   worker, so the services stay idle while the gateway is measured) to have job ids to poll;
3. status: GET /v1/projects/{p}/captioning-jobs/{id} at a constant arrival rate over
   --connections keep-alive HTTP/1.1 connections spoken directly on asyncio streams (httpx
   costs ~1 ms of CPU a request, the generator's whole core at 200 req/s on a small machine),
   after a short warm-up that is not measured. Open loop: request i is due at start + i/rate
   and its latency runs from then, whether it left on time or waited for a free connection,
   so neither a slow server nor a slow generator is hidden (no coordinated omission). Prints
   p50/p90/p99/max, errors (anything but 200, timeouts included), the rate requests actually
   left at, and the CPU per request of the generator, the gateway, the captioning service and
   nats-server (/proc): what one core of the serving path can take when the generator runs
   on another machine;
4. submission: --submit POSTs of captioning jobs with distinct request ids, --concurrency at a
   time (closed loop), prints jobs/s, p50/p99 and errors.

Target (issue 19): status p99 < 50 ms at 200 req/s with 0 errors. Figures in bench/README.md.
LF_BENCH_PROFILE=<file> writes a cProfile (CPU time) of the bench gateway.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

import loraforge.gateway.app as app_module
from loraforge.gateway.config import GatewayConfig
from loraforge.gateway.main import main as gateway_main
from loraforge.runtime.settings import load_settings
from loraforge.stack.binaries import free_port, free_port_block
from loraforge.stack.local import LocalStack

ROOT = Path(__file__).resolve().parent.parent


def _serve_gateway(rate_limit: float) -> None:
    """The gateway's own composition root (`loraforge.gateway.main`), run as a child with the
    bench's per-tenant rate limit: `create_app` builds its default `GatewayConfig` from the
    name in its module, which only this process replaces."""
    app_module.GatewayConfig = lambda: dataclasses.replace(  # type: ignore[assignment]
        GatewayConfig(), rate_per_s=rate_limit, rate_burst=int(rate_limit * 2)
    )
    profile_to = os.environ.get("LF_BENCH_PROFILE")
    if not profile_to:
        gateway_main()
        return
    # Where the gateway's CPU goes under the bench's load (CPU time, not wall: the process
    # mostly waits on gRPC and NATS); written when uvicorn stops on the bench's SIGTERM.
    profiler = cProfile.Profile(time.process_time)

    def dump(signum: int, frame: object) -> None:
        # uvicorn restores this handler after its graceful shutdown and raises the signal
        # again, so this runs once the server has stopped.
        profiler.disable()
        profiler.dump_stats(profile_to)
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, dump)
    profiler.runcall(gateway_main)


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def _line(name: str, latencies: list[float], errors: int, extra: str = "") -> str:
    ms = [x * 1000 for x in latencies]
    return (
        f"{name:<12} n={len(latencies) + errors:<6} ok={len(latencies):<6} errors={errors:<4} "
        f"p50={_percentile(ms, 0.5):6.1f}ms p90={_percentile(ms, 0.9):6.1f}ms "
        f"p99={_percentile(ms, 0.99):6.1f}ms max={max(ms, default=float('nan')):6.1f}ms {extra}"
    )


async def _submit(client: httpx.AsyncClient, project: str, request_id: str) -> httpx.Response:
    return await client.post(
        f"/v1/projects/{project}/captioning-jobs",
        json={
            "dataset_id": "bench-no-such-dataset",
            "trigger": "ohwx_bench",
            "request_id": request_id,
        },
    )


class _Conn:
    """One keep-alive HTTP/1.1 connection speaking just enough of the protocol for a GET and
    its answer (status line, Content-Length body; the gateway never chunks these). httpx
    costs ~1 ms of CPU a request, which at 200 req/s is the generator's whole core on a
    small machine; this costs a few tens of microseconds."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def get(self, request: bytes) -> int:
        if self.writer is None or self.reader is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        self.writer.write(request)
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("the server closed the connection")
        length, close = 0, False
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection" and value.strip().lower() == b"close":
                close = True
        await self.reader.readexactly(length)
        if close:
            self.close()
        return int(status_line.split(b" ", 2)[1])

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def status_load(
    base: str,
    key: str,
    project: str,
    rate: float,
    seconds: float,
    jobs: list[str],
    connections: int,
    timeout_s: float = 5.0,
) -> tuple[list[float], list[str], float]:
    """Open loop: request i is due at start + i/rate and its latency runs from then, whether
    it left on time or waited for a free connection (a slow server or a slow generator shows
    as latency, never as a quietly lower rate: no coordinated omission). Returns the
    latencies of the 200s, the errors, and the rate at which requests actually left."""
    url = httpx.URL(base)
    host, port = url.host, url.port or 80
    requests = [
        (
            f"GET /v1/projects/{project}/captioning-jobs/{job} HTTP/1.1\r\n"
            f"Host: {host}:{port}\r\nX-API-Key: {key}\r\nAccept: application/json\r\n\r\n"
        ).encode()
        for job in jobs
    ]
    due: asyncio.Queue[tuple[int, float]] = asyncio.Queue()
    latencies: list[float] = []
    errors: list[str] = []
    left: list[float] = []
    total = int(rate * seconds)

    async def connection() -> None:
        conn = _Conn(host, port)
        try:
            while True:
                i, scheduled = await due.get()
                if i < 0:
                    return
                left.append(time.perf_counter())
                try:
                    status = await asyncio.wait_for(
                        conn.get(requests[i % len(requests)]), timeout_s
                    )
                except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError) as exc:
                    conn.close()
                    errors.append(type(exc).__name__)
                    continue
                if status == 200:
                    latencies.append(time.perf_counter() - scheduled)
                else:
                    errors.append(str(status))
        finally:
            conn.close()

    workers = [asyncio.create_task(connection()) for _ in range(connections)]
    start = time.perf_counter()
    sent = 0
    while sent < total:
        # Everything due by now is queued at once (a generator that woke late catches up with
        # the original schedule times), then sleep until the next one is due.
        now = time.perf_counter()
        due_now = min(total, int((now - start) * rate) + 1)
        for i in range(sent, due_now):
            due.put_nowait((i, start + i / rate))
        sent = due_now
        await asyncio.sleep(max(0.0, start + sent / rate - time.perf_counter()))
    for _ in workers:
        due.put_nowait((-1, 0.0))
    await asyncio.gather(*workers)
    achieved = len(left) / (max(left) - start) if left else 0.0
    return latencies, errors, achieved


async def submit_load(
    base: str, key: str, project: str, n: int, concurrency: int
) -> tuple[list[float], int, float]:
    latencies: list[float] = []
    errors = 0
    sem = asyncio.Semaphore(concurrency)
    run = f"{time.time_ns():x}"
    async with httpx.AsyncClient(base_url=base, headers={"X-API-Key": key}, timeout=10.0) as client:

        async def one(i: int) -> None:
            nonlocal errors
            async with sem:
                t0 = time.perf_counter()
                try:
                    r = await _submit(client, project, f"bench-{run}-{i}")
                except httpx.HTTPError:
                    errors += 1
                    return
                if r.status_code in (200, 201):
                    latencies.append(time.perf_counter() - t0)
                else:
                    errors += 1

        start = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
        elapsed = time.perf_counter() - start
    return latencies, errors, len(latencies) / elapsed


async def seed_jobs(base: str, key: str, project: str, n: int) -> list[str]:
    async with httpx.AsyncClient(base_url=base, headers={"X-API-Key": key}, timeout=10.0) as client:
        r = await client.post("/v1/projects", json={"name": project})
        if r.status_code not in (201, 409):  # 409: made by an earlier run on this stack
            r.raise_for_status()
        ids = []
        for i in range(n):
            r = await _submit(client, project, f"bench-seed-{i}")
            r.raise_for_status()
            ids.append(r.json()["id"])
        return ids


# The processes a job-status request passes through (besides the bench's gateway).
SERVING = ("captioning", "nats")


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a live process (Linux /proc; 0 where it is absent)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait_http(url: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the bench gateway exited ({proc.returncode}); see its log")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"the bench gateway at {url} did not become healthy in {timeout:.0f}s")


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rate", type=float, default=200.0, help="status requests per second")
    ap.add_argument("--seconds", type=float, default=30.0, help="how long the status load runs")
    ap.add_argument("--submit", type=int, default=200, help="job submissions to time")
    ap.add_argument(
        "--connections", type=int, default=32, help="keep-alive connections of the status load"
    )
    ap.add_argument("--concurrency", type=int, default=16, help="submissions in flight")
    ap.add_argument(
        "--rate-limit",
        type=float,
        default=0.0,
        help="the bench gateway's per-tenant limit (default: 2x --rate)",
    )
    ap.add_argument(
        "--use-stack",
        action="store_true",
        help="use the stack of the current LORAFORGE_* settings instead of a private one",
    )
    ap.add_argument("--serve-gateway", type=float, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_gateway is not None:
        _serve_gateway(args.serve_gateway)
        return

    tmp = None
    if not args.use_stack:
        tmp = tempfile.mkdtemp(prefix="lf-load-")
        os.environ.update(
            {
                "LORAFORGE_STACK__DATA_DIR": f"{tmp}/data",
                "LORAFORGE_STACK__NATS_PORT": str(free_port()),
                "LORAFORGE_STACK__NATS_MONITOR_PORT": str(free_port()),
                "LORAFORGE_STACK__S3_PORT": str(free_port()),
                "LORAFORGE_STACK__WEED_BASE_PORT": str(free_port_block(7)),
                "LORAFORGE_STACK__GATEWAY_PORT": str(free_port()),
                "LORAFORGE_STACK__SERVICE_BASE_PORT": str(free_port_block(5)),
                "LORAFORGE_STACK__METRICS_BASE_PORT": str(free_port_block(5)),
            }
        )
    stack = LocalStack(load_settings())
    print("bringing the stack up...", flush=True)
    stack.up(timeout_s=180)
    gateway = None
    finished = False
    try:
        client = stack.client_settings()
        port = free_port()
        env = {
            **os.environ,
            **stack._service_env(),
            "LORAFORGE_SERVER__HTTP_PORT": str(port),
            "LORAFORGE_ENV": "development",
        }
        data_dir = Path(env["LORAFORGE_STACK__DATA_DIR"])
        log = (data_dir / "logs" / "bench-gateway.log").open("ab")
        limit = args.rate_limit or 2 * args.rate
        gateway = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--serve-gateway", str(limit)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=data_dir,
            start_new_session=True,
        )
        base = f"http://127.0.0.1:{port}"
        _wait_http(base, gateway)
        key = (data_dir / "gateway-dev-key").read_text().strip()
        project = "bench"
        print(
            f"gateway {base} (rate limit {limit:.0f}/s per tenant); tenant "
            f"{client.tenant!r}; load average {os.getloadavg()[0]:.2f}",
            flush=True,
        )
        jobs = asyncio.run(seed_jobs(base, key, project, 20))
        time.sleep(3)  # the seeded jobs fail in the worker; let the services go idle
        # Warm-up, not measured: FastAPI builds its routes' handlers on the first request and
        # gRPC its channel, seconds of CPU that a gateway pays once in its life.
        asyncio.run(status_load(base, key, project, 50, 2, jobs, 4))
        pids = {"gateway": gateway.pid}
        pids.update({c.name: c.pid for c in stack.status() if c.running and c.name in SERVING})
        cpu_before = {name: _cpu_s(pid) for name, pid in pids.items()}
        own_before = time.process_time()
        lat, errors, per_s = asyncio.run(
            status_load(base, key, project, args.rate, args.seconds, jobs, args.connections)
        )
        own = time.process_time() - own_before
        n = len(lat) + len(errors)
        print(
            f"status: offered {args.rate:.0f} req/s for {args.seconds:.0f}s over "
            f"{args.connections} keep-alive connections, sent at {per_s:.0f} req/s"
        )
        kinds = f"errors by kind: {sorted(set(errors))}" if errors else ""
        print(_line("job status", lat, len(errors), kinds))
        # CPU per request of each process on the serving path: what a core of each can serve
        # when the generator runs on another machine.
        parts = [f"generator {own * 1000 / max(n, 1):.2f}"]
        serving = 0.0
        for name, pid in pids.items():
            used = _cpu_s(pid) - cpu_before[name]
            serving += used
            parts.append(f"{name} {used * 1000 / max(n, 1):.2f}")
        print(
            f"CPU ms per status request: {', '.join(parts)}; serving path "
            f"{serving * 1000 / max(n, 1):.2f} ms (one core serves "
            f"{n / serving if serving else float('nan'):.0f} req/s)"
        )
        lat, errors, per_s = asyncio.run(
            submit_load(base, key, project, args.submit, args.concurrency)
        )
        print(
            _line(
                "submission",
                lat,
                errors,
                f"throughput={per_s:.0f} jobs/s (concurrency {args.concurrency})",
            )
        )
        print(f"load average after: {os.getloadavg()[0]:.2f}")
        finished = True
    finally:
        if gateway is not None:
            gateway.terminate()
            try:
                gateway.wait(15)
            except subprocess.TimeoutExpired:
                gateway.kill()
        if tmp is not None:
            stack.down()
            if finished:  # the private stack's data and logs; kept when something failed
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                print(f"the stack's logs are in {tmp}/data/logs", file=sys.stderr)


if __name__ == "__main__":
    main()
