"""The analysis proxy: what curation needs of a clip's pixels, written by ingest's encode pass.

Curation looks at a handful of frames per clip (``SAMPLE_FRAMES`` spread over it, at most
``ANALYSIS_LONG_SIDE`` px on the long side so small faces still detect) plus, for optical flow,
a small grey copy of the frame right after each of them. Ingest already has every frame in its
ffmpeg filter graph while it encodes the clip, so it writes those frames once, into one small
file beside the clip, and curation downloads that instead of the clip and never decodes it.

File: a zip (stored, not deflated: the members are compressed images already)
    proxy.json                  {"version", "frame_count", "fps", "width", "height",
                                 "analysis_width", "analysis_height", "indices", "next"}
    frame-<index>.jpg           a sampled frame at analysis size, BGR, JPEG quality 95, 4:4:4
    next-<index>.png            the frame after it, grey, FLOW_WIDTH wide (lossless)
    signature.bin               optional (proxies before it lack it): the clip's motion
                                signature, one row of SIGNATURE_CELLS per source frame
                                (SIGNATURE_DTYPE, signature_rows; proxy.json's
                                "signature_frames" and "signature_fps")

JPEG at quality 95 without chroma subsampling: lossless PNG costs ~0.1 s a 720p frame to
encode and is 6x larger; at q95/4:4:4 the codec's own error is below the x264 crf 18 error of
the clip curation used to decode (see bench/README.md for the decisions compared on both).
The frames are the ones the clip is encoded from (same filter graph, before x264), so they are
the clip's frames without its compression. The flow frames are lossless because flow compares
two frames pixel by pixel and the reduction to FLOW_WIDTH is the same as curation's own.

Kept free of curation imports: curation reads this format through ``read_proxy``.
"""

from __future__ import annotations

import json
import math
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

PROXY_VERSION = 1
# Curation's default frames_per_clip; a policy asking for other frames decodes the clip.
SAMPLE_FRAMES = 8
# Long side of the stored frames: dlib's HOG face window is 80 px, so a face a tenth of a 720p
# frame's height (72 px) is still found; 1080p/4K clips shrink to this, 720p and below stay.
ANALYSIS_LONG_SIDE = 1280
FLOW_WIDTH = 160  # what curation's optical flow runs on (curation.frames uses this one)
JPEG_QUALITY = 95
# The motion signature: every frame of the clip as the mean grey of a SIGNATURE_GRID x
# SIGNATURE_GRID grid over the picture (whatever its shape). How it changes from frame to frame
# is what tells a copy of some footage (a re-upload, re-encode, re-cut, crop) from another
# moment filmed the same way (curation/dedup.py: shared_footage). A person swaying a few pixels
# moves a cell's mean by tenths of a grey level, so the means are kept in 1/256 of a level
# (uint16, little-endian): rounded to whole levels the same clip read through the proxy and
# decoded agreed at 0.35-0.68 correlation, a quantisation noise as large as the motion.
# 8x8 cells: a smaller cell moves more for the same motion. 128 bytes a frame.
SIGNATURE_GRID = 8
SIGNATURE_CELLS = SIGNATURE_GRID * SIGNATURE_GRID
SIGNATURE_SCALE = 256  # stored value = mean grey x this
SIGNATURE_DTYPE = np.dtype("<u2")
# ingest's ffmpeg branch writes each frame grey at this square size (whole grey levels);
# signature_rows averages 8x8 of those pixels a cell, which shrinks their rounding to ~0.04
SIGNATURE_SIDE = 64


def sample_indices(frame_count: int, n: int) -> list[int]:
    """Centres of n equal slices of the clip, so the first and last moments are covered too."""
    if frame_count <= 0 or n <= 0:
        return []
    n = min(n, frame_count)
    return sorted({min(frame_count - 1, int((i + 0.5) * frame_count / n)) for i in range(n)})


def wanted(frame_count: int, n: int = SAMPLE_FRAMES) -> tuple[list[int], list[int]]:
    """(sampled frame indices, indices of the frames right after them that exist)."""
    samples = sample_indices(frame_count, n)
    return samples, [i + 1 for i in samples if i + 1 < frame_count]


