"""Every object key of the LoRA library, spelled once (bucket `loras`).

    <t>/<p>/library/<name>/versions/<n>.json       a version's record (commit marker: written
                                                   last, never rewritten)
    <t>/<p>/library/<name>/aliases/<alias>.json    {version, moved_at, by, history}: movable
    <t>/<p>/library/_blobs/<sha256>.safetensors    the LoRA files of every version, content-
                                                   addressed (a later change to the run cannot
                                                   alter a version; two versions of one
                                                   checkpoint share the bytes)
    <t>/<p>/deployments/<deployment>.json          deployment records (written by the
                                                   deployments store); a record names the
                                                   version it serves as
                                                   {"lora": {"name": ..., "version": n}}, which
                                                   is what `Library.in_use` reads

`_blobs` cannot collide with a LoRA name: names are slugs, which never start with `_`.
The training runs a version is made from live beside it (`<t>/<p>/runs/<run_id>/`,
trainer/run/layout.py).
"""

from __future__ import annotations

import re

from loraforge.runtime.errors import InvalidInput
from loraforge.runtime.keys import ProjectRef, validate_key_part, validate_slug
from loraforge.runtime.storage import Bucket
from loraforge.trainer.run import layout as run_layout

BUCKET = Bucket.LORAS
LIBRARY = "library"
BLOBS = "_blobs"
DEPLOYMENTS = "deployments"

_SHA = re.compile(r"^[0-9a-f]{64}$")


def validate_name(name: str) -> str:
    return validate_slug(name, "LoRA name")


def validate_alias(alias: str) -> str:
    """Aliases are slugs that are not numbers (`3` is always version 3)."""
    validate_slug(alias, "alias")
    if alias.isdigit():
        raise InvalidInput(
            f"alias {alias!r} is a number, which always means a version; "
            "pick a name with a letter in it (e.g. 'prod', 'v3-candidate')"
        )
    return alias


def name_prefix(ref: ProjectRef, name: str) -> str:
    return ref.key(LIBRARY, validate_name(name)) + "/"


def library_prefix(ref: ProjectRef) -> str:
    return ref.key(LIBRARY) + "/"


def version_key(ref: ProjectRef, name: str, version: int) -> str:
    if version < 1:
        raise InvalidInput(f"version {version}: versions count from 1")
    return ref.key(LIBRARY, validate_name(name), "versions", f"{int(version)}.json")


def versions_prefix(ref: ProjectRef, name: str) -> str:
    return ref.key(LIBRARY, validate_name(name), "versions") + "/"


def alias_key(ref: ProjectRef, name: str, alias: str) -> str:
    return ref.key(LIBRARY, validate_name(name), "aliases", f"{validate_alias(alias)}.json")


def aliases_prefix(ref: ProjectRef, name: str) -> str:
    return ref.key(LIBRARY, validate_name(name), "aliases") + "/"


def blob_key(ref: ProjectRef, sha256: str) -> str:
    if not _SHA.match(sha256):
        raise InvalidInput(f"{sha256!r} is not a sha256 hex digest")
    return ref.key(LIBRARY, BLOBS, f"{sha256}.safetensors")


def blobs_prefix(ref: ProjectRef) -> str:
    return ref.key(LIBRARY, BLOBS) + "/"


def run_prefix(ref: ProjectRef, run_id: str) -> str:
    """The trainer's run folder (spelled in trainer/run/layout.py), no trailing slash; the id
    is checked first because here it comes from a user."""
    return run_layout.run_prefix(ref, validate_key_part(run_id))


def run_record_key(ref: ProjectRef, run_id: str) -> str:
    return run_layout.record_key(run_prefix(ref, run_id))


def deployments_prefix(ref: ProjectRef) -> str:
    return ref.key(DEPLOYMENTS) + "/"


def deployment_key(ref: ProjectRef, deployment: str) -> str:
    return ref.key(DEPLOYMENTS, f"{validate_key_part(deployment)}.json")


# -- seed 004's hosted fine-tuning surface (finetunes.py) ------------------------------------
#
#   raw       <t>/<p>/fine-tune-files/<sha256>.zip        the uploaded zip (content-addressed)
#   clips     <t>/<p>/clips/ft-<sha16>/sample-NNN.<ext>   its videos, + _first/_last images
#   datasets  <t>/<p>/datasets/ft-<sha20>/                a dataset the trainer reads as is
#                                                          (dataset.json written last; captions
#                                                          = the zip's prompts, approved)
#   datasets  <t>/<p>/fine-tune-files/<file_id>.json      the file record (after the dataset)
#   loras     <t>/<p>/fine-tunes/<job_id>.json            a fine-tune job's request and plan

FT_FILES = "fine-tune-files"
FT_JOBS = "fine-tunes"


def ft_zip_key(ref: ProjectRef, sha256: str) -> str:
    if not _SHA.match(sha256):
        raise InvalidInput(f"{sha256!r} is not a sha256 hex digest")
    return ref.key(FT_FILES, f"{sha256}.zip")


def ft_clip_folder(ref: ProjectRef, sha256: str) -> str:
    return ref.key("clips", f"ft-{sha256[:16]}")


def ft_dataset_id(sha256: str) -> str:
    return f"ft-{sha256[:20]}"


def ft_file_key(ref: ProjectRef, file_id: str) -> str:
    return ref.key(FT_FILES, f"{validate_key_part(file_id)}.json")


def ft_files_prefix(ref: ProjectRef) -> str:
    return ref.key(FT_FILES) + "/"


def ft_job_key(ref: ProjectRef, job_id: str) -> str:
    return ref.key(FT_JOBS, f"{validate_key_part(job_id)}.json")


def ft_jobs_prefix(ref: ProjectRef) -> str:
    return ref.key(FT_JOBS) + "/"
