"""`loraforge lora ...` over both transports: the local stack (the CLI reads and writes the
library in the object store) and a gateway (`--api URL --key KEY`), on a finished run's
record in the real object store."""

from __future__ import annotations

import asyncio
import json

import pytest
from tests.unit.library.conftest import write_run
from typer.testing import CliRunner

from loraforge.cli.main import app
from loraforge.library import layout
from loraforge.runtime.keys import ProjectRef

pytestmark = pytest.mark.timeout(180)


def _cli(env: dict[str, str], *args: str) -> tuple[int, dict | list | None, str]:
    result = CliRunner().invoke(app, list(args), env=env)
    try:
        body = json.loads(result.stdout)
    except ValueError:
        body = None
    return result.exit_code, body, result.stdout


async def test_lora_commands_locally_and_through_the_gateway(gateway, store, settings_env) -> None:
    write_run(store, tenant="acme", project="jane")  # run0001: best step 4, checkpoints 2..8
    local = {**settings_env, "LF_API": "", "LF_API_KEY": ""}
    p = ("-p", "jane", "--tenant", "acme", "--json")

    code, v1, _ = _cli(local, "lora", "promote", "run0001", "--name", "money-rain", *p)
    assert code == 0 and (v1["ref"], v1["chosen"], v1["step"]) == ("money-rain:1", "automatic", 4)
    code, body, _ = _cli(
        local, "lora", "promote", "run0001", "--name", "money-rain", "--checkpoint", "step-6", *p
    )
    assert code == 2 and "not the run's automatic pick" in body["error"]
    code, v2, _ = _cli(
        local,
        "lora",
        "promote",
        "run0001",
        "--name",
        "money-rain",
        "--checkpoint",
        "step-6",
        "--reason",
        "sharper bills",
        *p,
    )
    assert code == 0 and (v2["version"], v2["chosen"], v2["reason"]) == (2, "user", "sharper bills")
    assert _cli(local, "lora", "tag", "money-rain:1", "prod", *p)[0] == 0
    code, shown, _ = _cli(local, "lora", "show", "money-rain:prod", *p)
    assert code == 0 and shown["version"] == 1
    code, cps, _ = _cli(local, "lora", "checkpoints", "run0001", *p)
    assert [c["step"] for c in cps["checkpoints"]] == [2, 4, 6, 8]
    store.put_json(
        "loras",
        layout.deployment_key(ProjectRef("acme", "jane"), "rain"),
        {"name": "rain", "lora": {"name": "money-rain", "version": 2}},
    )
    code, body, _ = _cli(local, "lora", "rm", "money-rain:2", *p)
    assert code == 2 and "used by deployment(s) rain" in body["error"]

    # the same library through the gateway
    await gateway.state.create_project("acme", "jane", "")
    remote = {**settings_env, "LF_API": gateway.url, "LF_API_KEY": await gateway.key("acme")}
    r = ("-p", "jane", "--json")
    code, listed, _ = await asyncio.to_thread(_cli, remote, "lora", "list", *r)
    assert code == 0 and listed["loras"][0]["aliases"] == {"latest": 2, "prod": 1}
    code, v3, _ = await asyncio.to_thread(
        _cli,
        remote,
        "lora",
        "promote",
        "run0001",
        "--name",
        "money-rain",
        "--checkpoint",
        "last",
        "--reason",
        "longest trained",
        *r,
    )
    assert code == 0 and (v3["version"], v3["step"]) == (3, 8)
    code, moved, _ = await asyncio.to_thread(
        _cli, remote, "lora", "tag", "money-rain:3", "prod", *r
    )
    assert code == 0 and moved["version"] == 3 and [h["version"] for h in moved["history"]] == [1]
    code, body, _ = await asyncio.to_thread(_cli, remote, "lora", "rm", "money-rain:2", *r)
    assert code == 2 and "used by deployment(s) rain" in body["error"]
    code, gone, _ = await asyncio.to_thread(_cli, remote, "lora", "rm", "money-rain:1", *r)
    assert code == 0 and gone["deleted"] == "money-rain:1" and gone["aliases_removed"] == []

    # another tenant: 404 for everything of acme's
    await gateway.state.create_project("globex", "jane", "")
    other = {**remote, "LF_API_KEY": await gateway.key("globex")}
    code, body, _ = await asyncio.to_thread(_cli, other, "lora", "show", "money-rain:3", *r)
    assert code == 2 and "not found (404)" in body["error"]
    code, body, _ = await asyncio.to_thread(
        _cli, other, "lora", "promote", "run0001", "--name", "stolen", *r
    )
    assert code == 2 and "not found (404)" in body["error"]
