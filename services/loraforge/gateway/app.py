"""The HTTP API. Only the gateway speaks HTTP; it reaches the backends over gRPC, the object
store for uploads and presigned links, and the job store (read-only) for progress streams.

`create_app` takes every client as an argument (no module singletons): `main.py` builds them
from settings, tests build them against their own NATS, S3 and in-process backends.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from loraforge.gateway import problems
from loraforge.gateway.auth import AuthContext, KeyCache, TokenBucket
from loraforge.gateway.clients import BackendClients
from loraforge.gateway.config import GatewayConfig
from loraforge.gateway.deps import Gateway
from loraforge.gateway.limits import BodyLimit
from loraforge.gateway.routers import (
    compat,
    datasets,
    deployments,
    jobs,
    keys,
    library,
    projects,
    review,
    training,
    uploads,
    webhooks,
)
from loraforge.gateway.state import GatewayState
from loraforge.gateway.webhooks import WebhookDispatcher
from loraforge.runtime.egress import EgressPolicy
from loraforge.runtime.events import EventBus
from loraforge.runtime.healthcheck import grpc_health
from loraforge.runtime.jobs import JobStore
from loraforge.runtime.metrics import Metrics
from loraforge.runtime.settings import Settings
from loraforge.runtime.storage import ObjectStore

DESCRIPTION = """\
loraforge turns footage or photos into trained LoRAs and renders with them.

**Auth**: every `/v1` call needs an API key (`X-API-Key: lf_...` or `Authorization: Bearer
lf_...`). A key belongs to one tenant and sees only that tenant's projects (anything else is
404). Review pages use short-lived `X-Review-Token`s from `.../review-link`.

**Errors** are `application/problem+json` (RFC 9457); `detail` says what to fix.
**Rate limits**: a token bucket per tenant (all its keys); 429 carries `Retry-After`.
**Progress**: `GET .../{job_id}/events` (server-sent events) or webhooks.
"""


def create_app(
    settings: Settings,
    metrics: Metrics,
    *,
    backends: BackendClients,
    store: ObjectStore,
    jobs_store: JobStore,
    state: GatewayState,
    bus: EventBus | None = None,
    config: GatewayConfig | None = None,
    webhook_dispatcher: WebhookDispatcher | None = None,
) -> FastAPI:
    """`bus` given: webhook deliveries run while the app runs (needs the ASGI lifespan)."""
    config = config or GatewayConfig()
    gw = Gateway(
        settings=settings,
        config=config,
        backends=backends,
        store=store,
        jobs=jobs_store,
        state=state,
        metrics=metrics,
        auth=AuthContext(
            state,
            TokenBucket(config.rate_per_s, config.rate_burst),
            KeyCache(config.key_cache_ttl_s),
        ),
        webhooks=webhook_dispatcher,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Every replica forgets a revoked key the moment any replica revokes it (auth.py).
        revocations = asyncio.create_task(gw.auth.keys.follow_revocations(state))
        if bus is not None and gw.webhooks is None:
            gw.webhooks = WebhookDispatcher(
                state,
                jobs_store,
                timeout_s=config.webhook_timeout_s,
                attempts=config.webhook_attempts,
                backoff_s=config.webhook_backoff_s,
                egress=EgressPolicy.from_settings(settings),
                concurrency_per_tenant=config.webhook_concurrency_per_tenant,
                breaker_failures=config.webhook_breaker_failures,
                cooldown_s=config.webhook_cooldown_s,
                backlog=config.webhook_backlog,
            )
            await gw.webhooks.start(bus)
        try:
            yield
        finally:
            revocations.cancel()
            if gw.webhooks is not None:
                await gw.webhooks.close()

    app = FastAPI(title="loraforge", version="0.1.0", description=DESCRIPTION, lifespan=lifespan)
    app.state.gw = gw
    problems.install(app)
    app.add_middleware(
        BodyLimit,
        upload_bytes=config.max_upload_bytes + 64 * 1024,
        body_bytes=config.max_body_bytes,
    )

    for module in (projects, keys, uploads, jobs, datasets, training, webhooks, review):
        app.include_router(module.router)
    for module in (library, compat):  # the LoRA library; seed 004's hosted API (/api/v1)
        app.include_router(module.router)
    app.include_router(deployments.router)

    @app.get("/healthz", tags=["ops"])
    def healthz() -> dict[str, str]:
        """The gateway process is up."""
        return {"status": "SERVING"}

    @app.get("/readyz", tags=["ops"], responses={503: {"description": "a backend is not serving"}})
    def readyz(response: Response) -> dict[str, str]:
        """Every backend answers gRPC health with SERVING."""
        status = {
            name: grpc_health(target, timeout=1.0) for name, target in backends.targets.items()
        }
        if any(s != "SERVING" for s in status.values()):
            response.status_code = 503
        return status

    @app.get("/metrics", tags=["ops"], include_in_schema=False)
    def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app
