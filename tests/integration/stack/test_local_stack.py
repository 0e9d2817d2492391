"""`loraforge stack up | status | down` for real: every process, every health check."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from loraforge.runtime.events import Event, EventBus
from loraforge.runtime.settings import NatsSettings, S3Settings
from loraforge.runtime.storage import Bucket, ObjectStore

from .conftest import cli as _cli

pytestmark = pytest.mark.timeout(240)


def _pids(status: dict) -> list[int]:
    return [c["pid"] for c in status["components"] if c["pid"]]


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in {"Z", "X"}


def test_up_status_down_and_data_survives(stack_env: dict[str, str]) -> None:
    up = _cli(stack_env, "stack", "up", "--json")
    assert up.returncode == 0, up.stdout + up.stderr
    status = json.loads(_cli(stack_env, "stack", "status", "--json").stdout)
    names = {c["name"]: c for c in status["components"]}
    assert set(names) == {
        "nats",
        "s3",
        "gateway",
        "ingest",
        "curation",
        "captioning",
        "trainer",
        "render",
    }
    assert all(c["health"] == "SERVING" for c in names.values()), names
    first_pids = _pids(status)

    # Put data in, stop, start again: it is still there.
    nats_url = names["nats"]["address"]
    s3 = S3Settings(endpoint=names["s3"]["address"])  # the stack's default dev credentials
    store = ObjectStore.connect(s3)
    store.put_bytes(Bucket.RAW, "default/demo/sources/keep.txt", b"survives")

    async def publish() -> None:
        bus = await EventBus.connect(NatsSettings(url=nats_url), name="test")
        await bus.publish(Event(id="survivor", type="test.kept", tenant="default", project="demo"))
        await bus.close()

    asyncio.run(publish())

    down = _cli(stack_env, "stack", "down", "--json")
    assert down.returncode == 0, down.stderr
    assert sorted(json.loads(down.stdout)["stopped"]) == sorted(names)
    assert [pid for pid in first_pids if _running(pid)] == []  # nothing left behind
    after = json.loads(_cli(stack_env, "stack", "status", "--json").stdout)
    assert all(c["health"] == "NOT_RUNNING" for c in after["components"])

    assert _cli(stack_env, "stack", "up", "--json").returncode == 0
    assert store.get_bytes(Bucket.RAW, "default/demo/sources/keep.txt") == b"survives"

    async def still_there() -> int:
        bus = await EventBus.connect(NatsSettings(url=nats_url), name="test")
        info = await bus.jetstream.stream_info("LF")
        await bus.close()
        return info.state.messages

    assert asyncio.run(still_there()) >= 1
    final = json.loads(_cli(stack_env, "stack", "down", "--json").stdout)
    assert len(final["stopped"]) == 8


def test_down_never_signals_a_process_it_did_not_start(
    stack_env: dict[str, str], tmp_path: Path
) -> None:
    data = Path(stack_env["LORAFORGE_STACK__DATA_DIR"])
    data.mkdir(parents=True)
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        # A stale state file naming a live pid with another start time (a recycled pid).
        state = {
            "nats": {
                "name": "nats",
                "kind": "nats",
                "address": "x",
                "command": [],
                "pid": bystander.pid,
                "started_at": 1.0,
                "log": "",
                "env": {},
            }
        }
        (data / "stack.json").write_text(json.dumps(state))
        assert _cli(stack_env, "stack", "down").returncode == 0
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()


def test_port_taken_is_reported(stack_env: dict[str, str]) -> None:
    import socket

    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", int(stack_env["LORAFORGE_STACK__NATS_PORT"])))
        blocker.listen()
        result = _cli(stack_env, "stack", "up")
    assert result.returncode != 0
    assert "already in use" in result.stderr + result.stdout


def test_unknown_setting_is_refused(stack_env: dict[str, str]) -> None:
    result = _cli({**stack_env, "LORAFORGE_STAK__NATS_PORT": "1"}, "stack", "status")
    assert result.returncode == 2
    assert "LORAFORGE_STAK__NATS_PORT" in result.stderr
