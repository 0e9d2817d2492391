"""What every export shares: the item type, caption files, copying media, a TOML writer."""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loraforge.captioning.errors import ExportRefused
from loraforge.captioning.media import IMAGE_EXTS, VIDEO_EXTS, MediaInfo, is_video, probe


@dataclass
class ExportItem:
    clip_id: str
    media: Path  # local video or image
    caption: str

    def info(self) -> MediaInfo:
        return probe(self.media)


@dataclass
class ExportResult:
    path: Path  # folder or zip
    files: list[Path] = field(default_factory=list)
    report: dict[str, Any] = field(default_factory=dict)


def check_captions(items: list[ExportItem]) -> None:
    for it in items:
        if not it.caption or not it.caption.strip():
            raise ExportRefused(
                "caption_required", f"clip {it.clip_id} has no caption; caption it first"
            )


def fresh_dir(path: Path) -> Path:
    """Exports write a whole new folder: refusing to mix with an older export's files."""
    if path.exists() and any(path.iterdir()):
        raise ExportRefused("empty_output", f"{path} is not empty; export into a new folder")
    path.mkdir(parents=True, exist_ok=True)
    return path


def place(src: Path, dst: Path) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src, dst)
    return dst


def write_caption(media: Path, caption: str, ext: str = ".txt") -> Path:
    path = media.with_suffix(ext)
    path.write_text(caption.strip() + "\n", encoding="utf-8")
    return path


def read_caption(media: Path, ext: str = ".txt") -> str:
    path = media.with_suffix(ext)
    if not path.is_file():
        raise ExportRefused("caption_file", f"{media.name} has no caption file {path.name}")
    text = path.read_text(encoding="utf-8").strip()
    if not text:
        raise ExportRefused("caption_file", f"{path.name} is empty")
    return text


def media_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in VIDEO_EXTS | IMAGE_EXTS)


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "item"


def split_kinds(items: list[ExportItem]) -> tuple[list[ExportItem], list[ExportItem]]:
    return [i for i in items if is_video(i.media)], [i for i in items if not is_video(i.media)]


# -- TOML (tomllib only reads) ---------------------------------------------------------------


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (str, Path)):
        s = str(v).replace("\\", "\\\\").replace('"', '\\"')
        return f'"{s}"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def to_toml(doc: dict[str, Any]) -> str:
    """Scalars first, then [tables], then [[arrays of tables]] with nested [[a.b]] subtables."""
    lines: list[str] = []

    def emit(prefix: str, table: dict[str, Any]) -> None:
        for k, v in table.items():
            if not isinstance(v, dict) and not (
                isinstance(v, list) and v and isinstance(v[0], dict)
            ):
                lines.append(f"{k} = {_toml_value(v)}")
        for k, v in table.items():
            name = f"{prefix}.{k}" if prefix else k
            if isinstance(v, dict):
                lines.append(f"\n[{name}]")
                emit(name, v)
            elif isinstance(v, list) and v and isinstance(v[0], dict):
                for entry in v:
                    lines.append(f"\n[[{name}]]")
                    emit(name, entry)

    emit("", doc)
    return "\n".join(lines).strip() + "\n"
