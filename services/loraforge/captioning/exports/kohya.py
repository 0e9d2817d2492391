"""kohya sd-scripts (image LoRA for SD1.5 / SDXL / Flux): DreamBooth-style folders plus a
dataset TOML.

    img/<repeats>_<trigger> <class>/<clip>.jpg + .txt      dataset.toml

Videos contribute their middle frame (sd-scripts trains on images). `keep_tokens = 1` keeps the
trigger in front when captions are shuffled. Repeats default to about 200 images per epoch.
"""

from __future__ import annotations

import math
import re
import tomllib
from pathlib import Path

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
    to_toml,
    write_caption,
)
from loraforge.captioning.media import extract_frame, is_video

_FOLDER = re.compile(r"^(\d+)_(.+)$")


def default_repeats(n: int, per_epoch: int = 200) -> int:
    return max(1, min(100, math.ceil(per_epoch / max(n, 1))))


def export_kohya(
    items: list[ExportItem],
    out: Path,
    *,
    trigger: str,
    class_noun: str = "person",
    repeats: int | None = None,
    resolution: int = 1024,
    batch_size: int = 1,
    path_root: str | None = None,
    **_: object,
) -> ExportResult:
    check_captions(items)
    out = fresh_dir(out)
    repeats = repeats or default_repeats(len(items))
    folder = out / "img" / f"{repeats}_{trigger} {class_noun}"
    files = []
    for it in items:
        name = safe_name(it.clip_id)
        if is_video(it.media):
            img = extract_frame(it.media, folder / f"{name}.jpg", "middle")
        else:
            img = place(it.media, folder / f"{name}{it.media.suffix.lower()}")
        files += [img, write_caption(img, it.caption)]
    image_dir = f"{path_root.rstrip('/')}/img/{folder.name}" if path_root else str(folder.resolve())
    toml = out / "dataset.toml"
    toml.write_text(
        to_toml(
            {
                "general": {
                    "shuffle_caption": False,
                    "caption_extension": ".txt",
                    "keep_tokens": 1,
                },
                "datasets": [
                    {
                        "resolution": resolution,
                        "batch_size": batch_size,
                        "enable_bucket": True,
                        "subsets": [
                            {
                                "image_dir": image_dir,
                                "num_repeats": repeats,
                                "class_tokens": f"{trigger} {class_noun}",
                            }
                        ],
                    }
                ],
            }
        ),
        encoding="utf-8",
    )
    return ExportResult(out, [*files, toml], {"repeats": repeats, "images": len(items)})


def read_kohya(path: Path, **_: object) -> list[tuple[Path, str]]:
    cfg = tomllib.loads((path / "dataset.toml").read_text(encoding="utf-8"))
    ext = cfg["general"]["caption_extension"]
    out = []
    for ds in cfg["datasets"]:
        for sub in ds["subsets"]:
            d = Path(sub["image_dir"])
            if not d.is_dir():
                d = path / "img" / d.name  # exported with path_root for another machine
            m = _FOLDER.match(d.name)
            if not m or int(m.group(1)) != sub["num_repeats"]:
                raise ExportRefused(
                    "kohya_folder", f"{d.name} is not '<repeats>_<trigger> <class>'"
                )
            trigger = m.group(2).split(" ")[0]
            for img in media_files(d):
                text = read_caption(img, ext)
                if not text.startswith(trigger):
                    raise ExportRefused(
                        "kohya_caption", f"{img.name}: caption must start with {trigger}"
                    )
                out.append((img, text))
    return out
