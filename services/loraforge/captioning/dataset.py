"""Reading a curated dataset: the ONE place that knows curation's layout (adjust here).

datasets/<tenant>/<project>/datasets/<dataset_id>/dataset.json   commit marker:
    id, lora_type, selected: [{clip_id, key (clips bucket), sha256, keyframe_keys}], ...
    An item a type's dataset builder derived (curation/builders) has `bucket: "datasets"`
    (its key and keyframe_keys are there) and `source_clip_id`, the clip it came from.
.../manifest.json   {"clips": [{clip_id, angle_bucket, largest_face_ratio, expression,
                                motion, lighting, kind, duration_s, ...}]}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from loraforge.runtime.errors import InvalidInput, NotFound
from loraforge.runtime.keys import ProjectRef, validate_key_part
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
    record: dict[str, Any] = field(default_factory=dict)


def read_dataset(store: ObjectStore, project: ProjectRef, dataset_id: str) -> CuratedDataset:
    prefix = project.key("datasets", validate_key_part(dataset_id))
    if store.stat(Bucket.DATASETS, f"{prefix}/dataset.json") is None:
        raise NotFound(
            f"dataset {dataset_id} of {project.tenant}/{project.project} does not exist "
            "or is not committed yet; run curation first"
        )
    record = store.get_json(Bucket.DATASETS, f"{prefix}/dataset.json")
    metrics: dict[str, dict] = {}
    manifest_name = record.get("manifest") or "manifest.json"
    if store.stat(Bucket.DATASETS, f"{prefix}/{manifest_name}") is not None:
        manifest = store.get_json(Bucket.DATASETS, f"{prefix}/{manifest_name}")
        rows = manifest.get("clips", []) if isinstance(manifest, dict) else manifest
        metrics = {r["clip_id"]: r for r in rows if isinstance(r, dict) and "clip_id" in r}
    selected = record.get("selected") or record.get("clips") or []
    clips = []
    for entry in selected:
        if isinstance(entry, str):
            entry = {"clip_id": entry}
        cid = entry.get("clip_id") or entry.get("id")
        key = entry.get("key") or entry.get("clip_key") or metrics.get(cid, {}).get("key")
        if not cid or not key:
            raise InvalidInput(
                f"dataset {dataset_id}: a selected clip has no id or clip key: {entry}"
            )
        bucket = entry.get("bucket") or Bucket.CLIPS.value
        if bucket not in (Bucket.CLIPS.value, Bucket.DATASETS.value) or (
            bucket == Bucket.DATASETS.value and not str(key).startswith(f"{prefix}/")
        ):
            raise InvalidInput(
                f"dataset {dataset_id}: item {cid} names {bucket}/{key}, outside its "
                "clips or its own dataset folder; curate again"
            )
        # a derived item: the measured row of the clip it came from, plus its own fields
        row = metrics.get(cid) or {
            **metrics.get(entry.get("source_clip_id"), {}),
            **{
                k: entry[k]
                for k in ("kind", "variant", "frame_index", "source_clip_id")
                if k in entry
            },
        }
        if entry.get("kind") == "image":
            row["kind"] = "photo"  # captions and the trainer treat a derived image as a still
        clips.append(
            DatasetClip(cid, key, list(entry.get("keyframe_keys") or []), row, Bucket(bucket))
        )
    if not clips:
        raise InvalidInput(f"dataset {dataset_id} selects no clips; curate again with more footage")
    return CuratedDataset(
        record.get("id", dataset_id), record.get("lora_type", "character"), prefix, clips, record
    )
