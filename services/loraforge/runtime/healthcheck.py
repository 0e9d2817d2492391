"""Health probes usable from code, the stack and container HEALTHCHECKs:

    python -m loraforge.runtime.healthcheck grpc 127.0.0.1:50051
    python -m loraforge.runtime.healthcheck http http://127.0.0.1:8080/healthz

Exit 0 when SERVING / HTTP 2xx, 1 otherwise, with the reason on stderr.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def grpc_health(target: str, service: str = "", timeout: float = 2.0) -> str:
    """'SERVING', 'NOT_SERVING', ... or 'UNREACHABLE: <why>'."""
    try:
        with grpc.insecure_channel(target) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            resp = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
            name: str = health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)
            return name
    except grpc.RpcError as exc:
        return f"UNREACHABLE: {exc.code().name} {exc.details() or ''}".strip()


def http_health(url: str, timeout: float = 2.0) -> str:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return "SERVING" if 200 <= resp.status < 300 else f"NOT_SERVING: HTTP {resp.status}"
    except urllib.error.HTTPError as exc:
        return f"NOT_SERVING: HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        return f"UNREACHABLE: {getattr(exc, 'reason', exc)}"


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in {"grpc", "http"}:
        sys.stderr.write("usage: healthcheck grpc HOST:PORT | healthcheck http URL\n")
        return 2
    status = grpc_health(argv[1]) if argv[0] == "grpc" else http_health(argv[1])
    if status != "SERVING":
        sys.stderr.write(f"{argv[1]}: {status}\n")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
