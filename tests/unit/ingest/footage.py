"""Footage generators for the ingest tests and bench/ingest.py: real photos, real ffmpeg,
known ground truth.

Shots are built from scikit-image's sample photos with camera moves (pan, zoom) rendered in
numpy and piped to ffmpeg, so every cut and fade position is known exactly. Each frame's
thumbnail is kept, which lets tests check which shot any output frame came from.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import skimage.data

from loraforge.ingest.tools import MediaTools

THUMB = (32, 24)


@dataclass(frozen=True)
class ShotSpec:
    image: str  # skimage.data function name
    frames: int
    motion: str = "pan"  # "pan", "zoom" or "still"
    fade_in: int = 0  # frames ramping up from black at the start
    fade_out: int = 0  # frames ramping down to black at the end
    black_after: int = 0  # black frames after this shot


@dataclass
class Footage:
    path: Path
    fps: float
    size: tuple[int, int]
    specs: list[ShotSpec]
    shot_ranges: list[tuple[int, int]] = field(default_factory=list)  # [start, end) per shot
    black_ranges: list[tuple[int, int]] = field(default_factory=list)
    labels: np.ndarray | None = None  # per frame: shot index, -1 for black
    thumbs: np.ndarray | None = None  # per frame: THUMB-sized float32 RGB

    @property
    def hard_cuts(self) -> list[int]:
        """Frames where a shot starts right after another (no black between)."""
        out = []
        for (s, _), (_, prev_end) in zip(self.shot_ranges[1:], self.shot_ranges[:-1], strict=False):
            if s == prev_end:
                out.append(s)
        return out

    def shot_of_frame(self, frame: int) -> int:
        return int(self.labels[frame])

    def nearest_shot(self, thumb: np.ndarray) -> int:
        d = ((self.thumbs - thumb[None]) ** 2).mean(axis=(1, 2, 3))
        return int(self.labels[int(np.argmin(d))])


_IMAGES: dict[str, np.ndarray] = {}


def photo(name: str) -> np.ndarray:
    if name not in _IMAGES:
        img = getattr(skimage.data, name)()
        if isinstance(img, tuple):
            img = img[0]
        if img.ndim == 2:
            img = np.stack([img] * 3, axis=-1)
        _IMAGES[name] = np.ascontiguousarray(img[..., :3].astype(np.uint8))
    return _IMAGES[name]


def render_shot(spec: ShotSpec, size: tuple[int, int]) -> list[np.ndarray]:
    w, h = size
    img = photo(spec.image)
    ih, iw = img.shape[:2]
    # Largest crop with the output aspect ratio that fits the photo.
    cw = min(iw, int(ih * w / h))
    ch = int(cw * h / w)
    frames = []
    for i in range(spec.frames):
        t = i / max(1, spec.frames - 1)
        if spec.motion == "pan":
            scale = 0.75
            pw, ph = int(cw * scale), int(ch * scale)
            x = int(t * (iw - pw))
            y = int((ih - ph) / 2 + (ih - ph) / 4 * np.sin(2 * np.pi * t))
        elif spec.motion == "zoom":
            scale = 1.0 - 0.4 * t
            pw, ph = int(cw * scale), int(ch * scale)
            x, y = (iw - pw) // 2, (ih - ph) // 2
        else:  # still: a slight handheld wobble so encoders and detectors see real motion
            pw, ph = int(cw * 0.9), int(ch * 0.9)
            x = int((iw - pw) / 2 + 3 * np.sin(i / 5))
            y = int((ih - ph) / 2 + 3 * np.cos(i / 7))
        crop = img[y : y + ph, x : x + pw]
        frame = cv2.resize(crop, (w, h), interpolation=cv2.INTER_AREA)
        gain = 1.0
        if spec.fade_in and i < spec.fade_in:
            gain = i / spec.fade_in
        if spec.fade_out and i >= spec.frames - spec.fade_out:
            gain = min(gain, (spec.frames - 1 - i) / spec.fade_out)
        if gain < 1.0:
            frame = np.clip(frame.astype(np.float32) * gain, 0, 255).astype(np.uint8)
        frames.append(frame)
    return frames


def ffmpeg() -> str:
    return MediaTools.discover().ffmpeg


def encode(
    frames_iter,
    path: Path,
    size: tuple[int, int],
    fps: float,
    extra: list[str] | None = None,
    codec: list[str] | None = None,
) -> None:
    w, h = size
    cmd = [
        ffmpeg(),
        "-hide_banner",
        "-loglevel",
        "error",
        "-y",
        "-f",
        "rawvideo",
        "-pix_fmt",
        "rgb24",
        "-s",
        f"{w}x{h}",
        "-r",
        f"{fps}",
        "-i",
        "pipe:0",
        *(extra or []),
        *(
            codec
            or ["-c:v", "libx264", "-preset", "ultrafast", "-crf", "20", "-pix_fmt", "yuv420p"]
        ),
        str(path),
    ]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdin is not None
    try:
        for frame in frames_iter:
            proc.stdin.write(frame.tobytes())
    finally:
        proc.stdin.close()
    err = proc.stderr.read() if proc.stderr else b""
    assert proc.wait() == 0, err.decode()


def make_footage(
    path: Path,
    specs: list[ShotSpec],
    size: tuple[int, int] = (320, 240),
    fps: float = 30.0,
    extra: list[str] | None = None,
    codec: list[str] | None = None,
) -> Footage:
    foot = Footage(path=path, fps=fps, size=size, specs=specs)
    labels: list[int] = []
    thumbs: list[np.ndarray] = []
    black = np.zeros((size[1], size[0], 3), np.uint8)

    def frames():
        pos = 0
        for k, spec in enumerate(specs):
            rendered = render_shot(spec, size)
            foot.shot_ranges.append((pos, pos + len(rendered)))
            for f in rendered:
                # Fade frames darker than half brightness are too dark to identify reliably:
                # label them black so tests demand they never end up in a clip.
                dim = spec.fade_in or spec.fade_out
                labels.append(
                    k if not dim or f.mean() > 0.5 * rendered[len(rendered) // 2].mean() else -1
                )
                thumbs.append(cv2.resize(f, THUMB, interpolation=cv2.INTER_AREA).astype(np.float32))
                yield f
            pos += len(rendered)
            if spec.black_after:
                foot.black_ranges.append((pos, pos + spec.black_after))
                for _ in range(spec.black_after):
                    labels.append(-1)
                    thumbs.append(cv2.resize(black, THUMB).astype(np.float32))
                    yield black
                pos += spec.black_after

    encode(frames(), path, size, fps, extra, codec)
    foot.labels = np.asarray(labels)
    foot.thumbs = np.stack(thumbs)
    return foot


def read_frames(path: Path, size: tuple[int, int] = THUMB) -> np.ndarray:
    """Decode every frame of ``path`` scaled to ``size`` (RGB float32)."""
    w, h = size
    out = subprocess.run(
        [
            ffmpeg(),
            "-hide_banner",
            "-loglevel",
            "error",
            "-i",
            str(path),
            "-vf",
            f"scale={w}:{h}:flags=area",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "pipe:1",
        ],
        capture_output=True,
        check=True,
    ).stdout
    return np.frombuffer(out, np.uint8).reshape(-1, h, w, 3).astype(np.float32)


def lavfi_video(
    path: Path,
    seconds: float,
    size: str = "320x240",
    fps: int = 30,
    extra: list[str] | None = None,
    audio: bool = False,
) -> Path:
    """A quick synthetic clip (testsrc2) where content does not matter."""
    cmd = [
        ffmpeg(),
        "-hide_banner",
        "-loglevel",
        "error",
        "-y",
        "-f",
        "lavfi",
        "-i",
        f"testsrc2=size={size}:rate={fps}:duration={seconds}",
    ]
    if audio:
        cmd += ["-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}"]
    cmd += [*(extra or ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"])]
    if audio:
        cmd += ["-c:a", "aac", "-shortest"]
    subprocess.run([*cmd, str(path)], check=True, capture_output=True)
    return path


# The main multi-shot reel: hard cuts, pans, zooms, a too-short shot, a long shot that must be
# split, and a fade through black.
REEL = [
    ShotSpec("astronaut", 150, "pan"),
    ShotSpec("coffee", 130, "zoom"),
    ShotSpec("chelsea", 60, "still"),  # 2 s, 1.87 s once trimmed at its cuts: under the 2 s minimum
    ShotSpec("rocket", 210, "pan", fade_out=15, black_after=10),
    ShotSpec("stereo_motorcycle", 140, "zoom", fade_in=15),
    ShotSpec("immunohistochemistry", 110, "pan"),
]
