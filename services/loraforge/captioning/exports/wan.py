"""Hosted Wan fine-tuning datasets (shared/seeds 004): image-to-video from a first frame
(`i2v`) or from first + last frames (`kf2v`).

    i2v  zip: data.jsonl + image_<n>.jpg + video_<n>.mp4 (flat)
    kf2v zip: data.jsonl + image/<n>_first.jpg, image/<n>_last.jpg + video/<n>.mp4
    data.jsonl: {"prompt", "first_frame_path", ["last_frame_path"], "video_path"} per line

The service's limits are checked BEFORE anything is uploaded, on decoded media; a dataset that
breaks one is refused with the rule's name (ExportRefused.rule). The zip is written to a
temporary name and renamed only when complete and within the size limit.
Validation split (optional): n_val = min(floor(N * (1 - split)), max_val) samples go to a
second zip (images + data.jsonl, no video), as the service would split them itself.
Step rule: steps = n_epochs * ceil(N / batch) must reach 800, so n_epochs is recommended.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from PIL import Image

from loraforge.captioning.errors import ExportRefused
from loraforge.captioning.exports.common import ExportItem, ExportResult, check_captions
from loraforge.captioning.media import extract_frame, is_video, probe

MB = 1024 * 1024
MAX_CLIP_S = {"wan2.2": 5.0, "wan2.5": 10.0}
VIDEO_FORMATS = {".mp4", ".mov"}
IMAGE_FORMATS = {"BMP", "JPEG", "PNG", "WEBP"}
MIN_STEPS = 800


@dataclass(frozen=True)
class WanLimits:
    min_samples: int = 10
    max_jsonl_bytes: int = 20 * MB
    max_zip_bytes: int = 1024 * MB
    max_side: int = 4096


def validation_count(n: int, split: float | None, max_val: int) -> int:
    """min(N * (1 - split), max_val), the hosted service's own rule for an absent valid set."""
    if split is None:
        return 0
    if not 0 < split <= 1:
        raise ExportRefused("split", f"split must be in (0, 1], not {split}")
    return max(0, min(int(round(n * (1 - split), 6)), max_val))  # 30 * 0.1 is 2.999...


def recommend_epochs(n: int, batch_size: int, min_steps: int = MIN_STEPS) -> int:
    steps_per_epoch = math.ceil(n / batch_size)
    return math.ceil(min_steps / steps_per_epoch)


def _check_media(items: list[ExportItem], target: str, limits: WanLimits) -> None:
    if target not in MAX_CLIP_S:
        raise ExportRefused(
            "target_model", f"target model {target!r}: use one of {', '.join(MAX_CLIP_S)}"
        )
    max_s = MAX_CLIP_S[target]
    for it in items:
        if not is_video(it.media) or it.media.suffix.lower() not in VIDEO_FORMATS:
            raise ExportRefused(
                "video_format",
                f"{it.clip_id}: {it.media.name} is not MP4/MOV; the "
                "service takes MP4 or MOV videos only (re-encode it)",
            )
        info = it.info()
        if info.width > limits.max_side or info.height > limits.max_side:
            raise ExportRefused(
                "max_resolution",
                f"{it.clip_id}: {info.width}x{info.height} exceeds "
                f"{limits.max_side}x{limits.max_side}",
            )
        if info.duration_s > max_s + 1e-3:
            raise ExportRefused(
                "max_duration",
                f"{it.clip_id}: {info.duration_s:.2f} s is longer than "
                f"the {max_s:g} s {target} allows; cut the clip shorter",
            )


def _frames(it: ExportItem, work: Path, n: int, mode: str) -> tuple[Path, Path | None]:
    first = extract_frame(it.media, work / f"{n}_first.jpg", "first")
    last = extract_frame(it.media, work / f"{n}_last.jpg", "last") if mode == "kf2v" else None
    return first, last


def _paths(n: int, mode: str, suffix: str) -> dict[str, str]:
    if mode == "i2v":
        return {"first_frame_path": f"image_{n}.jpg", "video_path": f"video_{n}{suffix}"}
    return {
        "first_frame_path": f"image/image_{n}_first.jpg",
        "last_frame_path": f"image/image_{n}_last.jpg",
        "video_path": f"video/video_{n}{suffix}",
    }


