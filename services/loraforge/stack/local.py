"""The no-Docker local stack: NATS (JetStream), SeaweedFS's S3 API, and every service, as
processes started from this machine's venv.

State lives in `<data_dir>/stack.json`: each component's pid and the kernel's start time for
it, so `down` stops exactly what `up` started (a recycled pid is never signalled) and nothing
else. NATS's and SeaweedFS's data live under the data dir and survive `down` + `up`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from loraforge.runtime.errors import LoraforgeError, Unavailable
from loraforge.runtime.healthcheck import grpc_health, http_health
from loraforge.runtime.settings import BACKEND_SERVICES, EndpointSettings, Settings
from loraforge.runtime.storage import ObjectStore
from loraforge.stack.binaries import (
    NatsLaunch,
    WeedLaunch,
    port_open,
    stop_process,
    write_s3_identities,
)

HOST = "127.0.0.1"


@dataclass
class Component:
    name: str
    kind: str  # nats | s3 | grpc | http
    address: str
    command: list[str]
    pid: int = 0
    started_at: float = 0.0  # /proc start time, identifies the pid we started
    log: str = ""
    env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    address: str
    pid: int
    running: bool
    health: str


class LocalStack:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.data_dir = settings.stack.data_dir.resolve()
        self.state_file = self.data_dir / "stack.json"

    # -- plan ---------------------------------------------------------------------------------

    def plan(self) -> list[Component]:
        st = self.settings.stack
        nats = NatsLaunch(
            port=st.nats_port,
            monitor_port=st.nats_monitor_port,
            store_dir=self.data_dir / "nats",
            host=HOST,
        )
        weed = WeedLaunch(
            s3_port=st.s3_port,
            base_port=st.weed_base_port,
            data_dir=self.data_dir / "s3",
            s3_config=self.data_dir / "s3.json",
            host=HOST,
        )
        components = [
            Component("nats", "nats", nats.url, nats.command()),
            Component("s3", "s3", weed.endpoint, weed.command()),
        ]
        base_env = self._service_env()
        for i, name in enumerate(BACKEND_SERVICES):
            port, metrics = st.service_base_port + i, st.metrics_base_port + i
            env = {
                **base_env,
                "LORAFORGE_SERVER__GRPC_PORT": str(port),
                "LORAFORGE_SERVER__METRICS_PORT": str(metrics),
            }
            components.append(
                Component(
                    name,
                    "grpc",
                    f"{HOST}:{port}",
                    [sys.executable, "-m", f"loraforge.{name}"],
                    env=env,
                )
            )
        env = {**base_env, "LORAFORGE_SERVER__HTTP_PORT": str(st.gateway_port)}
        components.append(
            Component(
                "gateway",
                "http",
                f"http://{HOST}:{st.gateway_port}",
                [sys.executable, "-m", "loraforge.gateway"],
                env=env,
            )
        )
        return components

    def client_settings(self) -> Settings:
        """Settings for a client of this stack (CLI commands): its NATS, S3 and services."""
        st = self.settings.stack
        endpoints = {
            name: f"{HOST}:{st.service_base_port + i}" for i, name in enumerate(BACKEND_SERVICES)
        }
        return self.settings.model_copy(
            update={
                "nats": self.settings.nats.model_copy(
                    update={"url": f"nats://{HOST}:{st.nats_port}"}
                ),
                "s3": self.settings.s3.model_copy(update={"endpoint": f"{HOST}:{st.s3_port}"}),
                "endpoints": EndpointSettings(
                    **endpoints, gateway=f"http://{HOST}:{st.gateway_port}"
                ),
            }
        )

    def _service_env(self) -> dict[str, str]:
        st, s3 = self.settings.stack, self.settings.s3
        inherited = {
            k: v
            for k, v in os.environ.items()
            if k.startswith("LORAFORGE_") and not k.startswith("LORAFORGE_SERVER__")
        }
        env = {
            **inherited,
            "LORAFORGE_NATS__URL": f"nats://{HOST}:{st.nats_port}",
            "LORAFORGE_S3__ENDPOINT": f"{HOST}:{st.s3_port}",
            "LORAFORGE_S3__ACCESS_KEY": s3.access_key,
            "LORAFORGE_S3__SECRET_KEY": s3.secret_key.get_secret_value(),
            "LORAFORGE_SERVER__HOST": HOST,
            "LORAFORGE_LOG__FORMAT": "json",
            # Services run with the data dir as cwd: hand them absolute paths.
            "LORAFORGE_STACK__DATA_DIR": str(self.data_dir),
            "LORAFORGE_MODELS__DIR": str(Path(self.settings.models.dir).resolve()),
        }
        for i, name in enumerate(BACKEND_SERVICES):
            env[f"LORAFORGE_ENDPOINTS__{name.upper()}"] = f"{HOST}:{st.service_base_port + i}"
        env["LORAFORGE_ENDPOINTS__GATEWAY"] = f"http://{HOST}:{st.gateway_port}"
        return env

    # -- up / down / status ------------------------------------------------------------------

    def up(
        self, timeout_s: float = 90.0, log: Callable[[str], None] = lambda msg: None
    ) -> list[ComponentStatus]:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "logs").mkdir(exist_ok=True)
        (self.data_dir / "nats").mkdir(exist_ok=True)
        (self.data_dir / "s3").mkdir(exist_ok=True)
        write_s3_identities(
            self.data_dir / "s3.json",
            self.settings.s3.access_key,
            self.settings.s3.secret_key.get_secret_value(),
        )
        state = self._load()
        try:
            for comp in self.plan():
                current = state.get(comp.name)
                if current is not None and _alive(current):
                    log(f"{comp.name} already running (pid {current.pid})")
                    continue
                self._check_port_free(comp)
                state[comp.name] = self._spawn(comp)
                self._save(state)
                log(f"started {comp.name} (pid {state[comp.name].pid}) on {comp.address}")
                self._wait_ready(state[comp.name], timeout_s)
        except BaseException:
            self._save(state)
            raise
        return self.status()

    def down(self, log: Callable[[str], None] = lambda msg: None) -> list[str]:
        """Services first (in parallel: each drains for a moment), then S3, then NATS."""
        state = self._load()
        infra = [n for n in ("s3", "nats") if n in state]
        services = [n for n in state if n not in infra]
        stopped: list[str] = []
        for group in (services, infra):
            alive = [state[n] for n in group if _alive(state[n])]
            with ThreadPoolExecutor(max_workers=max(1, len(alive))) as pool:
                for comp in pool.map(self._stop, alive):
                    stopped.append(comp.name)
                    log(f"stopped {comp.name} (pid {comp.pid})")
            for name in group:
                del state[name]
            self._save(state)
        if self.state_file.exists() and not state:
            self.state_file.unlink()
        return stopped

    @staticmethod
    def _stop(comp: Component) -> Component:
        # weed has been seen to ignore SIGTERM for 14 s: short grace, then SIGKILL.
        _stop_pid(comp.pid, 3.0 if comp.kind == "s3" else 15.0)
        return comp

    def status(self) -> list[ComponentStatus]:
        state = self._load()
        out = []
        for comp in self.plan():
            known = state.get(comp.name)
            running = known is not None and _alive(known)
            health = self._health(comp) if running else "NOT_RUNNING"
            out.append(
                ComponentStatus(comp.name, comp.address, known.pid if known else 0, running, health)
            )
        return out

    # -- internals ---------------------------------------------------------------------------

    def _check_port_free(self, comp: Component) -> None:
        host, _, port = comp.address.rpartition("/")[2].rpartition(":")
        if port_open(host or HOST, int(port)):
            raise Unavailable(
                f"port {port} for {comp.name} is already in use by another program; stop it or "
                f"choose other ports (LORAFORGE_STACK__* settings, see README)"
            )

    def _spawn(self, comp: Component) -> Component:
        log_path = self.data_dir / "logs" / f"{comp.name}.log"
        env = {**os.environ, **comp.env}
        with log_path.open("ab") as out:
            proc = subprocess.Popen(
                comp.command,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=self.data_dir,
                start_new_session=True,
            )
        comp.pid = proc.pid
        comp.started_at = _start_time(proc.pid)
        comp.log = str(log_path)
        comp.env = {}  # secrets stay out of the state file
        return comp

    def _wait_ready(self, comp: Component, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        last = ""
        while time.monotonic() < deadline:
            if not _alive(comp):
                raise LoraforgeError(
                    f"{comp.name} exited during start-up; see {comp.log}:\n{_tail(comp.log)}"
                )
            last = self._health(comp)
            if last == "SERVING":
                return
            time.sleep(0.3)
        raise Unavailable(
            f"{comp.name} not healthy after {timeout_s:.0f}s ({last}); see {comp.log}"
        )

    def _health(self, comp: Component) -> str:
        if comp.kind == "nats":
            url = f"http://{HOST}:{self.settings.stack.nats_monitor_port}/healthz?js-enabled-only=true"
            return http_health(url)
        if comp.kind == "s3":
            s3 = self.settings.s3.model_copy(update={"endpoint": comp.address})
            try:
                ObjectStore.connect(s3).ensure_buckets()
                return "SERVING"
            except LoraforgeError as exc:
                return f"UNREACHABLE: {exc}"
        if comp.kind == "grpc":
            return grpc_health(comp.address)
        return http_health(f"{comp.address}/healthz")

    def _load(self) -> dict[str, Component]:
        if not self.state_file.exists():
            return {}
        raw = json.loads(self.state_file.read_text())
        return {name: Component(**value) for name, value in raw.items()}

    def _save(self, state: dict[str, Component]) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({k: asdict(v) for k, v in state.items()}, indent=2))
        tmp.replace(self.state_file)


def _start_time(pid: int) -> float:
    """The kernel's start time of `pid` (clock ticks since boot); 0 where /proc is absent."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return float(fields[19])
    except (OSError, IndexError, ValueError):
        return 0.0


