"""The per-source manifest model (ingest/manifest.py) writes exactly the JSON ingest wrote
before it existed (the shape is part of the options hash) and stays in step with the core's
result types."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from loraforge.ingest import IngestOptions
from loraforge.ingest.manifest import ClipEntry, SourceManifest, SourceProbe
from loraforge.ingest.models import Clip, ProbeResult
from loraforge.ingest.worker import ingest_options, options_hash
from loraforge.runtime.params import IngestParams

P = "acme/jane/clips/37f2c6a921e9bb74/"
SHA = "37f2c6a921e9bb746641084cc00212ea62a549da3a49a0af6a1c1fd0fc41a3ac"

# as ingest stored them with MANIFEST_VERSION 2 before the models (options trimmed)
PHOTO = {
    "clips": [
        {
            "clip_id": "047d6243-0000",
            "duration": 0.0,
            "fps": 0.0,
            "frames": 1,
            "height": 120,
            "key": f"{P}047d6243-0000.png",
            "keyframe_keys": [f"{P}047d6243-0000.png"],
            "keyframes": {"image": f"{P}047d6243-0000.png"},
            "kind": "photo",
            "sha256": "75de7eb435f97919f10d39722503f67d9b4a432a940f62500d388df377585023",
            "shot_index": 0,
            "size": 34290,
            "source_end": 0.0,
            "source_end_frame": 1,
            "source_start": 0.0,
            "source_start_frame": 0,
            "width": 160,
        }
    ],
    "clips_prefix": P,
    "created_at": "2026-12-04T23:28:07.028656+00:00",
    "error": None,
    "format": "jpg",
    "frame_rate": None,
    "job_id": "r13ec38e95c666e83a5195047",
    "kind": "photo",
    "manifest_version": 2,
    "options": {"photo_format": "png", "photo_max_long_side": None},
    "options_hash": "047d624311f1c58d",
    "probe": None,
    "project": "jane",
    "shots": [],
    "skipped": [],
    "source": {
        "archive": None,
        "key": f"acme/jane/sources/{SHA}.jpg",
        "name": f"{SHA}.jpg",
        "submitted_as": f"acme/jane/sources/{SHA}.jpg",
    },
    "source_sha256": SHA,
    "tenant": "acme",
    "timings": {"total": 0.007977189001394436},
}
FAILED = {
    **{k: v for k, v in PHOTO.items() if k != "timings"},
    "clips": [],
    "kind": None,
    "format": None,
    "error": {"type": "EmptyFile", "message": "x.mp4: the file is empty (0 bytes)"},
}


@pytest.mark.parametrize("doc", [PHOTO, FAILED], ids=["photo", "failed"])
def test_stored_json_round_trips_unchanged(doc):
    manifest = SourceManifest.model_validate(doc)
    assert json.dumps(manifest.dump(), sort_keys=True) == json.dumps(doc, sort_keys=True)


def test_optional_keys_are_left_out_while_unset_and_written_when_set():
    entry = ClipEntry.model_validate(PHOTO["clips"][0])
    assert "analysis_key" not in entry.model_dump(mode="json")
    with_proxy = entry.model_copy(update={"analysis_key": f"{P}047d6243-0000_analysis.zip"})
    assert with_proxy.model_dump(mode="json")["analysis_key"].endswith("_analysis.zip")
    made = SourceManifest.model_validate(FAILED).model_copy(
        update={"created_at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)}
    )
    assert made.dump()["created_at"] == "2026-01-02T03:04:05+00:00"


def test_a_manifest_of_another_shape_does_not_validate():
    with pytest.raises(ValidationError):
        SourceManifest.model_validate({"clips": [{"path": "/tmp/shot-000.mp4"}]})


def test_models_follow_the_core_result_types():
    core = {f.name for f in dataclasses.fields(ProbeResult)} - {"path"}
    assert set(SourceProbe.model_fields) == core
    clip = {f.name for f in dataclasses.fields(Clip)} - {"path", "keyframes", "analysis"}
    own = {"clip_id", "kind", "key", "size", "keyframes", "keyframe_keys", "duration"}
    assert set(ClipEntry.model_fields) == clip | own | {"analysis_key"}


def test_the_cores_defaults_are_the_ingest_jobs():
    """One set of defaults: the core alone (a tool, the benchmarks) cuts clips of the lengths and
    rate that `loraforge ingest` and the API ask for when the user sets nothing."""
    job = ingest_options(IngestParams(sources=["acme/jane/sources/x.mp4"]))
    assert job.clips == IngestOptions().clips
    assert job.cut == IngestOptions().cut


def test_the_options_hash_of_existing_manifests_is_kept():
    """The models changed no stored shape, so MANIFEST_VERSION (in the hash) stayed: a
    re-ingest finds the manifests written before them (this hash: tests/integration/ingest's
    options, computed before the models existed)."""
    params = IngestParams(sources=["acme/jane/sources/x.mp4"], min_s=2, max_s=3, fps=16)
    assert options_hash(ingest_options(params)) == "047d624311f1c58d"
