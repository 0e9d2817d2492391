"""Local files, folders and zips -> content-addressed originals in `raw` (for the CLI).

Each file is hashed (sha256, streamed) and stored once under
`<tenant>/<project>/sources/<sha256>.<ext>`: the same bytes uploaded twice, under any name,
are one object. Folders are expanded (recursively, sorted) to the media files and zips they
hold; zips are uploaded as they are, the ingest worker expands them safely.

Blocking (the object store client is synchronous); light to import (no media stack).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from loraforge.ingest import layout
from loraforge.ingest.hashing import sha256_file
from loraforge.runtime.errors import InvalidInput
from loraforge.runtime.keys import ProjectRef
from loraforge.runtime.storage import Bucket, ObjectStore

# What a folder is expanded to (files named explicitly are uploaded whatever their name; the
# worker then says what is wrong with them).
# what a folder given to `loraforge ingest` is searched for (a file named directly is sent
# whatever its name: ingest sniffs the content): phone and web files, camera and recorder
# files (AVCHD .MTS/.M2TS, broadcast .TS, DVD .VOB/.MPG, MXF, FLV, WMV), phone photos
MEDIA_SUFFIXES = frozenset(
    {
        *(".mp4", ".mov", ".m4v", ".3gp", ".mkv", ".webm", ".avi"),
        *(".ts", ".mts", ".m2ts", ".mpg", ".mpeg", ".vob", ".mxf", ".flv", ".wmv", ".asf", ".gif"),
        *(".jpg", ".jpeg", ".png", ".webp", ".bmp", ".heic", ".heif", ".avif", ".tif", ".tiff"),
        ".zip",
    }
)
_CONTENT_TYPES = {
    ".mp4": "video/mp4",
    ".mov": "video/quicktime",
    ".mkv": "video/x-matroska",
    ".webm": "video/webm",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".heic": "image/heic",
    ".avif": "image/avif",
    ".ts": "video/mp2t",
    ".mts": "video/mp2t",
    ".m2ts": "video/mp2t",
    ".mpg": "video/mpeg",
    ".mxf": "application/mxf",
    ".zip": "application/zip",
}


@dataclass(frozen=True)
class Uploaded:
    path: Path
    key: str  # in the raw bucket
    sha256: str
    size: int
    created: bool  # False: the same content was already stored


def expand_paths(paths: Iterable[Path | str]) -> list[Path]:
    """Files as given; folders to their media files (hidden files skipped). Refuses missing
    paths and folders without media, naming them."""
    out: list[Path] = []
    for raw in paths:
        p = Path(raw).expanduser()
        if p.is_dir():
            found = sorted(
                f
                for f in p.rglob("*")
                if f.is_file()
                and f.suffix.lower() in MEDIA_SUFFIXES
                and not any(part.startswith(".") for part in f.relative_to(p).parts)
            )
            if not found:
                raise InvalidInput(
                    f"{p}: the folder holds no videos, photos or zips "
                    f"({', '.join(sorted(MEDIA_SUFFIXES))})"
                )
            out.extend(found)
        elif p.is_file():
            out.append(p)
        else:
            raise InvalidInput(f"{p}: no such file or folder; check the path")
    # The same file named twice (directly and through its folder) is uploaded once.
    seen: set[Path] = set()
    unique = []
    for p in out:
        r = p.resolve()
        if r not in seen:
            seen.add(r)
            unique.append(p)
    return unique


def upload_local(
    store: ObjectStore,
    ref: ProjectRef,
    paths: Iterable[Path | str],
    *,
    on_file: Callable[[Path, int, int], None] | None = None,
) -> list[Uploaded]:
    """Upload every file under `paths` to raw, content-addressed; returns them in order.

    `on_file(path, index, total)` is called before each file (for progress output).
    """
    files = expand_paths(paths)
    done: list[Uploaded] = []
    for i, path in enumerate(files):
        if on_file is not None:
            on_file(path, i, len(files))
        sha = sha256_file(path)
        existing = layout.find_original(store, ref, sha)
        if existing is not None:
            done.append(Uploaded(path, existing, sha, path.stat().st_size, False))
            continue
        key = layout.original_key(ref, sha, layout.original_ext(path.name))
        ctype = _CONTENT_TYPES.get(path.suffix.lower(), "application/octet-stream")
        stored, created = store.put_if_absent_file(
            Bucket.RAW, key, path, content_type=ctype, metadata={"original-name": _ascii(path.name)}
        )
        done.append(Uploaded(path, stored.key, sha, stored.size, created))
    return done


def _ascii(name: str) -> str:
    # S3 user metadata travels in HTTP headers: ASCII only.
    return name.encode("ascii", "replace").decode()[:200]