def _alive(comp: Component) -> bool:
    if comp.pid <= 0:
        return False
    try:
        os.kill(comp.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False  # someone else's process under a recycled pid
    if comp.started_at and _start_time(comp.pid) != comp.started_at:
        return False  # the pid was recycled by an unrelated process
    state = _proc_state(comp.pid)
    return state not in {"Z", "X"}


def _proc_state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return ""


def _stop_pid(pid: int, grace_s: float) -> None:
    """Stop a process we started in its own session (pgid == pid): TERM, wait, KILL."""

    class _Handle:
        def __init__(self, pid: int):
            self.pid = pid
            self.returncode: int | None = None

        def poll(self) -> int | None:
            try:
                done, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                # Not our child (started by an earlier `up`): alive while /proc says so.
                return None if _proc_state(self.pid) not in {"", "Z", "X"} else 0
            return None if done == 0 else status

        def wait(self, timeout: float) -> int:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self.poll() is not None:
                    return 0
                time.sleep(0.1)
            raise subprocess.TimeoutExpired("stack component", timeout)

        def terminate(self) -> None:
            os.kill(self.pid, 15)

        def kill(self) -> None:
            os.kill(self.pid, 9)

    stop_process(_Handle(pid), grace_s=grace_s)


def _tail(path: str, lines: int = 15) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
