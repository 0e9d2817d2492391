"""Seed 004 dataset zips built from real photos (skimage's astronaut, coffee, chelsea, ...):
each sample is a short H.264 clip of one photo doing the same effect (a slow push-in with a
warm flash at the end), its first and last frames, and a prompt in seed 004's formula
(subject + background + trigger + the one shared motion description)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

TRIGGER = "s86b5p"
MOTION = f"然后她开始了{TRIGGER}变身。"
PHOTOS = (
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "cat",
    "immunohistochemistry",
    "hubble_deep_field",
    "retina",
    "colorwheel",
    "logo",
    "page",
    "camera",
)
SUBJECTS = {
    "astronaut": "一位宇航员站在美国国旗前",
    "coffee": "一杯放在桌上的咖啡",
    "chelsea": "一只橘色的猫",
    "rocket": "一枚发射台上的火箭",
    "cat": "一只猫",
}


def _photo(name: str) -> np.ndarray:
    from skimage import data

    img = getattr(data, name)()
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    return np.ascontiguousarray(img[..., :3].astype(np.uint8))


def effect_clip(
    photo: np.ndarray,
    path: Path,
    *,
    frames: int = 9,
    fps: float = 8.0,
    size: tuple[int, int] = (64, 48),
) -> Path:
    """A push-in on the photo (crop shrinking to 70 %) brightening at the end, as H.264."""
    import imageio_ffmpeg
    from PIL import Image

    w, h = size
    H, W = photo.shape[:2]
    writer = imageio_ffmpeg.write_frames(
        str(path),
        (w, h),
        fps=fps,
        codec="libx264",
        pix_fmt_out="yuv420p",
        macro_block_size=1,
        output_params=["-crf", "20"],
    )
    writer.send(None)
    for i in range(frames):
        t = i / max(1, frames - 1)
        scale = 1.0 - 0.3 * t
        cw, ch = int(W * scale), int(H * scale)
        x0, y0 = (W - cw) // 2, (H - ch) // 2
        crop = Image.fromarray(photo[y0 : y0 + ch, x0 : x0 + cw]).resize((w, h), Image.BILINEAR)
        frame = np.asarray(crop).astype(np.float32) * (1.0 + 0.4 * max(0.0, t - 0.6))
        writer.send(np.clip(frame, 0, 255).astype(np.uint8).tobytes())
    writer.close()
    return path


def _frame_jpg(video: Path, out: Path, which: str) -> Path:
    from loraforge.captioning.media import extract_frame

    return extract_frame(video, out, which)


def build_kf2v_zip(
    dest: Path,
    samples: int = 10,
    *,
    long_video: int | None = None,
    rename: dict[str, str] | None = None,
    mode: str = "kf2v",
) -> Path:
    """A zip in seed 004's kf2v (or i2v) layout. `long_video`: that sample's clip is 6 s
    (over the 5 s limit); `rename`: data.jsonl field names changed (a wrong field)."""
    work = dest.parent / (dest.stem + "-src")
    work.mkdir(parents=True, exist_ok=True)
    lines: list[dict[str, Any]] = []
    files: dict[str, Path] = {}
    for n in range(1, samples + 1):
        name = PHOTOS[(n - 1) % len(PHOTOS)]
        video = work / f"video_{n}.mp4"
        effect_clip(_photo(name), video, frames=48 if n == long_video else 9)
        subject = SUBJECTS.get(name, f"一张{name}的照片")
        prompt = f"视频开头展示了{subject}。背景简洁。{MOTION}"
        if mode == "kf2v":
            first = _frame_jpg(video, work / f"image_{n}_first.jpg", "first")
            last = _frame_jpg(video, work / f"image_{n}_last.jpg", "last")
            line = {
                "prompt": prompt,
                "first_frame_path": f"image/image_{n}_first.jpg",
                "last_frame_path": f"image/image_{n}_last.jpg",
                "video_path": f"video/video_{n}.mp4",
            }
            files.update(
                {
                    line["first_frame_path"]: first,
                    line["last_frame_path"]: last,
                    line["video_path"]: video,
                }
            )
        else:
            first = _frame_jpg(video, work / f"image_{n}.jpg", "first")
            line = {
                "prompt": prompt,
                "first_frame_path": f"image_{n}.jpg",
                "video_path": f"video_{n}.mp4",
            }
            files.update({line["first_frame_path"]: first, line["video_path"]: video})
        for old, new in (rename or {}).items():
            line[new] = line.pop(old)
        lines.append(line)
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("data.jsonl", "".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines))
        for arc, src in files.items():
            zf.write(src, arc)
    return dest
