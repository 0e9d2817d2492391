"""A dataset's record, `dataset.json` (key: `layout.record_key`): the commit marker and summary
of a curated dataset, and what captioning, the trainer, exports, the gateway and the CLI read.

Curation writes it last (`worker.py: CurationWorker._compute`); the hosted fine-tune files
(`library/finetunes.py`) write one for a dataset made from an uploaded zip. Readers validate it
with `DatasetRecord.model_validate`. `dump` writes only the fields a writer set, so a record
holds what its writer knows (a fine-tune's has no curation counts) and the stored JSON is what
it was before this model. Both models allow extra fields: a record written by a newer release
stays readable during a rolling upgrade, and is written back whole.

Kept free of the media stack so the gateway and the CLI can import it.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from loraforge.curation.layout import MANIFEST


class DatasetItem(BaseModel):
    """One training item (`selected`): a clip ingest made (bucket `clips`), or an item a
    dataset builder derived from one (bucket `datasets`, under the dataset's folder)."""

    model_config = ConfigDict(extra="allow")

    clip_id: str  # the item's id (a derived item's differs from its clip's)
    key: str
    bucket: Literal["clips", "datasets"] = "clips"  # where key and keyframe_keys are
    sha256: str = ""
    source_id: str = ""  # ingest's source sha256
    keyframe_keys: list[str] = []
    # a builder's item (builders/__init__.py: apply_to_record)
    source_clip_id: str | None = None  # the clip it came from (its row in the manifest)
    kind: str | None = None  # "video" | "image"
    variant: str | None = None
    frame_index: int | None = None


class DatasetRecord(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str
    lora_type: str
    selected: list[DatasetItem] = []  # the training items
    manifest: str = MANIFEST  # the per-clip manifest beside it
    version: int | None = None  # worker.py: DATASET_VERSION
    tenant: str | None = None
    project: str | None = None
    job_id: str | None = None
    policy_hash: str | None = None
    policy: dict[str, Any] | None = None
    reference_keys: list[str] = []
    backend: str | None = None  # the face backend that measured
    counts: dict[str, int] = {}  # clips, kept, rejected, selected (+ items after a builder)
    rejection_counts: dict[str, int] = {}
    flag_counts: dict[str, int] = {}
    missing: list[str] = []  # what the dataset lacks, in words
    target_size: int | None = None
    content_hash: str | None = None  # selection_hash(selected)
    inputs: list[dict[str, Any]] = []  # every clip curated: clip_id, key, sha256
    report: str | None = None
    selected_clips: list[DatasetItem] | None = None  # curation's own pick, when a builder ran
    build: dict[str, Any] | None = None  # the builder's summary (build.json beside it)
    measured_by: dict[str, int] = {}  # worker -> clips it measured (queue mode)
    artifacts: list[dict[str, Any]] = []  # runtime.jobs.ArtifactRef dumps
    created_at: str | None = None  # fine-tune datasets
    source: dict[str, Any] | None = None  # fine-tune datasets: the zip(s) it came from

    def dump(self) -> dict[str, Any]:
        """The JSON object stored under `layout.record_key`: the fields that were set."""
        return self.model_dump(mode="json", exclude_unset=True)


def selection_hash(items: list[dict[str, Any]]) -> str:
    """The record's `content_hash`: which items (id, key, content), in no particular order."""
    blob = json.dumps(
        sorted([i["clip_id"], i["key"], i.get("sha256", "")] for i in items), separators=(",", ":")
    ).encode()
    return hashlib.sha256(blob).hexdigest()
