"""Composition root of the gateway: settings -> clients -> app -> uvicorn (graceful on SIGTERM)."""

from __future__ import annotations

import asyncio
import sys

import uvicorn

from loraforge.gateway.app import create_app
from loraforge.gateway.auth import write_dev_key
from loraforge.gateway.clients import BackendClients
from loraforge.gateway.config import gateway_bucket
from loraforge.gateway.state import GatewayState
from loraforge.runtime.errors import ConfigurationError, Unavailable
from loraforge.runtime.host import connect_clients
from loraforge.runtime.logging import configure_logging
from loraforge.runtime.settings import Environment, Settings, load_settings


async def serve(settings: Settings) -> None:
    clients = await connect_clients("gateway", settings)  # NATS + S3 + job store, with retries
    backends = BackendClients.from_settings(settings.endpoints)
    state = await GatewayState.open(
        clients.bus.jetstream, gateway_bucket(settings), clients.jobs.projects
    )
    await state.index_legacy_keys()  # keys made before the key list existed
    await state.move_legacy_projects()  # projects made before the shared registry
    if settings.env is Environment.DEVELOPMENT:
        path = settings.stack.data_dir / "gateway-dev-key"
        await write_dev_key(state, settings.tenant, path)
        sys.stderr.write(f"gateway: development API key for tenant {settings.tenant!r} in {path}\n")
    app = create_app(
        settings,
        clients.metrics,
        backends=backends,
        store=clients.store,
        jobs_store=clients.jobs,
        state=state,
        bus=clients.bus,
    )
    config = uvicorn.Config(
        app,
        host=settings.server.host,
        port=settings.server.http_port or 8080,
        log_config=None,
        timeout_graceful_shutdown=int(settings.server.shutdown_grace_s),
    )
    try:
        await uvicorn.Server(config).serve()
    finally:
        await backends.close()
        await clients.bus.close()


def main() -> None:
    try:
        settings = load_settings()
    except ConfigurationError as exc:
        sys.stderr.write(f"gateway: {exc}\n")
        raise SystemExit(2) from None
    configure_logging(settings.log, "gateway")
    try:
        asyncio.run(serve(settings))
    except (Unavailable, ConfigurationError) as exc:
        sys.stderr.write(f"gateway: cannot start: {exc}\n")
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