def _write_zip(
    dest: Path, lines: list[dict[str, str]], files: dict[str, Path], limits: WanLimits
) -> Path:
    jsonl = "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines).encode("utf-8")
    if len(jsonl) > limits.max_jsonl_bytes:
        raise ExportRefused(
            "jsonl_size",
            f"data.jsonl would be {len(jsonl)} bytes, over the "
            f"{limits.max_jsonl_bytes // MB} MB limit; shorten the prompts or split",
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
    os.close(fd)
    try:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as zf:  # media is compressed already
            zf.writestr("data.jsonl", jsonl)
            for arc, src in files.items():
                zf.write(src, arc)
        size = Path(tmp).stat().st_size
        if size > limits.max_zip_bytes:
            raise ExportRefused(
                "zip_size",
                f"{dest.name} would be {size} bytes, over the "
                f"{limits.max_zip_bytes // MB} MB limit; use fewer or shorter clips",
            )
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dest


def export_wan_zip(
    items: list[ExportItem],
    out: Path,
    *,
    mode: str = "i2v",
    target: str = "wan2.2",
    split: float | None = None,
    max_val: int = 10,
    batch_size: int = 2,
    limits: WanLimits | None = None,
    **_: object,
) -> ExportResult:
    """`out` is the zip path (or a folder, then `wan-<mode>-training-dataset.zip` inside it)."""
    limits = limits or WanLimits()
    if mode not in ("i2v", "kf2v"):
        raise ExportRefused("mode", f"mode must be i2v or kf2v, not {mode!r}")
    check_captions(items)
    out = Path(out)
    dest = out if out.suffix == ".zip" else out / f"wan-{mode}-training-dataset.zip"
    n_val = validation_count(len(items), split, max_val)
    # every k-th sample goes to validation, so both sets span the whole dataset
    val_idx = set(range(0, len(items), max(1, len(items) // n_val))[:n_val]) if n_val else set()
    train = [it for i, it in enumerate(items) if i not in val_idx]
    val = [it for i, it in enumerate(items) if i in val_idx]
    if len(train) < limits.min_samples:
        raise ExportRefused(
            "min_samples",
            f"{len(train)} training samples; the service needs at least "
            f"{limits.min_samples} (20-100 recommended)",
        )
    _check_media(items, target, limits)
    with tempfile.TemporaryDirectory(prefix="wan-export-") as tmp:
        work = Path(tmp)
        lines, files = [], {}
        for n, it in enumerate(train, 1):
            first, last = _frames(it, work, n, mode)
            p = _paths(n, mode, it.media.suffix.lower())
            lines.append({"prompt": it.caption.strip(), **p})
            files[p["first_frame_path"]] = first
            files[p["video_path"]] = it.media
            if last is not None:
                files[p["last_frame_path"]] = last
        result_files = [_write_zip(dest, lines, files, limits)]
        if val:
            vlines, vfiles = [], {}
            for n, it in enumerate(val, 1):
                first, last = _frames(it, work / "val", n, mode)
                p = _paths(n, mode, "")
                p.pop("video_path")
                vlines.append({"prompt": it.caption.strip(), **p})
                vfiles[p["first_frame_path"]] = first
                if last is not None:
                    vfiles[p["last_frame_path"]] = last
            vdest = dest.with_name(
                dest.name.replace("training", "valid")
                if "training" in dest.name
                else dest.stem + "-valid.zip"
            )
            result_files.append(_write_zip(vdest, vlines, vfiles, limits))
    report = {
        "mode": mode,
        "target": target,
        "train_samples": len(train),
        "validation_samples": len(val),
        "batch_size": batch_size,
        "recommended_n_epochs": recommend_epochs(len(train), batch_size),
        "steps_per_epoch": math.ceil(len(train) / batch_size),
        "min_total_steps": MIN_STEPS,
    }
    return ExportResult(dest, result_files, report)


def read_wan_zip(
    path: Path,
    *,
    mode: str = "i2v",
    target: str = "wan2.2",
    validation: bool = False,
    limits: WanLimits | None = None,
    **_: object,
) -> list[tuple[str, str]]:
    """Open a zip as the service would and check every rule; returns (video or image, prompt)."""
    limits = limits or WanLimits()
    if path.stat().st_size > limits.max_zip_bytes:
        raise ExportRefused("zip_size", f"{path.name} is over {limits.max_zip_bytes // MB} MB")
    out = []
    with zipfile.ZipFile(path) as zf, tempfile.TemporaryDirectory() as tmp:
        names = set(zf.namelist())
        if "data.jsonl" not in names:
            raise ExportRefused("layout", "data.jsonl must be at the zip's root")
        raw = zf.read("data.jsonl")
        if len(raw) > limits.max_jsonl_bytes:
            raise ExportRefused("jsonl_size", "data.jsonl is over 20 MB")
        lines = [json.loads(line) for line in raw.decode("utf-8").splitlines() if line.strip()]
        if not validation and len(lines) < limits.min_samples:
            raise ExportRefused("min_samples", f"{len(lines)} samples < {limits.min_samples}")
        keys = {"prompt", "first_frame_path"} | ({"last_frame_path"} if mode == "kf2v" else set())
        keys |= set() if validation else {"video_path"}
        for line in lines:
            if not keys <= set(line) or not line["prompt"].strip():
                raise ExportRefused(
                    "layout", f"data.jsonl line lacks {sorted(keys - set(line))}: {line}"
                )
            for k in keys - {"prompt"}:
                if line[k] not in names:
                    raise ExportRefused(
                        "layout", f"{line[k]} is named in data.jsonl but not in the zip"
                    )
                if mode == "kf2v" and not line[k].startswith(("image/", "video/")):
                    raise ExportRefused(
                        "layout", f"{line[k]}: kf2v keeps images in image/, videos in video/"
                    )
            for k in keys & {"first_frame_path", "last_frame_path"}:
                with zf.open(line[k]) as fh, Image.open(fh) as im:
                    if im.format not in IMAGE_FORMATS or max(im.size) > limits.max_side:
                        raise ExportRefused("image_format", f"{line[k]}: {im.format} {im.size}")
            if not validation:
                video = line["video_path"]
                if PurePosixPath(video).suffix.lower() not in VIDEO_FORMATS:
                    raise ExportRefused("video_format", f"{video} is not MP4/MOV")
                local = Path(zf.extract(video, tmp))
                info = probe(local)
                if max(info.width, info.height) > limits.max_side:
                    raise ExportRefused("max_resolution", f"{video}: {info.width}x{info.height}")
                if info.duration_s > MAX_CLIP_S[target] + 1e-3:
                    raise ExportRefused("max_duration", f"{video}: {info.duration_s:.2f} s")
                out.append((video, line["prompt"]))
            else:
                out.append((line["first_frame_path"], line["prompt"]))
    return out
