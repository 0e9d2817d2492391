"""Where ingest keeps things in the object store: the one place that spells its keys.

    raw    <t>/<p>/sources/<sha256>.<ext>                    originals, content-addressed
    clips  <t>/<p>/clips/<sha16>/<clip_id>.mp4                clips (photos: .png / .jpg)
           <t>/<p>/clips/<sha16>/<clip_id>_<first|middle|last>.jpg   keyframes
           <t>/<p>/clips/<sha16>/<clip_id>_analysis.zip              analysis proxy (proxy.py):
                                                                     curation reads it, not the clip
           <t>/<p>/clips/<sha16>/manifest-<options_hash>.json        written last: commit marker

`sha16` is the first 16 hex digits of the source's sha256; `clip_id` starts with the first 8
digits of the options hash, so two option sets never overwrite each other's clips.

Kept free of the media stack (no OpenCV, numpy) so the CLI can import it.
"""

from __future__ import annotations

import re
from pathlib import PurePath

from loraforge.ingest.errors import ForeignSource
from loraforge.runtime.errors import InvalidInput
from loraforge.runtime.keys import ProjectRef
from loraforge.runtime.storage import Bucket, ObjectStore

_EXT = re.compile(r"^[a-z0-9]{1,8}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_MANIFEST = re.compile(r"^[0-9a-f]{16}/manifest-[0-9a-f]{16}\.json$")  # under clips_root


def original_ext(name: str) -> str:
    """The extension an original is stored under: the file name's, lower-cased, else `bin`."""
    ext = PurePath(name).suffix.lower().lstrip(".")
    return ext if _EXT.match(ext) else "bin"


def originals_prefix(ref: ProjectRef) -> str:
    return ref.key("sources") + "/"


def original_key(ref: ProjectRef, sha256: str, ext: str) -> str:
    if not _SHA256.match(sha256):
        raise InvalidInput(f"{sha256!r} is not a sha256 hex digest")
    return ref.key("sources", f"{sha256}.{ext}")


def sha_of_original_key(ref: ProjectRef, key: str) -> str | None:
    """The sha256 a content-addressed original's key names, or None for any other key."""
    prefix = originals_prefix(ref)
    if not key.startswith(prefix):
        return None
    stem = key[len(prefix) :].split(".", 1)[0]
    return stem if _SHA256.match(stem) and "/" not in key[len(prefix) :] else None


def find_original(store: ObjectStore, ref: ProjectRef, sha256: str) -> str | None:
    """The key of an original with this content already in `raw`, whatever its extension."""
    for obj in store.list(Bucket.RAW, f"{originals_prefix(ref)}{sha256}."):
        return obj.key
    return None


def clips_root(ref: ProjectRef) -> str:
    """Where every source's folder is: what a reader of all of a project's clips lists."""
    return ref.key("clips") + "/"


def clips_prefix(ref: ProjectRef, sha256: str) -> str:
    return ref.key("clips", sha256[:16]) + "/"


def manifest_key(ref: ProjectRef, sha256: str, options_hash: str) -> str:
    return ref.key("clips", sha256[:16], f"manifest-{options_hash}.json")


def is_manifest_key(ref: ProjectRef, key: str) -> bool:
    """Whether `key` is a key `manifest_key` makes for this project."""
    root = clips_root(ref)
    return key.startswith(root) and _MANIFEST.match(key[len(root) :]) is not None


def is_clip_key(ref: ProjectRef, key: str) -> bool:
    """Whether `key` can name an object ingest wrote for this project: under its clips root,
    no empty, `.` or `..` part (a manifest's keys are checked with this before they are read)."""
    parts = key[len(clips_root(ref)) :].split("/")
    return key.startswith(clips_root(ref)) and not any(p in ("", ".", "..") for p in parts)


def analysis_key(ref: ProjectRef, sha256: str, clip_id: str) -> str:
    """The clip's analysis proxy: sampled frames curation measures instead of decoding the clip."""
    return ref.key("clips", sha256[:16], f"{clip_id}_analysis.zip")


def clip_id(options_hash: str, index: int) -> str:
    return f"{options_hash[:8]}-{index:04d}"


def is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


def check_source(ref: ProjectRef, source: str) -> str:
    """A job source as its raw key (an optional `raw/` in front is dropped) or its URL.

    Anything else, in particular a key of another tenant or project, raises `ForeignSource`.
    """
    if is_url(source):
        return source
    key = source.removeprefix("raw/") if source.startswith("raw/" + ref.prefix) else source
    if not key.startswith(ref.prefix) or any(p in ("", ".", "..") for p in key.split("/")):
        raise ForeignSource(
            f"{source!r} is not an object key of {ref.tenant}/{ref.project}: sources must be keys "
            f"in the raw bucket under '{ref.prefix}' (upload local files first, e.g. with "
            "`loraforge ingest PATH`) or http(s) URLs"
        )
    return key


def ingested_event_id(job_id: str) -> str:
    """The id of the one `clips.ingested` event an ingest job publishes (stable: de-duplicated
    on redelivery, and followers can derive the jobs it starts)."""
    return f"ingest-clips-ingested-{job_id}"
