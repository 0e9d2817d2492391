"""A private local stack per test: every port free, data in the test's tmp dir."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from loraforge.stack.binaries import free_port, free_port_block


@pytest.fixture
def stack_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LORAFORGE_")}
    services = free_port_block(5)
    metrics = free_port_block(5)
    env.update(
        {
            "LORAFORGE_STACK__DATA_DIR": str(tmp_path / "data"),
            "LORAFORGE_STACK__NATS_PORT": str(free_port()),
            "LORAFORGE_STACK__NATS_MONITOR_PORT": str(free_port()),
            "LORAFORGE_STACK__S3_PORT": str(free_port()),
            "LORAFORGE_STACK__WEED_BASE_PORT": str(free_port_block(7)),
            "LORAFORGE_STACK__GATEWAY_PORT": str(free_port()),
            "LORAFORGE_STACK__SERVICE_BASE_PORT": str(services),
            "LORAFORGE_STACK__METRICS_BASE_PORT": str(metrics),
        }
    )
    yield env
    # Whatever happened in the test, leave nothing running.
    cli(env, "stack", "down")


def cli(
    env: dict[str, str], *args: str, check: bool = False, timeout: float = 200
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "loraforge.cli.main", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=check,
    )
