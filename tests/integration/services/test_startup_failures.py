"""A service whose dependencies are missing says which address it tried, retries with
back-off, and exits non-zero instead of hanging or printing a traceback."""

from __future__ import annotations

import os
import subprocess
import sys

from loraforge.stack.binaries import free_port


def _run_service(env_overrides: dict[str, str]) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LORAFORGE_")}
    env.update(
        {
            "LORAFORGE_SERVER__STARTUP_ATTEMPTS": "2",
            "LORAFORGE_SERVER__STARTUP_BACKOFF_S": "0.05",
            "LORAFORGE_NATS__CONNECT_TIMEOUT_S": "0.5",
            **env_overrides,
        }
    )
    return subprocess.run(
        [sys.executable, "-m", "loraforge.ingest"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_unreachable_nats_exits_2_naming_the_address() -> None:
    url = f"nats://127.0.0.1:{free_port()}"
    result = _run_service({"LORAFORGE_NATS__URL": url})
    assert result.returncode == 2
    assert url in result.stderr
    assert "attempt" in result.stderr  # the retry is visible
    assert "Traceback" not in result.stderr


def test_unreachable_s3_exits_2_naming_the_address(infra) -> None:
    endpoint = f"127.0.0.1:{free_port()}"
    result = _run_service(
        {"LORAFORGE_NATS__URL": infra.nats_url, "LORAFORGE_S3__ENDPOINT": endpoint}
    )
    assert result.returncode == 2
    assert endpoint in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_setting_exits_2() -> None:
    result = _run_service({"LORAFORGE_NATS__ULR": "nats://x:1"})
    assert result.returncode == 2
    assert "LORAFORGE_NATS__ULR" in result.stderr


def test_placeholder_secret_refused_in_production() -> None:
    result = _run_service({"LORAFORGE_ENV": "production", "LORAFORGE_S3__SECRET_KEY": "change-me"})
    assert result.returncode == 2
    assert "LORAFORGE_S3__SECRET_KEY" in result.stderr
