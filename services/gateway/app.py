"""The HTTP API. Only the gateway speaks HTTP; it reaches the backends over gRPC.

At this stage it serves health and metrics; the REST API grows here (see issue: gateway).
"""

from __future__ import annotations

from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from loraforge.runtime.healthcheck import grpc_health
from loraforge.runtime.metrics import Metrics
from loraforge.runtime.settings import BACKEND_SERVICES, Settings


def create_app(settings: Settings, metrics: Metrics) -> FastAPI:
    app = FastAPI(title="loraforge", version="0.1.0")

    @app.get("/healthz", tags=["ops"])
    def healthz() -> dict[str, str]:
        """The gateway process is up."""
        return {"status": "SERVING"}

    @app.get("/readyz", tags=["ops"])
    def readyz(response: Response) -> dict[str, str]:
        """Every backend answers gRPC health with SERVING."""
        status = {name: grpc_health(settings.endpoints.grpc_target(name), timeout=1.0)
                  for name in BACKEND_SERVICES}
        if any(s != "SERVING" for s in status.values()):
            response.status_code = 503
        return status

    @app.get("/metrics", tags=["ops"], include_in_schema=False)
    def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app
