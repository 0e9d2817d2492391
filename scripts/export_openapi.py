"""Write the gateway's OpenAPI document to docs/openapi.json (no servers needed).

python scripts/export_openapi.py [OUTPUT]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from loraforge.gateway.app import create_app
from loraforge.gateway.clients import BackendClients
from loraforge.runtime.metrics import Metrics
from loraforge.runtime.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def openapi() -> dict[str, Any]:
    # The schema depends only on the routes: the clients and stores are never called here,
    # hence None where the app takes them.
    backends = BackendClients({})
    app = create_app(
        Settings(env="test"),
        Metrics("gateway"),
        backends=backends,
        store=None,  # type: ignore[arg-type]
        jobs_store=None,  # type: ignore[arg-type]
        state=None,  # type: ignore[arg-type]
    )
    return app.openapi()


def main(argv: list[str]) -> int:
    out = Path(argv[0]) if argv else ROOT / "docs" / "openapi.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(openapi(), indent=2, sort_keys=False) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
