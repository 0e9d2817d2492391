"""Property-based requests from the served OpenAPI (schemathesis): no request may get a 5xx."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import sys
from pathlib import Path

import pytest

from .seed import seed_dataset

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")


@pytest.mark.skipif(
    not (SCHEMATHESIS.exists() or shutil.which("schemathesis")),
    reason="schemathesis is not installed (pip install schemathesis)",
)
async def test_no_server_errors_on_generated_requests(gateway, store, tmp_path) -> None:
    async with await gateway.client("acme") as c:
        # something to find: a project (the name schemathesis tries from the examples) + dataset
        for name in ("jane-doe", "jane"):
            await c.post("/v1/projects", json={"name": name})
        seed_dataset(store, "acme", "jane-doe")
    key = await gateway.key("acme")
    cmd = [
        str(SCHEMATHESIS) if SCHEMATHESIS.exists() else "schemathesis",
        "run",
        f"{gateway.url}/openapi.json",
        "--checks",
        "not_a_server_error",
        "--phases",
        "examples,fuzzing",
        "--max-examples",
        "4",
        "--workers",
        "2",
        "--request-timeout",
        "10",
        "--suppress-health-check",
        "all",
        # streams: covered by the SSE tests; revoking its own key mid-run would turn every
        # later request into a 401
        "--exclude-path-regex",
        r"(.*/events|^/v1/keys/current)$",
        "-H",
        f"X-API-Key: {key}",
    ]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "", "NO_COLOR": "1"}
    proc = await asyncio.create_subprocess_exec(
        *cmd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=tmp_path,
        env=env,
    )
    # ~500 requests take ~40 s on an idle 2-core machine; 95 s were measured under load 14.
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=240)
    text = out.decode(errors="replace")
    assert proc.returncode == 0, text[-6000:]
    generated = re.search(r"(\d+) generated", text)
    assert generated and int(generated.group(1)) > 50, text[-3000:]
