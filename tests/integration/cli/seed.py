"""A curated dataset in the real object store, laid out as curation commits it (the layout
captioning's dataset.read_dataset reads, as tests/integration/captioning seeds it), made of
real H.264 clips from the captioning test footage."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[2] / "unit" / "captioning"))

from captioning_footage import PHOTOS, make_clip, photo
from PIL import Image

from loraforge.runtime.storage import Bucket, ObjectStore

TENANT, PROJECT = "acme", "jane"
TRIGGER = "ohwx_woman"
ANGLES = ("frontal", "profile_left", "three_quarter", "above")
EXPRESSIONS = ("smiling", "neutral", "talking")


@dataclass(frozen=True)
class LocalClip:
    clip_id: str
    path: Path
    keyframe: Path


def make_local_clips(folder: Path, n: int) -> list[LocalClip]:
    """n two-second 128x128 clips, each with a keyframe; no two alike."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        img = photo(PHOTOS[i % len(PHOTOS)])
        if i >= len(PHOTOS):
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        cid = f"clip-{i:02d}"
        path = make_clip(img, folder / cid)
        kf = folder / f"{cid}.kf0.jpg"
        img.convert("RGB").save(kf)
        out.append(LocalClip(cid, path, kf))
    return out


def seed_dataset(
    store: ObjectStore,
    dataset_id: str,
    clips: list[LocalClip],
    tenant: str = TENANT,
    project: str = PROJECT,
) -> str:
    """Clips + keyframes in the clips bucket, manifest.json then dataset.json (the commit
    marker) in the datasets bucket. Returns the dataset's prefix."""
    selected, metrics = [], []
    for i, c in enumerate(clips):
        key = f"{tenant}/{project}/clips/src0/{c.clip_id}.mp4"
        kf_key = f"{tenant}/{project}/clips/src0/{c.clip_id}.kf0.jpg"
        store.put_file(Bucket.CLIPS, key, c.path, content_type="video/mp4")
        store.put_file(Bucket.CLIPS, kf_key, c.keyframe, content_type="image/jpeg")
        selected.append({"clip_id": c.clip_id, "key": key, "keyframe_keys": [kf_key]})
        metrics.append(
            {
                "clip_id": c.clip_id,
                "angle_bucket": ANGLES[i % len(ANGLES)],
                "expression": EXPRESSIONS[i % len(EXPRESSIONS)],
                "largest_face_ratio": 0.3,
                "lighting": "day",
                "duration_s": 2.0,
            }
        )
    prefix = f"{tenant}/{project}/datasets/{dataset_id}"
    store.put_json(Bucket.DATASETS, f"{prefix}/manifest.json", {"clips": metrics})
    store.put_json(
        Bucket.DATASETS,
        f"{prefix}/dataset.json",
        {
            "id": dataset_id,
            "lora_type": "character",
            "manifest": "manifest.json",
            "selected": selected,
        },
    )
    return prefix
