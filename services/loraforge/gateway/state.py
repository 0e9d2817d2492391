"""The gateway's own records, in one JetStream key-value bucket (see `config.gateway_bucket`):

    apikey.<sha256 of the key>          {tenant, key_id, name, created_at, minted_by}
    keyid.<tenant>.<key_id>             {key_id, digest, name, created_at, minted_by, last_used_at}
                                        (the tenant's key list, revoke by id, review-token liveness)
    webhook.<tenant>.<project>.<id>     {id, url, secret, job_id, created_at}
    outbox.<tenant>.<project>.<id>      {items: [{event_id, final, payload}], dropped} the hook's
                                        undelivered calls, oldest first (webhooks.py)
    whclaim.<tenant>.<project>.<id>     {owner, until}: the replica delivering that outbox
    keymint.<tenant>                    {pending: {key_id: unix time}}: mints in flight, so the
                                        tenant's key limit holds under concurrent mints (auth.py)
    secret.page-token                   random signing key of review-page tokens

A KV bucket, not the object store: records are tiny, `create` is atomic (one signing secret
for every replica), reads are fast, and NATS is already what every process connects to.
Nothing here is a backend's data. Projects are not here either: they are the services' and the
gateway's one registry (runtime/projects.py), which `GatewayState` is given.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from nats.js import JetStreamContext
from nats.js.errors import (
    BadRequestError,
    KeyNotFoundError,
    KeyWrongLastSequenceError,
)
from nats.js.kv import KeyValue

from loraforge.runtime.errors import AlreadyExists, Conflict, NotFound
from loraforge.runtime.events import current_entries, open_key_value
from loraforge.runtime.projects import ProjectRegistry


def now() -> datetime:
    return datetime.now(UTC)


class GatewayState:
    def __init__(self, kv: KeyValue, bucket: str, projects: ProjectRegistry):
        self._kv = kv
        self.bucket = bucket
        self.registry = projects

    @classmethod
    async def open(
        cls, js: JetStreamContext, bucket: str, projects: ProjectRegistry
    ) -> GatewayState:
        return cls(await open_key_value(js, bucket), bucket, projects)

    # -- generic -----------------------------------------------------------------------------

    async def _get(self, key: str) -> dict[str, Any] | None:
        try:
            entry = await self._kv.get(key)
        except KeyNotFoundError:
            return None
        if entry.value is None:
            return None
        record: dict[str, Any] = json.loads(entry.value)
        return record

    async def _create(self, key: str, value: dict[str, Any]) -> None:
        try:
            await self._kv.create(key, json.dumps(value, default=str).encode())
        except KeyWrongLastSequenceError:
            raise AlreadyExists(key) from None

    async def _keys(self, pattern: str) -> list[str]:
        return [e.key for e in await current_entries(self._kv, pattern, meta_only=True)]

    async def _values(self, pattern: str) -> list[dict[str, Any]]:
        return [json.loads(e.value) for e in await current_entries(self._kv, pattern)]

    # -- API keys ----------------------------------------------------------------------------
    #
    # Two records per key: `apikey.<digest>` answers "whose key is this?" on every request,
    # `keyid.<tenant>.<key_id>` lists a tenant's keys and finds a key by its public id (never
    # the secret; the digest is only there to delete the first record). A key exists while
    # both do; revocation deletes the digest record first, so a half-done revocation fails
    # closed.

    async def add_key(self, digest: str, record: dict[str, Any]) -> None:
        await self._create(f"apikey.{digest}", record)
        await self._create(
            f"keyid.{record['tenant']}.{record['key_id']}",
            {
                "key_id": record["key_id"],
                "digest": digest,
                "name": record.get("name", ""),
                "created_at": record["created_at"],
                "minted_by": record.get("minted_by"),
                "last_used_at": None,
            },
        )

    async def key_record(self, digest: str) -> dict[str, Any] | None:
        return await self._get(f"apikey.{digest}")

    async def key_by_id(self, tenant: str, key_id: str) -> dict[str, Any] | None:
        if not key_id.isalnum():
            return None
        return await self._get(f"keyid.{tenant}.{key_id}")

    async def keys(self, tenant: str) -> list[dict[str, Any]]:
        return sorted(await self._values(f"keyid.{tenant}.*"), key=lambda k: k["created_at"])

    async def revoke_key(self, digest: str) -> list[dict[str, Any]]:
        """Revoke the key with this digest and every key minted by it (transitively); the
        index records of the keys revoked (`digest` for caches to forget, `key_id`)."""
        record = await self.key_record(digest)
        if record is None:
            return []
        return await self.revoke_key_id(record["tenant"], record["key_id"])

    async def revoke_key_id(self, tenant: str, key_id: str) -> list[dict[str, Any]]:
        """Revoke one key of `tenant` by id, with its descendants; NotFound if it is not one
        of the tenant's live keys."""
        everything = await self.keys(tenant)
        by_id = {k["key_id"]: k for k in everything}
        if key_id not in by_id:
            raise NotFound(f"key {key_id!r} not found; list the tenant's keys with GET /v1/keys")
        children: dict[str, list[str]] = {}
        for k in everything:
            if k.get("minted_by"):
                children.setdefault(k["minted_by"], []).append(k["key_id"])
        doomed, todo = [], [key_id]
        while todo:
            kid = todo.pop()
            doomed.append(kid)
            todo.extend(c for c in children.get(kid, []) if c not in doomed)
        return [await self._delete_key(tenant, by_id[kid]) for kid in doomed]

    async def revoke_tenant_keys(self, tenant: str) -> list[dict[str, Any]]:
        """Admin: revoke every key of `tenant` (a leak whose extent is unknown)."""
        return [await self._delete_key(tenant, k) for k in await self.keys(tenant)]

    async def _delete_key(self, tenant: str, index: dict[str, Any]) -> dict[str, Any]:
        await self._kv.delete(f"apikey.{index['digest']}")
        await self._kv.delete(f"keyid.{tenant}.{index['key_id']}")
        return index

    async def touch_key(self, tenant: str, key_id: str, when: str) -> None:
        """Record `last_used_at`; an update against the read revision, so a key revoked in
        between is not brought back."""
        key = f"keyid.{tenant}.{key_id}"
        try:
            entry = await self._kv.get(key)
        except KeyNotFoundError:
            return
        if entry.value is None:
            return
        record = json.loads(entry.value)
        record["last_used_at"] = when
        with contextlib.suppress(KeyWrongLastSequenceError):  # revoked or touched meanwhile
            await self._kv.update(key, json.dumps(record).encode(), last=entry.revision)

    async def deletions(self, pattern: str) -> AsyncIterator[str]:
        """The keys matching `pattern` that are deleted from now on, as it happens (a live
        watch: deletions before it started are not repeated). Ends if the watch stops."""
        watcher = await self._kv.watch(pattern, meta_only=True)
        try:
            live = False
            async for entry in watcher:
                if entry is None:  # the end of the current values: what follows is live
                    live = True
                elif live and entry.operation in ("DEL", "PURGE"):
                    yield entry.key
        finally:
            await watcher.stop()

    async def index_legacy_keys(self) -> int:
        """Keys made before the `keyid.` index get their index record (once, at start), so
        that they are listed, revocable by id and can back review tokens."""
        made = 0
        for key in await self._keys("apikey.*"):
            record = await self._get(key)
            if record is None:
                continue
            if await self._get(f"keyid.{record['tenant']}.{record['key_id']}") is None:
                try:
                    await self._create(
                        f"keyid.{record['tenant']}.{record['key_id']}",
                        {
                            "key_id": record["key_id"],
                            "digest": key.removeprefix("apikey."),
                            "name": record.get("name", ""),
                            "created_at": record["created_at"],
                            "minted_by": record.get("minted_by"),
                            "last_used_at": None,
                        },
                    )
                    made += 1
                except AlreadyExists:
                    pass
        return made

    # -- projects ----------------------------------------------------------------------------

    async def create_project(self, tenant: str, name: str, description: str) -> dict[str, Any]:
        return await self.registry.create(tenant, name, description, created_by="api")

    async def project(self, tenant: str, name: str) -> dict[str, Any]:
        """The project record, or NotFound (also for invalid names and other tenants)."""
        return await self.registry.get(tenant, name)

    async def projects(self, tenant: str) -> list[dict[str, Any]]:
        return await self.registry.list(tenant)

    async def move_legacy_projects(self) -> int:
        """Projects recorded in this bucket before the shared registry existed move into it
        (same name and description); returns how many moved."""
        moved = 0
        for key in await self._keys("project.*.*"):
            record = await self._get(key)
            _, tenant, name = key.split(".", 2)
            if record is not None:
                try:
                    await self.registry.create(
                        tenant, name, record.get("description", ""), created_by="api"
                    )
                    moved += 1
                except AlreadyExists:
                    pass
            await self._kv.delete(key)
        return moved

    # -- webhooks ----------------------------------------------------------------------------

    async def add_webhook(self, tenant: str, project: str, record: dict[str, Any]) -> None:
        await self._create(f"webhook.{tenant}.{project}.{record['id']}", record)

    async def webhooks(self, tenant: str, project: str) -> list[dict[str, Any]]:
        return sorted(
            await self._values(f"webhook.{tenant}.{project}.*"), key=lambda w: w["created_at"]
        )

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
        await self._kv.delete(f"outbox.{tenant}.{project}.{hook_id}")

    # -- webhook outboxes (see webhooks.py) ---------------------------------------------------

    async def change(
        self,
        key: str,
        fn: Callable[
            [dict[str, Any] | None], dict[str, Any] | Awaitable[dict[str, Any] | None] | None
        ],
        attempts: int = 50,
    ) -> dict[str, Any] | None:
        """Read-modify-write of one record against its revision (another replica or the
        event handler may change it meanwhile: then read again). `fn` returns the new value,
        or None to delete the record; the value written is returned. `fn` may be async: what
        it reads elsewhere after the record was read is judged with that revision."""
        for _ in range(attempts):
            try:
                entry = await self._kv.get(key)
                revision = entry.revision
                current = json.loads(entry.value) if entry.value else None
            except KeyNotFoundError:
                revision, current = 0, None
            new = fn(current)
            if inspect.isawaitable(new):
                new = await new
            try:
                if new is None:
                    if current is not None:
                        await self._kv.delete(key, last=revision)
                elif revision == 0 or current is None:
                    if revision == 0:
                        await self._kv.create(key, json.dumps(new, default=str).encode())
                    else:
                        await self._kv.update(
                            key, json.dumps(new, default=str).encode(), last=revision
                        )
                else:
                    await self._kv.update(key, json.dumps(new, default=str).encode(), last=revision)
                return new
            except (KeyWrongLastSequenceError, BadRequestError):
                continue  # changed under us
        raise Conflict(f"{key}: too many concurrent changes; retry")

    async def outbox_keys(self) -> list[str]:
        return await self._keys("outbox.>")

    async def get(self, key: str) -> dict[str, Any] | None:
        return await self._get(key)

    # -- secrets -----------------------------------------------------------------------------

    async def page_secret(self) -> bytes:
        key = "secret.page-token"
        record = await self._get(key)
        if record is None:
            with contextlib.suppress(AlreadyExists):
                await self._create(key, {"secret": secrets.token_hex(32)})
            record = await self._get(key)
        assert record is not None
        return bytes.fromhex(record["secret"])
