"""Reading a curated dataset (keys in curation/layout.py, its record curation/record.py).

datasets/<tenant>/<project>/datasets/<dataset_id>/dataset.json   commit marker (DatasetRecord):
    id, lora_type, selected: [{clip_id, key (clips bucket), sha256, keyframe_keys}], ...
    An item a type's dataset builder derived (curation/builders) has `bucket: "datasets"`
    (its key and keyframe_keys are there) and `source_clip_id`, the clip it came from.
.../manifest.json   {"clips": [{clip_id, angle_bucket, largest_face_ratio, expression,
                                motion, lighting, kind, duration_s, ...}]}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from loraforge.curation import layout
from loraforge.curation.record import DatasetRecord
from loraforge.runtime.errors import InvalidInput, NotFound
from loraforge.runtime.keys import ProjectRef
from loraforge.runtime.storage import Bucket, ObjectStore


@dataclass
class DatasetClip:
    clip_id: str
    key: str  # clips bucket
    keyframe_keys: list[str] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    bucket: Bucket = Bucket.CLIPS  # where key and keyframe_keys are (derived items: datasets)


@dataclass
class CuratedDataset:
    id: str
    lora_type: str
    prefix: str  # datasets-bucket prefix, no trailing slash
    clips: list[DatasetClip]
    record: DatasetRecord


def read_dataset(store: ObjectStore, project: ProjectRef, dataset_id: str) -> CuratedDataset:
    key = layout.record_key(project, dataset_id)
    prefix = layout.dataset_prefix(project, dataset_id)
    if store.stat(Bucket.DATASETS, key) is None:
        raise NotFound(
            f"dataset {dataset_id} of {project.tenant}/{project.project} does not exist "
            "or is not committed yet; run curation first"
        )
    try:
        record = DatasetRecord.model_validate(store.get_json(Bucket.DATASETS, key))
    except ValidationError as exc:
        raise InvalidInput(
            f"dataset {dataset_id}: its record {key} is not a dataset record ({exc}); curate again"
        ) from None
    metrics: dict[str, dict[str, Any]] = {}  # curation manifest rows by clip id
    manifest_key = layout.manifest_key(project, dataset_id, record.manifest)
    if store.stat(Bucket.DATASETS, manifest_key) is not None:
        manifest = store.get_json(Bucket.DATASETS, manifest_key)
        rows = manifest.get("clips", []) if isinstance(manifest, dict) else manifest
        metrics = {r["clip_id"]: r for r in rows if isinstance(r, dict) and "clip_id" in r}
    clips = []
    for entry in record.selected:
        cid, key = entry.clip_id, entry.key
        if entry.bucket == Bucket.DATASETS.value and not key.startswith(f"{prefix}/"):
            raise InvalidInput(
                f"dataset {dataset_id}: item {cid} names {entry.bucket}/{key}, outside its "
                "clips or its own dataset folder; curate again"
            )
        # a derived item: the measured row of the clip it came from, plus its own fields
        row = metrics.get(cid) or {
            **metrics.get(entry.source_clip_id or "", {}),
            **entry.model_dump(
                include={"kind", "variant", "frame_index", "source_clip_id"}, exclude_unset=True
            ),
        }
        if entry.kind == "image":
            row["kind"] = "photo"  # captions and the trainer treat a derived image as a still
        clips.append(DatasetClip(cid, key, list(entry.keyframe_keys), row, Bucket(entry.bucket)))
    if not clips:
        raise InvalidInput(f"dataset {dataset_id} selects no clips; curate again with more footage")
    return CuratedDataset(record.id, record.lora_type, prefix, clips, record)
