"""A small curated dataset in curation's layout (datasets bucket), written straight to S3."""

from __future__ import annotations

import io

from PIL import Image

from loraforge.captioning.review import CaptionReviewStore
from loraforge.runtime.keys import ProjectRef
from loraforge.runtime.storage import Bucket, ObjectStore

DATASET_ID = "ds-0123456789abcdef0123"
CLIPS = [
    ("a1b2c3d4-0000", "keep", True, (200, 60, 60)),
    ("a1b2c3d4-0001", "keep", True, (60, 200, 60)),
    ("a1b2c3d4-0002", "reject", False, (30, 30, 30)),
]


def _image(rgb: tuple[int, int, int], fmt: str = "JPEG") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (96, 64), rgb).save(buf, fmt)
    return buf.getvalue()


def seed_dataset(store: ObjectStore, tenant: str, project: str, trigger: str = "j4ne") -> str:
    prefix = f"{tenant}/{project}/datasets/{DATASET_ID}"
    rows = []
    for cid, decision, selected, rgb in CLIPS:
        store.put_bytes(Bucket.DATASETS, f"{prefix}/thumbs/{cid}.jpg", _image(rgb), "image/jpeg")
        rows.append(
            {
                "clip_id": cid,
                "path": f"/tmp/{cid}.mp4",
                "source_id": "src",
                "kind": "video",
                "width": 480,
                "height": 360,
                "fps": 8.0,
                "duration_s": 2.5,
                "frames_sampled": 6,
                "quality_score": 0.8 if decision == "keep" else 0.2,
                "sharpness": 120.0,
                "angle_bucket": "front",
                "expression": "neutral",
                "identity_distance": 0.3,
                "decision": decision,
                "selected": selected,
                "reason_codes": [] if decision == "keep" else ["too_dark"],
                "reasons": [] if decision == "keep" else ["too dark: mean luma 12 < 40"],
                "flag_codes": [],
                "flags": [],
            }
        )
    store.put_json(
        Bucket.DATASETS,
        f"{prefix}/manifest.json",
        {
            "version": 1,
            "policy": {},
            "backend": "test",
            "selection": {"selected": [r["clip_id"] for r in rows if r["selected"]]},
            "rejection_counts": {"too_dark": 1},
            "clips": rows,
        },
    )
    store.put_bytes(
        Bucket.DATASETS, f"{prefix}/angles.png", _image((90, 90, 200), "PNG"), "image/png"
    )
    store.put_bytes(Bucket.DATASETS, f"{prefix}/report.html", b"<html>report</html>", "text/html")
    # captions as the captioning service stores them (its own storage class)
    captions = CaptionReviewStore(store, ProjectRef(tenant, project), DATASET_ID)
    for cid, *_ in CLIPS[:2]:
        captions.save_generated(cid, f"{trigger} smiling, close-up", author="attributes")
    captions.save_run({"trigger": trigger, "lora_type": "character"})
    store.put_json(
        Bucket.DATASETS,
        f"{prefix}/dataset.json",
        {
            "version": 1,
            "id": DATASET_ID,
            "tenant": tenant,
            "project": project,
            "job_id": "jseed",
            "lora_type": "character",
            "counts": {"clips": 3, "kept": 2, "rejected": 1, "selected": 2},
            "rejection_counts": {"too_dark": 1},
            "missing": ["no profile shots"],
            "inputs": [
                {"clip_id": c[0], "key": f"{tenant}/{project}/clips/src/{c[0]}.mp4", "sha256": ""}
                for c in CLIPS
            ],
            "manifest": "manifest.json",
            "report": "report.html",
        },
    )
    return DATASET_ID
