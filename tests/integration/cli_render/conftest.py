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


def cli_env(settings, render_target: str) -> dict[str, str]:
    """Settings refuse unknown LORAFORGE_* variables: only real ones, from the test settings."""
    nats, s3 = settings.nats, settings.s3
    env = {
        "LORAFORGE_ENV": "test",
        "LORAFORGE_NATS__URL": nats.url,
        "LORAFORGE_NATS__STREAM": nats.stream,
        "LORAFORGE_NATS__SUBJECT_ROOT": nats.subject_root,
        "LORAFORGE_NATS__JOBS_BUCKET": nats.jobs_bucket,
        "LORAFORGE_S3__ENDPOINT": s3.endpoint,
        "LORAFORGE_S3__ACCESS_KEY": s3.access_key,
        "LORAFORGE_S3__SECRET_KEY": s3.secret_key.get_secret_value(),
        "LORAFORGE_S3__BUCKET_PREFIX": s3.bucket_prefix,
        "LORAFORGE_STACK__DATA_DIR": str(settings.stack.data_dir),
        "LORAFORGE_ENDPOINTS__RENDER": render_target,
    }
    # nothing listens on these: `loraforge jobs` must skip them with a note
    for name in ("INGEST", "CURATION", "CAPTIONING", "TRAINER"):
        env[f"LORAFORGE_ENDPOINTS__{name}"] = f"127.0.0.1:{free_port()}"
    return env


@pytest.fixture
def cli(settings, render_service, monkeypatch):
    """Runs `loraforge ...` in-process (typer's CliRunner, in a thread: the service shares this
    loop). Returns the typer Result."""
    import typer
    from loraforge.cli import jobs_cmd, render_cmd
    from typer.testing import CliRunner

    # The commands under test as main.app registers them (a group of commands).
    app = typer.Typer(pretty_exceptions_enable=False)
    app.callback()(lambda: None)
    render_cmd.register(app)
    jobs_cmd.register(app)

    for name in [k for k in os.environ if k.startswith("LORAFORGE_")]:
        monkeypatch.delenv(name)
    for name, value in cli_env(settings, f"127.0.0.1:{render_service.port}").items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("COLUMNS", "200")

    async def run(*args: str):
        return await asyncio.to_thread(CliRunner().invoke, app, list(args))

    return run
