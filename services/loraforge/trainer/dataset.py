"""Captioned image / video datasets on a local folder, with frame sampling and buckets.

Layouts (mixed freely, searched recursively):

- the seed layout: ``videos/clip_001.mp4`` + ``captions/clip_001.txt``;
- media with a caption next to it: ``photo.jpg`` + ``photo.txt`` (also ``.png``, ``.webp``,
  ``.mp4``, ``.mov``, ``.webm``, ``.mkv``).

Videos are sampled to ``frames`` frames (4k+1 for Wan: its VAE keeps the first frame and
compresses every following 4 into one latent frame):

- ``head``: the first ``frames`` frames;
- ``uniform``: ``frames`` frames spread evenly over the clip;
- ``slide``: every window of ``frames`` consecutive frames, ``slide_stride`` apart (one
  sample per window).

``target_fps`` first resamples the clip (Wan is trained at 16 fps). Clips too short for
one window are skipped with a warning; a dataset left empty is refused.

Aspect-ratio buckets: a resolution preset gives a pixel area (``480p`` = 832x480, ``720p``
= 1280x720, ``512``/``768``/``1024`` = that side squared, or an explicit ``WxH``); buckets
are every width/height pair that are multiples of the family's stride, within the area and
with aspect ratio between 1:2.5 and 2.5:1. Each item goes to the bucket nearest its aspect
ratio and is resized to cover it and center-cropped. Batches never mix buckets or frame
counts. Images in a video dataset are one-frame samples.
"""

from __future__ import annotations

import hashlib
import math
import random
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from loraforge.runtime.errors import InvalidInput

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
VIDEO_EXTS = (".mp4", ".mov", ".webm", ".mkv", ".avi")
RESOLUTION_PRESETS = {"480p": (832, 480), "720p": (1280, 720)}
MAX_ASPECT = 2.5
FRAME_SAMPLING = ("head", "uniform", "slide")


class DatasetError(InvalidInput):
    """A dataset that cannot be trained on, with what to fix."""


def parse_resolution(resolution: str | int, stride: int, family: str) -> tuple[int, int]:
    """Base (width, height) of a resolution preset, checked against the family stride."""
    text = str(resolution).strip().lower()
    if text in RESOLUTION_PRESETS:
        w, h = RESOLUTION_PRESETS[text]
    elif "x" in text:
        try:
            w, h = (int(v) for v in text.split("x", 1))
        except ValueError:
            raise DatasetError(
                f"resolution {resolution!r}: write WIDTHxHEIGHT, e.g. 832x480"
            ) from None
    else:
        try:
            w = h = int(text.rstrip("p"))
        except ValueError:
            raise DatasetError(
                f"resolution {resolution!r} is not known; use 480p, 720p, 512, 768, 1024 or WxH"
            ) from None
    for side in (w, h):
        if side <= 0 or side % stride:
            raise DatasetError(
                f"resolution {resolution!r}: {side} is not a multiple of {stride}, the pixel "
                f"stride of {family} ({_stride_reason(family)}); use e.g. "
                f"{max(stride, side // stride * stride)} or {(side // stride + 1) * stride}"
            )
    return w, h


def _stride_reason(family: str) -> str:
    return {
        "wan": "VAE 8x times transformer patch 2",
        "flux": "VAE 8x times 2x2 latent packing",
    }.get(family, "VAE 8x and UNet downsampling; 64 is kohya's bucket step")


