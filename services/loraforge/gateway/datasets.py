"""Datasets as curation leaves them, plus what review adds beside them.

Curation's layout (read-only here; keys in loraforge.curation.layout):

    datasets  <t>/<p>/datasets/<dataset_id>/dataset.json     commit marker + summary
                                            manifest.json    every clip: metrics, decision
                                            report.html, *.png (charts), thumbs/<clip_id>.jpg

What the gateway writes beside it (one object per clip, so two reviewers never overwrite each
other's work):

    datasets  <t>/<p>/datasets/<dataset_id>/review/decisions/<clip_id>.json   accept/reject
              <t>/<p>/datasets/<dataset_id>/exports/<export_id>.json          INTERIM export

Captions are captioning's: listed, edited and approved through its RPCs (`clients.py`), never
read or written here. One thing the RPCs do not return yet is the dataset's trigger word, so
`trigger()` reads it from captioning's run record (`captions/_run.json`, a plain JSON object
with a `trigger` field) -- INTERIM until ListCaptionsResponse carries it.
"""

from __future__ import annotations

import asyncio
import builtins
import json
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any, TypeVar

from loraforge.curation import layout
from loraforge.curation.layout import MANIFEST
from loraforge.curation.layout import RECORD as DATASET_RECORD
from loraforge.gateway.models import Decision
from loraforge.runtime.errors import InvalidInput, NotFound
from loraforge.runtime.keys import ProjectRef, validate_key_part
from loraforge.runtime.storage import Bucket, ObjectStore

T = TypeVar("T")

CAPTION_RUN = "captions/_run.json"  # captioning's run record (trigger, type, template)

# Clip-level metrics shown on the review page (the manifest has many more).
REVIEW_METRICS = (
    "kind",
    "width",
    "height",
    "duration_s",
    "quality_score",
    "sharpness",
    "face_sharpness",
    "largest_face_ratio",
    "people_count",
    "angle_bucket",
    "yaw",
    "pitch",
    "expression",
    "lighting",
    "mean_luma",
    "motion",
    "identity_distance",
    "identity_match",
)


def dataset_prefix(tenant: str, project: str, dataset_id: str) -> str:
    try:
        return layout.dataset_prefix(ProjectRef(tenant, project), dataset_id)
    except InvalidInput:
        raise NotFound(f"dataset {dataset_id!r} not found") from None


def _clip_part(clip_id: str) -> str:
    try:
        return validate_key_part(clip_id)
    except InvalidInput:
        raise NotFound(f"clip {clip_id!r} not found") from None


class DatasetStore:
    def __init__(self, store: ObjectStore):
        self._store = store

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.to_thread(fn, *args)

    async def _json_or_none(self, key: str) -> Any:
        try:
            return await self._run(self._store.get_json, Bucket.DATASETS, key)
        except NotFound:
            return None

    # -- curation outputs --------------------------------------------------------------------

    async def list(self, tenant: str, project: str) -> list[dict[str, Any]]:
        ref = ProjectRef(tenant, project)
        prefix = layout.datasets_root(ref)
        objs = await self._run(lambda: list(self._store.list(Bucket.DATASETS, prefix)))
        out = []
        for o in objs:
            if layout.dataset_of_record_key(ref, o.key) is not None:
                record = await self._json_or_none(o.key)
                if isinstance(record, dict):
                    out.append(record)
        return out

    async def record(self, tenant: str, project: str, dataset_id: str) -> dict[str, Any]:
        record = await self._json_or_none(
            f"{dataset_prefix(tenant, project, dataset_id)}/{DATASET_RECORD}"
        )
        if not isinstance(record, dict):
            raise NotFound(
                f"dataset {dataset_id!r} not found in project {project!r} "
                "(or its curation job has not finished)"
            )
        return record

    async def manifest(self, tenant: str, project: str, dataset_id: str) -> dict[str, Any]:
        doc = await self._json_or_none(f"{dataset_prefix(tenant, project, dataset_id)}/{MANIFEST}")
        if not isinstance(doc, dict):
            raise NotFound(f"dataset {dataset_id!r} has no manifest")
        return doc

    async def files(
        self, tenant: str, project: str, dataset_id: str
    ) -> builtins.list[tuple[str, int]]:
        prefix = dataset_prefix(tenant, project, dataset_id) + "/"
        objs = await self._run(lambda: list(self._store.list(Bucket.DATASETS, prefix)))
        return [(o.key, o.size) for o in objs]

    # -- decision overrides ------------------------------------------------------------------

    def _decision_key(self, tenant: str, project: str, dataset_id: str, clip_id: str) -> str:
        prefix = dataset_prefix(tenant, project, dataset_id)
        return f"{prefix}/review/decisions/{_clip_part(clip_id)}.json"

    async def overrides(
        self, tenant: str, project: str, dataset_id: str
    ) -> dict[str, dict[str, Any]]:
        prefix = f"{dataset_prefix(tenant, project, dataset_id)}/review/decisions/"
        objs = await self._run(lambda: list(self._store.list(Bucket.DATASETS, prefix)))
        docs = await asyncio.gather(*(self._json_or_none(o.key) for o in objs))
        return {d["clip_id"]: d for d in docs if isinstance(d, dict) and d.get("decision")}

    async def set_override(
        self,
        tenant: str,
        project: str,
        dataset_id: str,
        clip_id: str,
        decision: Decision | None,
        note: str,
        by: str,
    ) -> dict[str, Any]:
        key = self._decision_key(tenant, project, dataset_id, clip_id)
        doc = {
            "clip_id": clip_id,
            "decision": decision,
            "note": note,
            "by": by,
            "at": datetime.now(UTC).isoformat(),
        }
        # A null decision is stored too (not deleted): the history of who changed what stays.
        await self._run(self._store.put_json, Bucket.DATASETS, key, doc)
        return doc

    # -- captions: captioning's, through clients.py; only the trigger is read here -------------

    async def trigger(self, tenant: str, project: str, dataset_id: str) -> str:
        """The trigger word captioning used for this dataset ("" before it ran). INTERIM: read
        from captioning's run record, see the module doc."""
        run = await self._json_or_none(
            f"{dataset_prefix(tenant, project, dataset_id)}/{CAPTION_RUN}"
        )
        return str(run.get("trigger") or "") if isinstance(run, dict) else ""

    # -- exports (INTERIM) -------------------------------------------------------------------

    async def write_export(
        self, tenant: str, project: str, dataset_id: str, doc: dict[str, Any]
    ) -> str:
        export_id = f"ex-{datetime.now(UTC):%Y%m%d%H%M%S}-{secrets.token_hex(3)}"
        key = f"{dataset_prefix(tenant, project, dataset_id)}/exports/{export_id}.json"
        await self._run(self._store.put_json, Bucket.DATASETS, key, {**doc, "export_id": export_id})
        return key


def clip_rows(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    clips = manifest.get("clips")
    return (
        [c for c in clips if isinstance(c, dict) and c.get("clip_id")]
        if isinstance(clips, list)
        else []
    )


def chart_keys(files: list[tuple[str, int]], prefix: str) -> list[tuple[str, int]]:
    return [(k, s) for k, s in files if k.endswith(".png") and "/" not in k[len(prefix) + 1 :]]


def is_thumb(key: str) -> bool:
    return "/thumbs/" in key and PurePosixPath(key).suffix.lower() in {
        ".jpg",
        ".jpeg",
        ".png",
        ".webp",
    }


def dumps(value: Any) -> str:
    return json.dumps(value, default=str)
