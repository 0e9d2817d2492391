"""Finding a project's curated datasets in the object store, for the commands that take
`--dataset ID` with "the newest one" as the default."""

from __future__ import annotations

from typing import Any

from loraforge.runtime.errors import NotFound
from loraforge.runtime.keys import ProjectRef, validate_key_part
from loraforge.runtime.storage import Bucket, ObjectStore

RECORD = "dataset.json"


def dataset_ids(store: ObjectStore, project: ProjectRef) -> list[str]:
    """Committed datasets (those with a dataset.json), newest first.

    ObjectStore.list does not carry modification times, so this asks the S3 client underneath
    for them (ties, within the server's one-second resolution, break by id)."""
    prefix = project.key("datasets") + "/"
    found: list[tuple[Any, str]] = []
    with store._errors(f"list datasets of {project.tenant}/{project.project}"):
        for obj in store._client.list_objects(
            store.bucket_name(Bucket.DATASETS), prefix=prefix, recursive=True
        ):
            rel = obj.object_name[len(prefix) :]
            parts = rel.split("/")
            if len(parts) == 2 and parts[1] == RECORD:
                found.append((obj.last_modified, parts[0]))
    found.sort(key=lambda t: (t[0].timestamp() if t[0] else 0.0, t[1]), reverse=True)
    return [ds for _, ds in found]


def resolve_dataset(
    store: ObjectStore, project: ProjectRef, dataset_id: str | None
) -> tuple[str, dict]:
    """(dataset id, its dataset.json): the one named, or the project's newest."""
    if dataset_id:
        key = project.key("datasets", validate_key_part(dataset_id), RECORD)
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
        key = project.key("datasets", dataset_id, RECORD)
    return dataset_id, store.get_json(Bucket.DATASETS, key)
