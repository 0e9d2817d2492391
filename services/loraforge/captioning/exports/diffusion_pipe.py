"""diffusion-pipe: one folder of media with same-named .txt captions and a dataset TOML
(`resolutions`, `enable_ar_bucket`, `frame_buckets`, `[[directory]] path, num_repeats`).

Frame buckets are 4k+1 counts up to the shortest clip (1 = images), as Wan needs.
"""

from __future__ import annotations

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
    split_kinds,
    to_toml,
    write_caption,
)
from loraforge.captioning.exports.musubi import target_frames


def export_diffusion_pipe(
    items: list[ExportItem],
    out: Path,
    *,
    resolution: int = 512,
    num_repeats: int = 5,
    path_root: str | None = None,
    **_: object,
) -> ExportResult:
    check_captions(items)
    out = fresh_dir(out)
    videos, _images = split_kinds(items)
    buckets = target_frames(min(v.info().frames for v in videos)) if videos else [1]
    files = []
    for it in items:
        media = place(it.media, out / "data" / f"{safe_name(it.clip_id)}{it.media.suffix.lower()}")
        files += [media, write_caption(media, it.caption)]
    root = path_root.rstrip("/") if path_root else str(out.resolve())
    toml = out / "dataset.toml"
    toml.write_text(
        to_toml(
            {
                "resolutions": [resolution],
                "enable_ar_bucket": True,
                "min_ar": 0.5,
                "max_ar": 2.0,
                "num_ar_buckets": 7,
                "frame_buckets": buckets,
                "directory": [{"path": f"{root}/data", "num_repeats": num_repeats}],
            }
        ),
        encoding="utf-8",
    )
    return ExportResult(out, [*files, toml], {"frame_buckets": buckets})


def read_diffusion_pipe(path: Path, **_: object) -> list[tuple[Path, str]]:
    cfg = tomllib.loads((path / "dataset.toml").read_text(encoding="utf-8"))
    for key in ("resolutions", "enable_ar_bucket", "frame_buckets", "directory"):
        if key not in cfg:
            raise ExportRefused("diffusion_pipe_config", f"dataset.toml lacks {key}")
    out = []
    for d in cfg["directory"]:
        folder = Path(d["path"])
        if not folder.is_dir():
            folder = path / folder.name
        if d.get("num_repeats", 1) < 1:
            raise ExportRefused("diffusion_pipe_config", "num_repeats must be >= 1")
        out += [(m, read_caption(m)) for m in media_files(folder)]
    return out
