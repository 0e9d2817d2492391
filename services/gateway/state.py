"""The gateway's own records, in one JetStream key-value bucket (see `config.gateway_bucket`):

    apikey.<sha256 of the key>          {tenant, key_id, name, created_at}
    project.<tenant>.<project>          {name, description, created_at}
    webhook.<tenant>.<project>.<id>     {id, url, secret, job_id, created_at}
    secret.page-token                   random signing key of review-page tokens

A KV bucket, not the object store: records are tiny, `create` is atomic (no two projects of
the same name, one signing secret for every replica), reads are fast, and NATS is already
what every process connects to. Nothing here is a backend's data.
"""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime
from typing import Any

from loraforge.runtime.errors import AlreadyExists, NotFound
from loraforge.runtime.keys import validate_slug
from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, KeyWrongLastSequenceError


def now() -> datetime:
    return datetime.now(UTC)


class GatewayState:
    def __init__(self, kv: Any, bucket: str):
        self._kv = kv
        self.bucket = bucket

    @classmethod
    async def open(cls, js: JetStreamContext, bucket: str) -> GatewayState:
        try:
            kv = await js.key_value(bucket)
        except BucketNotFoundError:
            try:
                kv = await js.create_key_value(js_api.KeyValueConfig(
                    bucket=bucket, history=1, storage=js_api.StorageType.FILE))
            except Exception:  # noqa: BLE001 - another replica created it first
                kv = await js.key_value(bucket)
        return cls(kv, bucket)

    # -- generic -----------------------------------------------------------------------------

    async def _get(self, key: str) -> dict[str, Any] | None:
        try:
            entry = await self._kv.get(key)
        except KeyNotFoundError:
            return None
        if entry.value is None:
            return None
        return json.loads(entry.value)

    async def _create(self, key: str, value: dict[str, Any]) -> None:
        try:
            await self._kv.create(key, json.dumps(value, default=str).encode())
        except KeyWrongLastSequenceError:
            raise AlreadyExists(key) from None

    async def _keys(self, pattern: str) -> list[str]:
        watcher = await self._kv.watch(pattern, ignore_deletes=True, meta_only=True)
        keys: list[str] = []
        try:
            async for entry in watcher:
                if entry is None:
                    break
                if entry.operation is None:
                    keys.append(entry.key)
        finally:
            await watcher.stop()
        return keys

    async def _values(self, pattern: str) -> list[dict[str, Any]]:
        out = []
        for key in await self._keys(pattern):
            value = await self._get(key)
            if value is not None:
                out.append(value)
        return out

    # -- API keys ----------------------------------------------------------------------------

    async def add_key(self, digest: str, record: dict[str, Any]) -> None:
        await self._create(f"apikey.{digest}", record)

    async def key_record(self, digest: str) -> dict[str, Any] | None:
        return await self._get(f"apikey.{digest}")

    async def revoke_key(self, digest: str) -> None:
        await self._kv.delete(f"apikey.{digest}")

    # -- projects ----------------------------------------------------------------------------

    async def create_project(self, tenant: str, name: str, description: str) -> dict[str, Any]:
        validate_slug(tenant, "tenant")
        validate_slug(name, "project")
        record = {"name": name, "description": description, "created_at": now().isoformat()}
        try:
            await self._create(f"project.{tenant}.{name}", record)
        except AlreadyExists:
            raise AlreadyExists(
                f"project {name!r} already exists; pick another name or use it") from None
        return record

    async def project(self, tenant: str, name: str) -> dict[str, Any]:
        """The project record, or NotFound (also for invalid names and other tenants)."""
        try:
            validate_slug(name, "project")
        except Exception:  # noqa: BLE001 - an invalid name is simply not one of the tenant's
            raise NotFound(f"project {name!r} not found") from None
        record = await self._get(f"project.{tenant}.{name}")
        if record is None:
            raise NotFound(f"project {name!r} not found; create it with POST /v1/projects")
        return record

    async def projects(self, tenant: str) -> list[dict[str, Any]]:
        return sorted(await self._values(f"project.{tenant}.*"), key=lambda p: p["name"])

    # -- webhooks ----------------------------------------------------------------------------

    async def add_webhook(self, tenant: str, project: str, record: dict[str, Any]) -> None:
        await self._create(f"webhook.{tenant}.{project}.{record['id']}", record)

    async def webhooks(self, tenant: str, project: str) -> list[dict[str, Any]]:
        return sorted(await self._values(f"webhook.{tenant}.{project}.*"), key=lambda w: w["created_at"])

    async def webhook(self, tenant: str, project: str, hook_id: str) -> dict[str, Any]:
        if not hook_id.replace("-", "").isalnum():
            raise NotFound(f"webhook {hook_id!r} not found")
        record = await self._get(f"webhook.{tenant}.{project}.{hook_id}")
        if record is None:
            raise NotFound(f"webhook {hook_id!r} not found")
        return record

    async def delete_webhook(self, tenant: str, project: str, hook_id: str) -> None:
        await self.webhook(tenant, project, hook_id)
        await self._kv.delete(f"webhook.{tenant}.{project}.{hook_id}")

    # -- secrets -----------------------------------------------------------------------------

    async def page_secret(self) -> bytes:
        key = "secret.page-token"
        record = await self._get(key)
        if record is None:
            try:
                await self._create(key, {"secret": secrets.token_hex(32)})
            except AlreadyExists:
                pass
            record = await self._get(key)
        assert record is not None
        return bytes.fromhex(record["secret"])
