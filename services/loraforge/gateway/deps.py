"""What every router needs, handed to the app factory (no module singletons)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from fastapi import Depends, Path, Request

from loraforge.gateway.auth import AuthContext, Principal, require_key
from loraforge.gateway.clients import BackendClients
from loraforge.gateway.config import GatewayConfig
from loraforge.gateway.models import SLUG_PATTERN, Link
from loraforge.gateway.state import GatewayState
from loraforge.gateway.webhooks import WebhookDispatcher
from loraforge.runtime.jobs import JobStore
from loraforge.runtime.metrics import Metrics
from loraforge.runtime.settings import Settings
from loraforge.runtime.storage import Bucket, ObjectStore

T = TypeVar("T")


@dataclass
class Gateway:
    settings: Settings
    config: GatewayConfig
    backends: BackendClients
    store: ObjectStore
    jobs: JobStore  # read-only: SSE progress
    state: GatewayState
    auth: AuthContext
    metrics: Metrics
    webhooks: WebhookDispatcher | None = None  # when events are consumed
    extra: dict[str, Any] = field(default_factory=dict)

    async def blocking(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """The object store SDK is synchronous: run it off the event loop."""
        return await asyncio.to_thread(fn, *args, **kwargs)

    async def link(
        self, bucket: Bucket, key: str, *, size: int = 0, kind: str = "", ttl_s: int | None = None
    ) -> Link:
        ttl = ttl_s or self.config.download_url_ttl_s
        url = await self.blocking(self.store.presigned_get, bucket, key, ttl)
        return Link(
            key=key,
            url=url,
            expires_at=datetime.now(UTC) + timedelta(seconds=ttl),
            size=size,
            kind=kind,
        )


def gw(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gw  # set by app.create_app
    return gateway


PROJECT = Path(pattern=SLUG_PATTERN, examples=["jane-doe"], description="project name (a slug)")


async def project_of(
    request: Request, project: str = PROJECT, principal: Principal = Depends(require_key)
) -> tuple[Principal, str]:
    """The caller's project (404 when it is not one of its tenant's)."""
    await gw(request).state.project(principal.tenant, project)
    return principal, project
