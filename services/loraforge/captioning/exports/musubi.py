"""musubi-tuner (Wan / HunyuanVideo / FramePack LoRA): media + .txt captions and a dataset
TOML with `[general]` (resolution, caption_extension, batch_size, enable_bucket) and one
`[[datasets]]` per media kind (video_directory or image_directory, cache_directory,
target_frames, frame_extraction, num_repeats).

Wan's VAE packs 4 frames per latent step, so every target frame count is 4k+1, and none is
longer than the shortest clip (the trainer would otherwise skip that clip).
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

MAX_TARGET_FRAMES = 81  # Wan's native clip length


def target_frames(min_frames: int, cap: int = MAX_TARGET_FRAMES) -> list[int]:
    top = (min(min_frames, cap) - 1) // 4 * 4 + 1
    if top < 5:
        return [1]
    mid = max(5, (top + 3) // 8 * 4 + 1)  # the 4k+1 nearest half of top
    return sorted({1, mid, top})


def export_musubi(
    items: list[ExportItem],
    out: Path,
    *,
    resolution: tuple[int, int] = (832, 480),
    num_repeats: int = 1,
    batch_size: int = 1,
    path_root: str | None = None,
    **_: object,
) -> ExportResult:
    check_captions(items)
    out = fresh_dir(out)
    videos, images = split_kinds(items)
    root = path_root.rstrip("/") if path_root else str(out.resolve())
    files, datasets = [], []
    if videos:
        infos = [v.info() for v in videos]
        for it in videos:
            media = place(
                it.media, out / "videos" / f"{safe_name(it.clip_id)}{it.media.suffix.lower()}"
            )
            files += [media, write_caption(media, it.caption)]
        datasets.append(
            {
                "video_directory": f"{root}/videos",
                "cache_directory": f"{root}/cache/videos",
                "target_frames": target_frames(min(i.frames for i in infos)),
                "frame_extraction": "head",
                "num_repeats": num_repeats,
            }
        )
    if images:
        for it in images:
            media = place(
                it.media, out / "images" / f"{safe_name(it.clip_id)}{it.media.suffix.lower()}"
            )
            files += [media, write_caption(media, it.caption)]
        datasets.append(
            {
                "image_directory": f"{root}/images",
                "cache_directory": f"{root}/cache/images",
                "num_repeats": num_repeats,
            }
        )
    toml = out / "dataset.toml"
    toml.write_text(
        to_toml(
            {
                "general": {
                    "resolution": list(resolution),
                    "caption_extension": ".txt",
                    "batch_size": batch_size,
                    "enable_bucket": True,
                    "bucket_no_upscale": False,
                },
                "datasets": datasets,
            }
        ),
        encoding="utf-8",
    )
    return ExportResult(out, [*files, toml], {"datasets": datasets})


def read_musubi(path: Path, **_: object) -> list[tuple[Path, str]]:
    cfg = tomllib.loads((path / "dataset.toml").read_text(encoding="utf-8"))
    general = cfg["general"]
    for key in ("resolution", "caption_extension", "batch_size", "enable_bucket"):
        if key not in general:
            raise ExportRefused("musubi_config", f"[general] lacks {key}")
    out = []
    for ds in cfg["datasets"]:
        kind = "video_directory" if "video_directory" in ds else "image_directory"
        if kind == "video_directory":
            bad = [f for f in ds["target_frames"] if f % 4 != 1]
            if bad:
                raise ExportRefused("musubi_target_frames", f"target_frames {bad} are not 4k+1")
        d = Path(ds[kind])
        if not d.is_dir():
            d = path / d.name
        for media in media_files(d):
            out.append((media, read_caption(media, general["caption_extension"])))
    return out
