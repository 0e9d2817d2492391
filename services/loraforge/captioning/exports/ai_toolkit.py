"""ai-toolkit (ostris): a folder of media with same-named .txt captions, plus the `datasets:`
entry of its YAML config to paste into a training config."""

from __future__ import annotations

from pathlib import Path

import yaml

from loraforge.captioning.errors import ExportRefused
from loraforge.captioning.exports.common import (
    ExportItem,
    ExportResult,
    check_captions,
    fresh_dir,
    media_files,
    place,
    read_caption,
    safe_name,
    split_kinds,
    write_caption,
)


def export_ai_toolkit(
    items: list[ExportItem],
    out: Path,
    *,
    resolution: list[int] | None = None,
    path_root: str | None = None,
    **_: object,
) -> ExportResult:
    check_captions(items)
    out = fresh_dir(out)
    files: list[Path] = []
    for it in items:
        media = place(
            it.media, out / "dataset" / f"{safe_name(it.clip_id)}{it.media.suffix.lower()}"
        )
        files += [media, write_caption(media, it.caption)]
    videos = split_kinds(items)[0]
    entry: dict[str, object] = {
        "folder_path": f"{path_root.rstrip('/') if path_root else out.resolve()}/dataset",
        "caption_ext": "txt",
        "caption_dropout_rate": 0.05,
        "cache_latents_to_disk": True,
        "resolution": resolution or [512, 768],
    }
    if videos:
        entry["num_frames"] = 33
    cfg = out / "dataset_config.yaml"
    cfg.write_text(yaml.safe_dump({"datasets": [entry]}, sort_keys=False), encoding="utf-8")
    return ExportResult(out, [*files, cfg], {"count": len(items)})


def read_ai_toolkit(path: Path, **_: object) -> list[tuple[Path, str]]:
    cfg = yaml.safe_load((path / "dataset_config.yaml").read_text(encoding="utf-8"))
    out: list[tuple[Path, str]] = []
    for ds in cfg["datasets"]:
        folder = Path(ds["folder_path"])
        if not folder.is_dir():
            folder = path / folder.name
        media = media_files(folder)
        if not media:
            raise ExportRefused("ai_toolkit_folder", f"{folder} holds no media")
        out += [(m, read_caption(m, "." + ds["caption_ext"])) for m in media]
    return out
