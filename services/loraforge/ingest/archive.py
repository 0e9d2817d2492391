"""Safe zip extraction.

Zips come from users, so every entry is treated as hostile: names may try to escape the target
folder (zip-slip), entries may be symlinks, and headers may lie about sizes (zip bombs). Limits
are enforced on the bytes actually written, not on what the central directory claims.
"""

from __future__ import annotations

import re
import stat
import zipfile
from pathlib import Path, PurePosixPath

from loraforge.ingest.errors import ArchiveTooLarge, CorruptArchive, UnsafeArchive
from loraforge.ingest.options import ArchiveLimits

_CHUNK = 1 << 20
_DRIVE = re.compile(r"^[a-zA-Z]:")


def _is_junk(name: str) -> bool:
    """macOS resource forks and Finder/Explorer litter: never media, often not even valid files."""
    parts = PurePosixPath(name).parts
    return any(
        p == "__MACOSX" or p.startswith("._") or p in (".DS_Store", "Thumbs.db") for p in parts
    )


def _safe_relpath(archive: str, info: zipfile.ZipInfo) -> PurePosixPath:
    name = info.filename
    # Zips made on Windows may use backslashes; treat them as separators so "..\\x" is caught too.
    norm = name.replace("\\", "/")
    if norm.startswith("/") or _DRIVE.match(norm):
        raise UnsafeArchive(
            f"{archive}: entry {name!r} has an absolute path; "
            f"re-create the zip with relative paths (e.g. zip -r out.zip folder/)"
        )
    parts = [p for p in norm.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise UnsafeArchive(
            f"{archive}: entry {name!r} points outside the archive folder ('..'); "
            f"re-create the zip from the folder itself"
        )
    if "\x00" in norm:
        raise UnsafeArchive(f"{archive}: entry {name!r} contains a NUL byte; re-create the zip")
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise UnsafeArchive(
            f"{archive}: entry {name!r} is a symbolic link, which is not allowed; "
            f"zip the files themselves (zip without --symlinks)"
        )
    return PurePosixPath(*parts) if parts else PurePosixPath(".")


def extract_zip(path: Path, dest: Path, limits: ArchiveLimits | None = None) -> list[Path]:
    """Extract ``path`` into ``dest``; return the extracted regular files, in archive order.

    The whole archive is rejected on the first unsafe entry: a zip that tries to escape is not
    one whose other contents we want to trust. On any error ``dest`` is left without partial
    output from this archive.
    """
    limits = limits or ArchiveLimits()
    path, dest = Path(path), Path(dest)
    name = path.name
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise CorruptArchive(
            f"{name}: the zip cannot be read ({exc}); upload it again or re-create it"
        ) from exc

    with zf:
        infos = zf.infolist()
        if len(infos) > limits.max_entries:
            raise ArchiveTooLarge(
                f"{name}: the zip has {len(infos)} entries, more than the limit of "
                f"{limits.max_entries}; split it into several zips"
            )
        # Validate every name before writing anything.
        planned: list[tuple[zipfile.ZipInfo, PurePosixPath]] = []
        declared = 0
        for info in infos:
            rel = _safe_relpath(name, info)
            if info.is_dir() or _is_junk(info.filename) or rel == PurePosixPath("."):
                continue
            declared += info.file_size
            planned.append((info, rel))
        if declared > limits.max_total_bytes:
            raise ArchiveTooLarge(_too_large(name, declared, limits))

        dest.mkdir(parents=True, exist_ok=True)
        root = dest.resolve()
        written_paths: list[Path] = []
        current: list[Path] = []  # the file being written, removed too if we bail out mid-entry
        total = 0
        try:
            for info, rel in planned:
                target = (root / rel).resolve()
                # Belt and braces: the name checks above should make this impossible.
                if root != target and root not in target.parents:
                    raise UnsafeArchive(
                        f"{name}: entry {info.filename!r} resolves outside the extraction folder; "
                        f"re-create the zip with relative paths"
                    )
                target.parent.mkdir(parents=True, exist_ok=True)
                current[:] = [target]
                entry_bytes = 0
                budget_ratio = max(info.compress_size, 1) * limits.max_ratio
                with zf.open(info) as src, target.open("xb") as out:
                    while chunk := src.read(_CHUNK):
                        entry_bytes += len(chunk)
                        total += len(chunk)
                        if total > limits.max_total_bytes:
                            raise ArchiveTooLarge(_too_large(name, total, limits, partial=True))
                        if entry_bytes > budget_ratio and entry_bytes > 16 * _CHUNK:
                            raise ArchiveTooLarge(
                                f"{name}: entry {info.filename!r} expands more than "
                                f"{limits.max_ratio:.0f}x "
                                f"(a zip bomb?); upload the files without such compression"
                            )
                        out.write(chunk)
                written_paths.append(target)
                current.clear()
        except FileExistsError as exc:
            current.clear()  # it existed before: not ours to delete
            _cleanup(written_paths)
            raise UnsafeArchive(
                f"{name}: the zip contains {Path(exc.filename).name!r} twice; "
                f"rename one of the duplicates and re-create the zip"
            ) from exc
        except (zipfile.BadZipFile, EOFError, zipfile.LargeZipFile, NotImplementedError) as exc:
            _cleanup(written_paths + current)
            raise CorruptArchive(
                f"{name}: an entry cannot be extracted ({exc}); re-create the zip "
                f"with standard (deflate) compression"
            ) from exc
        except BaseException:
            _cleanup(written_paths + current)
            raise
        return written_paths


def _cleanup(paths: list[Path]) -> None:
    for p in paths:
        p.unlink(missing_ok=True)


def _too_large(name: str, size: int, limits: ArchiveLimits, partial: bool = False) -> str:
    what = "expands past" if partial else "would expand to"
    amount = "" if partial else f" {size / 1e6:.1f} MB,"
    return (
        f"{name}: the zip {what}{amount} more than the limit of "
        f"{limits.max_total_bytes / 1e6:.1f} MB; "
        f"split it into smaller zips or upload the files directly"
    )
