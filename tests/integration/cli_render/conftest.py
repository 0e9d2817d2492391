"""Fixtures: the render service in-process on this test's NATS and S3, and `loraforge ...` run
in-process with the environment pointing at them (other services: closed ports)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import pytest

from loraforge.render.main import mount
from loraforge.runtime.host import ServiceProcess
from loraforge.stack.binaries import free_port


@pytest.fixture
async def render_service(settings) -> AsyncIterator[ServiceProcess]:
    proc = ServiceProcess("render", settings, mount, drain_delay_s=0.0)
    await proc.start()
    try:
        yield proc
    finally:
        await proc.stop()


def cli_env(settings_env: dict[str, str], render_target: str) -> dict[str, str]:
    env = {**settings_env, "LORAFORGE_ENDPOINTS__RENDER": render_target}
    # nothing listens on these: `loraforge jobs` must skip them with a note
    for name in ("INGEST", "CURATION", "CAPTIONING", "TRAINER"):
        env[f"LORAFORGE_ENDPOINTS__{name}"] = f"127.0.0.1:{free_port()}"
    return env


@pytest.fixture
def cli(settings_env, render_service, monkeypatch):
    """Runs `loraforge ...` in-process (typer's CliRunner, in a thread: the service shares this
    loop). Returns the typer Result."""
    import typer
    from typer.testing import CliRunner

    from loraforge.cli import jobs_cmd, render_cmd

    # The commands under test as main.app registers them (a group of commands).
    app = typer.Typer(pretty_exceptions_enable=False)
    app.callback()(lambda: None)
    render_cmd.register(app)
    jobs_cmd.register(app)

    for name in [k for k in os.environ if k.startswith("LORAFORGE_")]:
        monkeypatch.delenv(name)
    for name, value in cli_env(settings_env, f"127.0.0.1:{render_service.port}").items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("COLUMNS", "200")
    # the console reads COLUMNS once, when loraforge.cli.output is first imported: maybe by an
    # earlier test in this process (pytest-xdist workers run many files)
    from loraforge.cli import output

    for console in (output.console, output.err_console):
        monkeypatch.setattr(console, "width", 200)

    async def run(*args: str):
        return await asyncio.to_thread(CliRunner().invoke, app, list(args))

    return run
