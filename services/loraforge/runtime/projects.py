"""The one registry of projects, shared by the services, the CLI (through them) and the gateway.

A project is a tenant's namespace (a slug); every object key and job lives under one. A project
exists once it is created through the API (`POST /v1/projects`) or once any job starts in it
(`JobService.start`: `loraforge ingest --project jane` on the local stack creates `jane`), so a
project made with the CLI is one the gateway knows, and the other way round.

Records live in a JetStream key-value bucket beside the job store's (`<jobs bucket>_projects`,
opened with it): `create` is atomic (no two projects of one name), every process already talks
to NATS, and the records are tiny. Key: `<tenant>.<project>`.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from loraforge.runtime.errors import AlreadyExists, InvalidInput, NotFound
from loraforge.runtime.events import current_entries, open_key_value
from loraforge.runtime.keys import validate_slug

# Project records one process keeps in memory (a few hundred bytes each).
RECORDS_CACHED = 10_000


class ProjectRegistry:
    def __init__(self, kv: KeyValue, bucket: str):
        self._kv = kv
        self.bucket = bucket
        self._known: set[str] = set()  # projects this process saw exist (they are never deleted)
        # Records this process read: a project record is written once and never changed or
        # deleted, so it is kept: the gateway checks the project on every request, which was
        # a NATS round trip each time. Bounded: cleared when full.
        self._records: dict[str, dict[str, Any]] = {}

    @classmethod
    async def open(cls, js: JetStreamContext, bucket: str) -> ProjectRegistry:
        return cls(await open_key_value(js, bucket), bucket)

    async def create(
        self, tenant: str, name: str, description: str = "", *, created_by: str = "api"
    ) -> dict[str, Any]:
        """A new project; AlreadyExists when the tenant has one of that name."""
        validate_slug(tenant, "tenant")
        validate_slug(name, "project")
        record = {
            "name": name,
            "description": description,
            "created_by": created_by,
            "created_at": datetime.now(UTC).isoformat(),
        }
        try:
            await self._kv.create(f"{tenant}.{name}", json.dumps(record).encode())
        except KeyWrongLastSequenceError:
            raise AlreadyExists(
                f"project {name!r} already exists; pick another name or use it"
            ) from None
        self._known.add(f"{tenant}.{name}")
        return record

    async def ensure(self, tenant: str, name: str, *, created_by: str) -> None:
        """The project exists afterwards (a job starting in it); an existing one is kept as is."""
        if f"{tenant}.{name}" in self._known:
            return
        try:
            await self.create(tenant, name, created_by=created_by)
        except AlreadyExists:
            self._known.add(f"{tenant}.{name}")

    async def get(self, tenant: str, name: str) -> dict[str, Any]:
        """The project's record, or NotFound (also for invalid names and other tenants')."""
        try:
            validate_slug(name, "project")
        except InvalidInput:
            raise NotFound(f"project {name!r} not found") from None
        key = f"{tenant}.{name}"
        cached = self._records.get(key)
        if cached is not None:
            return dict(cached)
        try:
            entry = await self._kv.get(key)
        except KeyNotFoundError:
            entry = None
        if entry is None or entry.value is None:
            raise NotFound(
                f"project {name!r} not found; create it with POST /v1/projects "
                "(or start any job in it)"
            )
        record: dict[str, Any] = json.loads(entry.value)
        if len(self._records) >= RECORDS_CACHED:
            self._records.clear()
        self._records[key] = record
        return dict(record)

    async def list(self, tenant: str) -> list[dict[str, Any]]:
        records = [json.loads(e.value) for e in await current_entries(self._kv, f"{tenant}.*")]
        return sorted(records, key=lambda r: r["name"])
