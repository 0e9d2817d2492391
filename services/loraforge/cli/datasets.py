"""Finding a project's curated datasets in the object store, for the commands that take
`--dataset ID` with "the newest one" as the default."""

from __future__ import annotations

from typing import Any

from loraforge.curation import layout
from loraforge.runtime.errors import NotFound
from loraforge.runtime.keys import ProjectRef
from loraforge.runtime.storage import Bucket, ObjectStore


def dataset_ids(store: ObjectStore, project: ProjectRef) -> list[str]:
    """Committed datasets (those with a dataset.json), newest first (ties, within the server's
    one-second resolution, break by id)."""
    found: list[tuple[float, str]] = []
    for obj in store.list(Bucket.DATASETS, layout.datasets_root(project)):
        dataset_id = layout.dataset_of_record_key(project, obj.key)
        if dataset_id is not None:
            found.append((obj.modified.timestamp() if obj.modified else 0.0, dataset_id))
    found.sort(reverse=True)
    return [ds for _, ds in found]


def resolve_dataset(
    store: ObjectStore, project: ProjectRef, dataset_id: str | None
) -> tuple[str, dict[str, Any]]:
    """(dataset id, its dataset.json): the one named, or the project's newest."""
    if dataset_id:
        key = layout.record_key(project, dataset_id)
        if store.stat(Bucket.DATASETS, key) is None:
            raise NotFound(
                f"dataset {dataset_id} of {project.tenant}/{project.project} does not "
                "exist (or is not committed yet); `loraforge curate` makes one"
            )
    else:
        ids = dataset_ids(store, project)
        if not ids:
            raise NotFound(
                f"project {project.tenant}/{project.project} has no curated dataset yet; "
                "run `loraforge curate` first"
            )
        dataset_id = ids[0]
        key = layout.record_key(project, dataset_id)
    return dataset_id, store.get_json(Bucket.DATASETS, key)
