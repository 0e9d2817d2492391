"""`dataset.curated` -> a captioning job, when the project says how to caption.

Captions need a trigger word that only the user can choose, so the automatic step runs only
for projects that have captioning defaults (`datasets/<t>/<p>/captioning-defaults.json`, written
by `loraforge caption` / `loraforge run`, or sent along in the event as `data.captioning`).
Other projects wait for an explicit `loraforge caption`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from loraforge.runtime.events import Delivery, Event, EventBus
from loraforge.runtime.job_service import JobService, follow_up_request_id
from loraforge.runtime.keys import ProjectRef
from loraforge.runtime.params import CaptioningParams
from loraforge.runtime.storage import Bucket, ObjectStore

log = logging.getLogger(__name__)

CURATED_EVENT = "dataset.curated"
DEFAULTS_NAME = "captioning-defaults.json"
_DEFAULT_FIELDS = ("trigger", "lora_type", "source", "class_noun", "base_preset", "motion")


def defaults_key(ref: ProjectRef) -> str:
    return ref.key("datasets", DEFAULTS_NAME)


def save_defaults(store: ObjectStore, ref: ProjectRef, **values: Any) -> dict[str, Any]:
    """Remember how this project is captioned; validated like a captioning request."""
    record = {k: v for k, v in values.items() if k in _DEFAULT_FIELDS and v not in (None, "")}
    CaptioningParams.parse(dataset_id="validation-only", **record)
    store.put_json(Bucket.DATASETS, defaults_key(ref), record)
    return record


def load_defaults(store: ObjectStore, ref: ProjectRef) -> dict[str, Any] | None:
    if store.stat(Bucket.DATASETS, defaults_key(ref)) is None:
        return None
    record: dict[str, Any] = store.get_json(Bucket.DATASETS, defaults_key(ref))
    return record


class AutoCaptioner:
    """Durable consumer `captioning-auto` of `dataset.curated`; the job's request id derives
    from the event id, so a redelivered event never starts a second job."""

    DURABLE = "captioning-auto"

    def __init__(
        self, jobs: JobService, bus: EventBus, store: ObjectStore, *, enabled: bool = True
    ):
        self._jobs = jobs
        self._bus = bus
        self._store = store
        self.enabled = enabled

    async def start(self) -> None:
        if self.enabled:
            await self._bus.subscribe(self.DURABLE, CURATED_EVENT, self.handle)

    async def handle(self, event: Event, delivery: Delivery) -> None:
        dataset_id = event.data.get("dataset_id")
        if not dataset_id or not event.data.get("selected", 1):
            log.info("dataset.curated %s selected nothing; nothing to caption", event.id)
            return
        ref = ProjectRef(event.tenant, event.project)
        sent = (
            event.data.get("captioning") if isinstance(event.data.get("captioning"), dict) else None
        )
        defaults = sent or await asyncio.to_thread(load_defaults, self._store, ref)
        if not defaults or not defaults.get("trigger"):
            log.info(
                "dataset %s of %s has no captioning defaults (no trigger word chosen); "
                "caption it with `loraforge caption --trigger WORD`",
                dataset_id,
                ref.prefix,
            )
            return
        params = CaptioningParams.parse(
            dataset_id=dataset_id, **{k: v for k, v in defaults.items() if k in _DEFAULT_FIELDS}
        )
        job = await self._jobs.start(
            event.tenant,
            event.project,
            params.model_dump(mode="json"),
            request_id=follow_up_request_id(event.id),
        )
        log.info("dataset.curated %s -> captioning job %s (%s)", event.id, job.id, job.state)