def check_frames(frames: int, family: str) -> int:
    if family == "wan":
        if frames < 1 or (frames - 1) % 4:
            lo = max(1, (frames - 1) // 4 * 4 + 1)
            raise DatasetError(
                f"frames={frames} is not of the form 4k+1 (Wan's VAE encodes the first frame "
                f"alone and then groups of 4); use {lo} or {lo + 4}"
            )
    elif frames != 1:
        raise DatasetError(f"frames={frames}: {family} is an image model; use frames=1")
    return frames


def make_buckets(base: tuple[int, int], stride: int) -> list[tuple[int, int]]:
    area = base[0] * base[1]
    buckets = {base}
    w = stride
    while w <= int(math.sqrt(area) * MAX_ASPECT) + stride:
        h = (area // w) // stride * stride
        if h >= stride and 1 / MAX_ASPECT <= w / h <= MAX_ASPECT:
            buckets.add((w, h))
        w += stride
    return sorted(buckets)


def nearest_bucket(size: tuple[int, int], buckets: list[tuple[int, int]]) -> tuple[int, int]:
    ar = math.log(size[0] / size[1])
    return min(buckets, key=lambda b: (abs(math.log(b[0] / b[1]) - ar), -b[0] * b[1]))


@dataclass(frozen=True)
class DatasetConfig:
    path: Path
    resolution: str | int
    frames: int = 1
    frame_sampling: str = "uniform"
    slide_stride: int | None = None
    target_fps: float | None = None
    repeats: int = 1
    bucketing: bool = True


@dataclass(frozen=True)
class Sample:
    media: Path
    caption: str
    kind: str  # "image" | "video"
    frame_indices: tuple[int, ...]
    bucket: tuple[int, int]  # (width, height)
    content_hash: str

    @property
    def frames(self) -> int:
        return len(self.frame_indices)

    @property
    def key(self) -> str:
        """Stable identity of what this sample encodes to (for the latent cache)."""
        h = hashlib.sha256(f"{self.content_hash}|{self.bucket}|{self.frame_indices}".encode())
        return h.hexdigest()[:24]


@dataclass
class CaptionedDataset:
    config: DatasetConfig
    family: str
    stride: int
    samples: list[Sample] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @classmethod
    def scan(cls, config: DatasetConfig, family: str, stride: int) -> CaptionedDataset:
        root = Path(config.path)
        if not root.is_dir():
            raise DatasetError(f"dataset folder {root} does not exist")
        if config.frame_sampling not in FRAME_SAMPLING:
            raise DatasetError(
                f"frame_sampling={config.frame_sampling!r}; use one of {', '.join(FRAME_SAMPLING)}"
            )
        if config.repeats < 1:
            raise DatasetError(f"repeats={config.repeats}: use 1 or more")
        check_frames(config.frames, family)
        base = parse_resolution(config.resolution, stride, family)
        buckets = make_buckets(base, stride) if config.bucketing else [base]
        media = sorted(
            p
            for p in root.rglob("*")
            if p.is_file() and p.suffix.lower() in IMAGE_EXTS + VIDEO_EXTS
        )
        if not media:
            raise DatasetError(
                f"no images or videos in {root}; expected videos/*.mp4 + captions/*.txt or "
                "images with a .txt caption next to each"
            )
        ds = cls(config, family, stride)
        missing = []
        for path in media:
            caption_file = _caption_for(root, path)
            if caption_file is None:
                missing.append(str(path.relative_to(root)))
                continue
            caption = caption_file.read_text(encoding="utf-8").strip()
            if not caption:
                missing.append(f"{path.relative_to(root)} (empty caption)")
                continue
            ds._add(path, caption, buckets)
        if missing:
            shown = ", ".join(missing[:5]) + (
                f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            )
            raise DatasetError(
                f"{len(missing)} media file(s) in {root} have no caption: {shown}. Write one "
                "caption per file (captions/<name>.txt or <name>.txt next to the file)"
            )
        if ds.skipped:
            warnings.warn(
                f"skipped {len(ds.skipped)} item(s): {'; '.join(ds.skipped[:5])}", stacklevel=2
            )
        if not ds.samples:
            raise DatasetError(
                f"no usable samples in {root}: every clip is shorter than frames="
                f"{config.frames} ({'; '.join(ds.skipped[:3])})"
            )
        return ds

    def _add(self, path: Path, caption: str, buckets: list[tuple[int, int]]) -> None:
        digest = _file_hash(path)
        if path.suffix.lower() in IMAGE_EXTS:
            from PIL import Image

            with Image.open(path) as im:
                size = _upright(im).size  # a phone photo's EXIF rotation decides its bucket
            self.samples.append(
                Sample(path, caption, "image", (0,), nearest_bucket(size, buckets), digest)
            )
            return
        if self.family != "wan":
            self.skipped.append(f"{path.name}: video in an image-model dataset")
            return
        n, fps, size = probe_video(path)
        indices = list(range(n))
        if self.config.target_fps and fps and self.config.target_fps < fps:
            step = fps / self.config.target_fps
            indices = [int(round(i * step)) for i in range(int(n / step))]
            indices = [i for i in indices if i < n]
        f = self.config.frames
        if len(indices) < f:
            self.skipped.append(f"{path.name}: {len(indices)} frames, needs {f}")
            return
        bucket = nearest_bucket(size, buckets)
        mode = self.config.frame_sampling
        if mode == "head":
            windows = [indices[:f]]
        elif mode == "uniform":
            pos = np.linspace(0, len(indices) - 1, f).round().astype(int)
            windows = [[indices[i] for i in pos]]
        else:
            stride = self.config.slide_stride or f
            windows = [indices[s : s + f] for s in range(0, len(indices) - f + 1, stride)]
        for w in windows:
            self.samples.append(Sample(path, caption, "video", tuple(w), bucket, digest))

    # ---------------------------------------------------------------- use

    def __len__(self) -> int:
        return len(self.samples) * self.config.repeats

    @property
    def content_hash(self) -> str:
        h = hashlib.sha256()
        root = Path(self.config.path)
        for s in self.samples:
            h.update(
                f"{s.media.relative_to(root)}|{s.content_hash}|{s.caption}|"
                f"{s.frame_indices}|{s.bucket}\n".encode()
            )
        return h.hexdigest()

    def batches(self, epoch: int, batch_size: int, seed: int) -> list[list[int]]:
        """Sample indices for one epoch (repeats included), shuffled deterministically by
        (seed, epoch), grouped so a batch shares bucket and frame count."""
        rng = random.Random(f"{seed}:{epoch}")
        order = [i for i in range(len(self.samples)) for _ in range(self.config.repeats)]
        rng.shuffle(order)
        groups: dict[tuple[Any, int], list[int]] = {}
        out: list[list[int]] = []
        for i in order:
            s = self.samples[i]
            g = groups.setdefault((s.bucket, s.frames), [])
            g.append(i)
            if len(g) == batch_size:
                out.append(list(g))
                g.clear()
        out += [g for g in groups.values() if g]
        rng.shuffle(out)
        return out

    @property
    def media(self) -> list[Path]:
        """The distinct media files (clips, photos), in scan order."""
        return list(dict.fromkeys(s.media for s in self.samples))

    def subset(self, media: set[Path]) -> CaptionedDataset:
        """The samples of these media files (every window of a clip), as a dataset."""
        return CaptionedDataset(
            self.config, self.family, self.stride, [s for s in self.samples if s.media in media]
        )

    def split_validation(self, n_val: int, seed: int) -> tuple[CaptionedDataset, CaptionedDataset]:
        """(training, validation): ``n_val`` media files drawn by ``seed`` (the same files
        for the same dataset and seed, so a resumed run validates on the same clips). Split
        by file, not by sample, so no window of a validation clip is ever trained on."""
        files = self.media
        rng = random.Random(f"validation:{seed}")
        chosen = set(rng.sample(sorted(files), n_val)) if n_val else set()
        return self.subset(set(files) - chosen), self.subset(chosen)

    def load_pixels(self, index: int) -> torch.Tensor:
        """(C, F, H, W) float in [-1, 1] at the sample's bucket size."""
        s = self.samples[index]
        if s.kind == "image":
            from PIL import Image

            with Image.open(s.media) as im:
                frames = [np.asarray(_upright(im).convert("RGB"))]
        else:
            frames = read_frames(s.media, s.frame_indices)
        w, h = s.bucket
        arr = np.stack([_cover_crop(f, w, h) for f in frames])  # F, H, W, C
        t = torch.from_numpy(arr).permute(3, 0, 1, 2).float() / 127.5 - 1.0
        return t


def validation_count(n_files: int, split: float, max_samples: int) -> int:
    """Seed 004's rule: min(N x (1 - split), max_split_val_dataset_sample) files held out,
    floored, but at least one when there are two or more files and split < 1 (a dataset of
    fewer than 10 clips would otherwise never be validated; seed 004 asks for 10+)."""
    if split >= 1 or n_files < 2:
        return 0
    n = math.floor(n_files * (1 - split) + 1e-9)  # 10 x (1 - 0.9) is 0.99999...
    return max(1, min(n, max_samples, n_files - 1))


def _upright(im: Any) -> Any:
    """The image as it is meant to be seen: cameras store portrait shots sideways plus an
    EXIF orientation (ingest stores photos upright already; local folders may not be)."""
    from PIL import ImageOps

    return ImageOps.exif_transpose(im) or im


def _caption_for(root: Path, media: Path) -> Path | None:
    for cand in (
        media.with_suffix(".txt"),
        root / "captions" / f"{media.stem}.txt",
        media.parent.parent / "captions" / f"{media.stem}.txt",
    ):
        if cand.is_file():
            return cand
    return None


def _file_hash(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def probe_video(path: Path) -> tuple[int, float, tuple[int, int]]:
    import cv2

    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise DatasetError(f"cannot open video {path}")
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        size = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    finally:
        cap.release()
    if n <= 0 or size[0] <= 0:
        raise DatasetError(f"video {path} has no readable frames")
    return n, fps, size


def read_frames(path: Path, indices: tuple[int, ...]) -> list[np.ndarray]:
    import cv2

    wanted = set(indices)
    got: dict[int, np.ndarray] = {}
    cap = cv2.VideoCapture(str(path))
    try:
        i = 0
        last = max(indices)
        while i <= last:
            ok, frame = cap.read()
            if not ok:
                break
            if i in wanted:
                got[i] = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            i += 1
    finally:
        cap.release()
    if len(got) < len(wanted):
        raise DatasetError(f"video {path}: could only decode {len(got)} of {len(wanted)} frames")
    return [got[i] for i in indices]


def _cover_crop(frame: np.ndarray, w: int, h: int) -> np.ndarray:
    import cv2

    fh, fw = frame.shape[:2]
    scale = max(w / fw, h / fh)
    nw, nh = max(w, round(fw * scale)), max(h, round(fh * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(frame, (nw, nh), interpolation=interp)
    x0, y0 = (nw - w) // 2, (nh - h) // 2
    return resized[y0 : y0 + h, x0 : x0 + w]
