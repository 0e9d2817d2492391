"""Where a curated dataset lives in the object store: the one module that spells its keys.

    datasets  <t>/<p>/datasets/<dataset_id>/dataset.json     the record (record.py:
                                                             DatasetRecord), written LAST: the
                                                             commit marker
                                            manifest.json, manifest.parquet   every clip
                                            report.html, *.png, thumbs/<clip_id>.jpg
                                            derived/<clip_id>/...   a builder's items
                                            _job.json       the job computing it (a claim)
                                            _measured/<clip_id>.error.json   a clip that failed
              <t>/<p>/datasets/_measures/<measure_key>/<clip hash>.pkl, _key.json
                                                             measurements shared by jobs

Writers besides curation: the hosted fine-tune files (`library/finetunes.py`) write a
dataset's record, manifest and captions in the same layout; review (gateway) and captioning
write beside it. `_measures` cannot collide with a dataset id: ids never start with `_`.

Kept free of the media stack so the gateway and the CLI can import it.
"""

from __future__ import annotations

from loraforge.runtime.keys import ProjectRef, validate_key_part

DATASETS = "datasets"
RECORD = "dataset.json"
MANIFEST = "manifest.json"
REPORT = "report.html"
CLAIM = "_job.json"  # the job computing a dataset: another job for the same dataset follows it
MEASURED = "_measured"  # <clip_id>.error.json when measuring a clip failed (per job)
MEASURES = "_measures"  # <t>/<p>/datasets/_measures/<measure_key>/<clip hash>.pkl


def datasets_root(ref: ProjectRef) -> str:
    return ref.key(DATASETS) + "/"


def dataset_prefix(ref: ProjectRef, dataset_id: str) -> str:
    """The dataset's folder, no trailing slash. Raises InvalidInput for an id that is not a
    key part."""
    return ref.key(DATASETS, validate_key_part(dataset_id))


def record_key(ref: ProjectRef, dataset_id: str) -> str:
    return f"{dataset_prefix(ref, dataset_id)}/{RECORD}"


def manifest_key(ref: ProjectRef, dataset_id: str, name: str = MANIFEST) -> str:
    """The dataset's manifest; `name`: the one its record names (`DatasetRecord.manifest`)."""
    return f"{dataset_prefix(ref, dataset_id)}/{validate_key_part(name)}"


def measures_root(ref: ProjectRef) -> str:
    return ref.key(DATASETS, MEASURES) + "/"


def measures_prefix(ref: ProjectRef, measure_key: str) -> str:
    """One measure_key's folder (worker.py: measure_key), no trailing slash."""
    return ref.key(DATASETS, MEASURES, validate_key_part(measure_key))


def dataset_of_record_key(ref: ProjectRef, key: str) -> str | None:
    """The dataset id when `key` is a dataset's record key (a listing's commit markers), else
    None."""
    root = datasets_root(ref)
    if not key.startswith(root):
        return None
    parts = key[len(root) :].split("/")
    return parts[0] if len(parts) == 2 and parts[1] == RECORD and parts[0] else None
