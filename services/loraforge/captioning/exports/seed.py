"""The layout the source guide asks for (shared/seeds 000):

    dataset/videos/clip_001.mp4   dataset/captions/clip_001.txt   dataset/metadata.json
(photos go to dataset/images/). metadata.json maps every file back to its clip id.
"""

from __future__ import annotations

import json
from pathlib import Path

from loraforge.captioning.errors import ExportRefused
from loraforge.captioning.exports.common import (
    ExportItem,
    ExportResult,
    check_captions,
    fresh_dir,
    place,
)
from loraforge.captioning.media import is_video


def export_seed(
    items: list[ExportItem], out: Path, *, trigger: str = "", lora_type: str = "", **_: object
) -> ExportResult:
    check_captions(items)
    root = fresh_dir(out) / "dataset"
    entries, files = [], []
    for n, it in enumerate(items, 1):
        info = it.info()
        folder = "videos" if is_video(it.media) else "images"
        media = place(it.media, root / folder / f"clip_{n:03d}{it.media.suffix.lower()}")
        cap = root / "captions" / f"clip_{n:03d}.txt"
        cap.parent.mkdir(parents=True, exist_ok=True)
        cap.write_text(it.caption.strip() + "\n", encoding="utf-8")
        files += [media, cap]
        entries.append(
            {
                "file": media.relative_to(root).as_posix(),
                "caption_file": cap.relative_to(root).as_posix(),
                "clip_id": it.clip_id,
                "caption": it.caption.strip(),
                "width": info.width,
                "height": info.height,
                "duration_s": round(info.duration_s, 3),
                "fps": info.fps,
            }
        )
    meta = root / "metadata.json"
    meta.write_text(
        json.dumps(
            {"trigger": trigger, "lora_type": lora_type, "count": len(entries), "clips": entries},
            indent=1,
        ),
        encoding="utf-8",
    )
    return ExportResult(root, [*files, meta], {"count": len(entries)})


def read_seed(path: Path, **_: object) -> list[tuple[Path, str]]:
    root = path / "dataset" if (path / "dataset").is_dir() else path
    meta_path = root / "metadata.json"
    if not meta_path.is_file():
        raise ExportRefused("seed_layout", f"{root} has no metadata.json")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    out = []
    for e in meta["clips"]:
        media, cap = root / e["file"], root / e["caption_file"]
        if not media.is_file() or not cap.is_file():
            raise ExportRefused("seed_layout", f"{e['file']} or {e['caption_file']} is missing")
        if Path(e["file"]).stem != Path(e["caption_file"]).stem:
            raise ExportRefused(
                "seed_layout", f"{e['file']} and {e['caption_file']} do not pair up"
            )
        text = cap.read_text(encoding="utf-8").strip()
        if text != e["caption"]:
            raise ExportRefused("seed_layout", f"{cap.name} differs from metadata.json")
        out.append((media, text))
    if len(out) != meta["count"]:
        raise ExportRefused("seed_layout", "metadata.json count does not match its clips")
    return out
