"""Composition root of the gateway: settings -> app -> uvicorn (graceful on SIGTERM)."""

from __future__ import annotations

import sys

from loraforge.runtime.errors import ConfigurationError
from loraforge.runtime.logging import configure_logging
from loraforge.runtime.metrics import Metrics
from loraforge.runtime.settings import load_settings


def main() -> None:
    import uvicorn

    from loraforge.gateway.app import create_app

    try:
        settings = load_settings()
    except ConfigurationError as exc:
        sys.stderr.write(f"gateway: {exc}\n")
        raise SystemExit(2) from None
    configure_logging(settings.log, "gateway")
    app = create_app(settings, Metrics("gateway"))
    port = settings.server.http_port or 8080
    uvicorn.run(app, host=settings.server.host, port=port, log_config=None,
                timeout_graceful_shutdown=int(settings.server.shutdown_grace_s))


if __name__ == "__main__":
    main()
