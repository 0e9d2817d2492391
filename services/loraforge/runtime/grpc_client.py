"""gRPC channels to the backends, for the gateway, the CLI and service-to-service calls.

Retries are gRPC's own (service config): UNAVAILABLE is retried with exponential back-off,
which covers a service that is restarting. Every call should still pass a deadline
(`timeout=`); `DEFAULT_TIMEOUT_S` is the one to use when nothing tighter applies.
"""

from __future__ import annotations

import json

import grpc

DEFAULT_TIMEOUT_S = 10.0

_SERVICE_CONFIG = json.dumps(
    {
        "methodConfig": [
            {
                "name": [
                    {"service": f"loraforge.v1.{svc}Service"}
                    for svc in ("Ingest", "Curation", "Captioning", "Trainer", "Render")
                ],
                "retryPolicy": {
                    "maxAttempts": 4,
                    "initialBackoff": "0.2s",
                    "maxBackoff": "2s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ]
    }
)

_OPTIONS = [
    ("grpc.enable_retries", 1),
    ("grpc.service_config", _SERVICE_CONFIG),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
]


def aio_channel(target: str) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(target, options=_OPTIONS)


def sync_channel(target: str) -> grpc.Channel:
    return grpc.insecure_channel(target, options=_OPTIONS)


def unavailable_hint(target: str, service: str) -> str:
    return (
        f"the {service} service at {target} is not reachable; start the local stack with "
        f"`loraforge stack up` or set LORAFORGE_ENDPOINTS__{service.upper()}"
    )
