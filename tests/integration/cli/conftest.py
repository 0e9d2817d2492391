"""Fixtures: test footage made once per session, the captioning service in-process, and the
environment that points the CLI at this test's NATS, S3 and service."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from loraforge.captioning.main import mount
from loraforge.runtime.host import ServiceProcess

from .seed import LocalClip, make_local_clips


@pytest.fixture(scope="session")
def local_clips(tmp_path_factory) -> list[LocalClip]:
    """11 clips: one more than the hosted Wan minimum of 10 samples."""
    return make_local_clips(tmp_path_factory.mktemp("cli-footage"), 11)


@pytest.fixture
async def captioning(settings) -> AsyncIterator[ServiceProcess]:
    proc = ServiceProcess("captioning", settings, mount, drain_delay_s=0.0)
    await proc.start()
    try:
        yield proc
    finally:
        await proc.stop()


def cli_env(settings_env: dict[str, str], captioning: ServiceProcess) -> dict[str, str]:
    return {**settings_env, "LORAFORGE_ENDPOINTS__CAPTIONING": f"127.0.0.1:{captioning.port}"}


@dataclass
class Ran:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def _clean_env(overrides: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LORAFORGE_")}
    return {**env, **overrides, "COLUMNS": "200"}


@pytest.fixture
def cli(settings_env, captioning, monkeypatch):
    """Runs `loraforge ...` in-process (typer's CliRunner, in a thread: the service shares this
    loop). Settings refuse unknown LORAFORGE_* variables, so only ours are set."""
    from typer.testing import CliRunner

    from loraforge.cli.main import app

    for name in [k for k in os.environ if k.startswith("LORAFORGE_")]:
        monkeypatch.delenv(name)
    for name, value in cli_env(settings_env, captioning).items():
        monkeypatch.setenv(name, value)
    # the console read COLUMNS when loraforge.cli.output was first imported, maybe by an
    # earlier test in this process (pytest-xdist workers run many files)
    from loraforge.cli import output

    for console in (output.console, output.err_console):
        monkeypatch.setattr(console, "width", 200)

    async def run(*args: str):
        return await asyncio.to_thread(CliRunner().invoke, app, list(args))

    return run


@pytest.fixture
def cli_process(settings_env, captioning):
    """Runs `python -m loraforge.cli.main ...` as its own process, as a user does. Used for
    the commands that run ffmpeg: forking this process, which hosts the gRPC service, lets
    gRPC's threads write into the child's stderr, which imageio's ffmpeg parsing trips on."""
    base = cli_env(settings_env, captioning)

    async def run(*args: str, **env: str) -> Ran:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "loraforge.cli.main",
            *args,
            env=_clean_env({**base, **env}),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 120)
        return Ran(proc.returncode or 0, out.decode(), err.decode())

    return run
