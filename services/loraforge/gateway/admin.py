"""Operator commands on the gateway's records, run where NATS is reachable (a gateway pod,
the stack's host), not through the HTTP API: a leaked key must not be able to run them.

    python -m loraforge.gateway.admin keys list --tenant acme
    python -m loraforge.gateway.admin keys create --tenant acme [--name ci]
    python -m loraforge.gateway.admin keys revoke --tenant acme --id 1a2b3c4d
    python -m loraforge.gateway.admin keys revoke-all --tenant acme

Revocations reach every gateway replica within its key cache's ttl (10 s by default).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from loraforge.gateway.auth import create_api_key
from loraforge.gateway.config import gateway_bucket
from loraforge.gateway.state import GatewayState
from loraforge.runtime.errors import ConfigurationError, LoraforgeError
from loraforge.runtime.events import EventBus
from loraforge.runtime.jobs import JobStore
from loraforge.runtime.settings import Settings, load_settings


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m loraforge.gateway.admin", description="operator commands on API keys"
    )
    sub = p.add_subparsers(dest="what", required=True)
    keys = sub.add_parser("keys").add_subparsers(dest="action", required=True)
    for name, help_ in (
        ("list", "the tenant's keys (ids, never secrets)"),
        ("create", "a new key for the tenant (printed once)"),
        ("revoke", "one key by id, and every key minted from it"),
        ("revoke-all", "every key of the tenant (a leak of unknown extent)"),
    ):
        a = keys.add_parser(name, help=help_)
        a.add_argument("--tenant", required=True)
        if name == "create":
            a.add_argument("--name", default="admin")
        if name == "revoke":
            a.add_argument("--id", required=True, dest="key_id")
    return p


async def run(settings: Settings, argv: list[str]) -> dict[str, Any]:
    args = parser().parse_args(argv)
    bus = await EventBus.connect(settings.nats, name="gateway-admin")
    try:
        jobs = await JobStore.open(bus.jetstream, settings.nats.jobs_bucket)
        state = await GatewayState.open(bus.jetstream, gateway_bucket(settings), jobs.projects)
        if args.action == "list":
            return {
                "keys": [
                    {k: v for k, v in r.items() if k != "digest"}
                    for r in await state.keys(args.tenant)
                ]
            }
        if args.action == "create":
            return {"key": await create_api_key(state, args.tenant, name=args.name)}
        if args.action == "revoke":
            revoked = await state.revoke_key_id(args.tenant, args.key_id)
        else:
            revoked = await state.revoke_tenant_keys(args.tenant)
        return {"revoked": [r["key_id"] for r in revoked]}
    finally:
        await bus.close()


def main(argv: list[str] | None = None) -> None:
    try:
        out = asyncio.run(run(load_settings(), sys.argv[1:] if argv is None else argv))
    except (ConfigurationError, LoraforgeError) as exc:
        sys.stderr.write(f"gateway admin: {exc}\n")
        raise SystemExit(2) from None
    print(json.dumps(out, indent=2, default=str))


if __name__ == "__main__":
    main()
