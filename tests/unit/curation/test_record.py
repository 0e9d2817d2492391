"""The dataset record (curation/record.py) and its keys (curation/layout.py): a record as
curation and the fine-tune files write it reads back and is written unchanged; bad records and
keys are refused."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from loraforge.curation import layout
from loraforge.curation.record import DatasetRecord, selection_hash
from loraforge.runtime.errors import InvalidInput
from loraforge.runtime.keys import ProjectRef

REF = ProjectRef("acme", "jane")
CLIP = {
    "clip_id": "0123abcd-0000",
    "key": "acme/jane/clips/0123456789abcdef/0123abcd-0000.mp4",
    "sha256": "ab" * 32,
    "source_id": "cd" * 32,
    "keyframe_keys": ["acme/jane/clips/0123456789abcdef/0123abcd-0000_first.jpg"],
}
# curation's record after a builder ran (shortened), and a fine-tune zip's
CURATED = {
    "version": 1,
    "id": "ds-0123",
    "lora_type": "character",
    "counts": {"clips": 1, "kept": 1, "rejected": 0, "selected": 1, "items": 1},
    "missing": [],
    "selected_clips": [CLIP],
    "selected": [
        {
            "clip_id": "0123abcd-0000-crop",
            "key": "acme/jane/datasets/ds-0123/derived/0123abcd-0000/crop.mp4",
            "bucket": "datasets",
            "sha256": "ef" * 32,
            "source_id": "cd" * 32,
            "keyframe_keys": [],
            "source_clip_id": "0123abcd-0000",
            "kind": "video",
            "variant": "crop",
            "frame_index": None,
        }
    ],
    "measured_by": {"host-1": 1},
    "manifest": "manifest.json",
    "report": "report.html",
}
FINE_TUNE = {
    "id": "ft-0123",
    "lora_type": "effect",
    "selected": [{"clip_id": "sample-001", "key": CLIP["key"], "source_line": 1}],
    "created_at": "2026-12-04T23:00:00+00:00",
    "source": {"kind": "fine-tune zip", "mode": "kf2v"},
}


@pytest.mark.parametrize("doc", [CURATED, FINE_TUNE], ids=["curated", "fine-tune"])
def test_records_read_back_and_are_written_unchanged(doc):
    record = DatasetRecord.model_validate(doc)
    assert record.dump() == doc
    assert record.manifest == layout.MANIFEST


def test_a_record_without_its_items_keys_is_refused():
    with pytest.raises(ValidationError):
        DatasetRecord.model_validate({**FINE_TUNE, "selected": [{"clip_id": "a"}]})
    with pytest.raises(ValidationError):
        DatasetRecord.model_validate({**FINE_TUNE, "selected": [{**CLIP, "bucket": "raw"}]})


def test_the_content_hash_ignores_order():
    other = {**CLIP, "clip_id": "b", "key": CLIP["key"].replace("0000", "0001")}
    assert selection_hash([CLIP, other]) == selection_hash([other, CLIP])


def test_keys():
    assert layout.record_key(REF, "ds-0123") == "acme/jane/datasets/ds-0123/dataset.json"
    assert layout.dataset_of_record_key(REF, "acme/jane/datasets/ds-0123/dataset.json") == "ds-0123"
    for key in (
        "acme/jane/datasets/ds-0123/manifest.json",
        "acme/jane/datasets/ds-0123/derived/x/dataset.json",
        "acme/other/datasets/ds-0123/dataset.json",
    ):
        assert layout.dataset_of_record_key(REF, key) is None
    with pytest.raises(InvalidInput):
        layout.record_key(REF, "../other")