def analysis_size(width: int, height: int, long_side: int = ANALYSIS_LONG_SIDE) -> tuple[int, int]:
    scale = min(1.0, long_side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def small_gray(image: np.ndarray, width: int = FLOW_WIDTH) -> np.ndarray:
    h, w = image.shape[:2]
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
    return cv2.resize(gray, (width, max(1, round(h * width / w))), interpolation=cv2.INTER_AREA)


def signature_rows(gray: np.ndarray) -> np.ndarray:
    """Grey frames (T x H x W, or one H x W) -> their signature rows (T x SIGNATURE_CELLS, in
    SIGNATURE_DTYPE): each cell the mean of its share of the picture, x SIGNATURE_SCALE."""
    frames = gray[None] if gray.ndim == 2 else gray
    t, h, w = frames.shape
    g = SIGNATURE_GRID
    if h % g or w % g:
        size = (g * max(1, w // g), g * max(1, h // g))
        frames = np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames])
        t, h, w = frames.shape
    cells: np.ndarray = frames.reshape(t, g, h // g, g, w // g).mean(axis=(2, 4), dtype=np.float64)
    return np.round(cells.reshape(t, g * g) * SIGNATURE_SCALE).astype(SIGNATURE_DTYPE)


def signature_means(data: bytes) -> np.ndarray:
    """Stored signature bytes -> frames x SIGNATURE_CELLS mean greys (float32)."""
    rows = np.frombuffer(data, SIGNATURE_DTYPE).reshape(-1, SIGNATURE_CELLS)
    return rows.astype(np.float32) / SIGNATURE_SCALE


@dataclass
class Proxy:
    frame_count: int
    fps: float
    width: int  # the clip's size
    height: int
    indices: list[int]
    frames: dict[int, np.ndarray] = field(default_factory=dict)  # index -> BGR at analysis size
    next_small_gray: dict[int, np.ndarray] = field(default_factory=dict)  # sampled index -> grey
    signature: np.ndarray | None = None  # frames x SIGNATURE_CELLS (signature_rows)
    signature_fps: float = 0.0  # its rate: the source's (ingest splits it off before the fps)

    def covers(self, n: int) -> bool:
        """Whether this proxy holds the frames a policy sampling n frames needs."""
        samples, _ = wanted(self.frame_count, n)
        return bool(samples) and set(samples) <= set(self.indices)


def write_proxy(
    out: Path,
    frames: dict[int, np.ndarray],
    *,
    frame_count: int,
    fps: float,
    width: int,
    height: int,
    signature: np.ndarray | None = None,
    signature_fps: float = 0.0,
) -> Path:
    """``frames``: index -> BGR frame at analysis size, for the sampled indices and the ones
    after them (``wanted``). Missing ones (a clip shorter than planned) are left out.
    ``signature``: the clip's motion signature (signature_rows), one row a frame of the
    source, at ``signature_fps`` (0: the clip's rate)."""
    samples, _ = wanted(frame_count)
    samples = [i for i in samples if i in frames]
    if not samples:
        raise ValueError("no sampled frame to store in the analysis proxy")
    ah, aw = frames[samples[0]].shape[:2]
    nexts = [i for i in samples if i + 1 in frames]
    meta = {
        "version": PROXY_VERSION,
        "frame_count": frame_count,
        "fps": fps,
        "width": width,
        "height": height,
        "analysis_width": aw,
        "analysis_height": ah,
        "indices": samples,
        "next": nexts,
    }
    if signature is not None:
        if signature.ndim != 2 or signature.shape[1] != SIGNATURE_CELLS:
            raise ValueError(f"a motion signature has {SIGNATURE_CELLS} cells a frame")
        meta["signature_frames"] = int(signature.shape[0])
        meta["signature_fps"] = float(signature_fps or fps)
    jpeg = [
        cv2.IMWRITE_JPEG_QUALITY,
        JPEG_QUALITY,
        cv2.IMWRITE_JPEG_SAMPLING_FACTOR,
        cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444,
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as z:
        z.writestr("proxy.json", json.dumps(meta))
        for i in samples:
            z.writestr(f"frame-{i:06d}.jpg", _encode(".jpg", frames[i], jpeg))
        for i in nexts:
            z.writestr(f"next-{i:06d}.png", _encode(".png", small_gray(frames[i + 1]), []))
        if signature is not None:
            z.writestr("signature.bin", signature.astype(SIGNATURE_DTYPE).tobytes())
    return out


def proxy_covers(path: Path, n: int) -> bool:
    """Whether the proxy file holds what a policy sampling n frames needs (reads only its
    index); False for a damaged or other-version file."""
    try:
        with zipfile.ZipFile(path) as z:
            meta = json.loads(z.read("proxy.json"))
        return meta.get("version") == PROXY_VERSION and Proxy(
            int(meta["frame_count"]), 0.0, 0, 0, [int(i) for i in meta["indices"]]
        ).covers(n)
    except (OSError, zipfile.BadZipFile, KeyError, json.JSONDecodeError, TypeError, ValueError):
        return False


def read_proxy(path: Path, n: int = SAMPLE_FRAMES, *, frames: bool = True) -> Proxy | None:
    """The proxy's frames for a policy sampling n frames, or None when it does not hold them
    (other n, other version): the caller then decodes the clip. A damaged file raises ValueError."""
    try:
        with zipfile.ZipFile(path) as z:
            meta = json.loads(z.read("proxy.json"))
            if meta.get("version") != PROXY_VERSION:
                return None
            proxy = Proxy(
                int(meta["frame_count"]),
                float(meta["fps"]),
                int(meta["width"]),
                int(meta["height"]),
                [int(i) for i in meta["indices"]],
            )
            if frames and not proxy.covers(n):
                return None
            samples, _ = wanted(proxy.frame_count, n) if frames else ([], [])
            nexts = set(meta.get("next", []))
            for i in samples:
                proxy.frames[i] = _decode(z.read(f"frame-{i:06d}.jpg"), cv2.IMREAD_COLOR)
                if i in nexts:
                    proxy.next_small_gray[i] = _decode(
                        z.read(f"next-{i:06d}.png"), cv2.IMREAD_GRAYSCALE
                    )
            if "signature_frames" in meta:
                rows = int(meta["signature_frames"])
                data = z.read("signature.bin")
                if len(data) != rows * SIGNATURE_CELLS * SIGNATURE_DTYPE.itemsize:
                    raise ValueError(
                        f"{Path(path).name}: damaged analysis proxy (signature.bin holds "
                        f"{len(data)} bytes, not {rows} rows)"
                    )
                proxy.signature = np.frombuffer(data, SIGNATURE_DTYPE).reshape(
                    rows, SIGNATURE_CELLS
                )
                proxy.signature_fps = float(meta.get("signature_fps", proxy.fps))
                if not (math.isfinite(proxy.signature_fps) and proxy.signature_fps > 0):
                    raise ValueError(
                        f"{Path(path).name}: damaged analysis proxy (signature_fps "
                        f"{meta.get('signature_fps')!r} is not a frame rate)"
                    )
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError, TypeError) as exc:
        raise ValueError(f"{Path(path).name}: damaged analysis proxy ({exc})") from None
    return proxy


def read_signature(path: Path) -> tuple[np.ndarray, float] | None:
    """Only the proxy's motion signature and its rate (a policy sampling other frames than
    the proxy holds decodes the clip, but the source-rate signature is still the one to
    compare); None when the proxy has none or is damaged or of another version."""
    try:
        proxy = read_proxy(path, 1, frames=False)
    except (OSError, ValueError):
        return None
    if proxy is None or proxy.signature is None:
        return None
    return proxy.signature, proxy.signature_fps


def _encode(ext: str, image: np.ndarray, params: list[int]) -> bytes:
    ok, buf = cv2.imencode(ext, image, params)
    if not ok:
        raise ValueError(f"could not encode a {ext} frame for the analysis proxy")
    return buf.tobytes()


def _decode(data: bytes, flags: int) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    if image is None:
        raise ValueError("undecodable image")
    return image


def read_raw_frames(raw: Path, size: tuple[int, int], indices: list[int]) -> dict[int, np.ndarray]:
    """Frames that ffmpeg wrote as raw BGR, one after the other, for ``indices`` in order (the
    file may hold fewer when the clip came out shorter than planned)."""
    w, h = size
    data = raw.read_bytes()
    per = w * h * 3
    count = min(len(indices), len(data) // per)
    return {
        indices[k]: np.frombuffer(data, np.uint8, per, k * per).reshape(h, w, 3)
        for k in range(count)
    }
