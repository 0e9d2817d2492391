"""Frame sampling: N frames spread evenly over the whole clip, or a photo as one frame.

We decode sequentially (grab every frame, retrieve only the sampled ones) instead of seeking:
with long GOPs a seek decodes from the previous keyframe anyway, so N seeks can cost more than
one pass, and one pass has a predictable cost equal to the decode floor. Next to each sampled
frame we keep a small grey copy of the frame right after it, which is what optical flow needs to
measure camera shake (samples seconds apart would measure scene change instead).

Ingest stores those same frames for each clip it cuts (its analysis proxy, ingest/proxy.py):
`load_media(..., analysis=proxy)` reads them from there and does not decode the clip at all;
without a proxy, or when the policy samples frames the proxy does not hold, the clip is decoded
as above. Either way frames come at analysis size (long side at most ANALYSIS_LONG_SIDE), so a
decision does not depend on which path produced them.

The clip's motion signature (proxy.signature_rows: each frame as an 8x8 grid of mean greys) is
how dedup tells a copy of some footage from another moment filmed the same way. The proxy holds
it at the source's rate, and it is read from there even when the frames are decoded; only a
clip without one gets it from its decoded frames, at the clip's rate, which means retrieving
every frame to the end, not only the sampled ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

from loraforge.curation.errors import UnreadableMedia, UnsupportedMedia
from loraforge.ingest.proxy import (  # the proxy's format and curation's sampling: one definition
    ANALYSIS_LONG_SIDE,
    FLOW_WIDTH,  # flow on 160 px wide frames: enough to tell shake from a pan, and cheap
    SIGNATURE_SIDE,
    analysis_size,
    read_proxy,
    read_signature,
    sample_indices,
    signature_rows,
    small_gray,
)

PHOTO_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"})
VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v"})
__all__ = [
    "FLOW_WIDTH",
    "Frame",
    "SampledMedia",
    "load_media",
    "load_photo",
    "load_proxy",
    "media_kind",
    "sample_indices",
    "sample_video",
    "small_gray",
]


@dataclass(frozen=True)
class Frame:
    index: int  # frame number in the clip (0 for a photo)
    time_s: float
    image: np.ndarray  # BGR uint8; videos at analysis size (long side <= ANALYSIS_LONG_SIDE)
    next_small_gray: np.ndarray | None = None  # the following frame, FLOW_WIDTH wide


@dataclass(frozen=True)
class SampledMedia:
    path: Path
    kind: str  # "video" | "photo"
    width: int  # the clip's or photo's own size (frames of a video may be smaller)
    height: int
    fps: float
    duration_s: float
    frame_count: int
    frames: list[Frame] = field(default_factory=list)
    # every frame of a video as proxy.signature_rows (None: a photo, or a proxy made before
    # proxies held it)
    signature: np.ndarray | None = None
    signature_fps: float = 0.0  # the signature's rate (the source's from a proxy; 0: fps)


def media_kind(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in VIDEO_SUFFIXES:
        return "video"
    if suffix in PHOTO_SUFFIXES:
        return "photo"
    raise UnsupportedMedia(
        f"{path.name}: unsupported file type {suffix or '(none)'}; give a video "
        f"({', '.join(sorted(VIDEO_SUFFIXES))}) or a photo ({', '.join(sorted(PHOTO_SUFFIXES))})"
    )


def load_photo(path: Path) -> SampledMedia:
    path = Path(path)
    if not path.is_file():
        raise UnreadableMedia(f"{path}: photo not found; check the path")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise UnreadableMedia(f"{path.name}: cannot decode the photo; re-export it as JPEG or PNG")
    h, w = image.shape[:2]
    return SampledMedia(path, "photo", w, h, 0.0, 0.0, 1, [Frame(0, 0.0, image)])


def sample_video(path: Path, n: int = 8, *, signature: bool = True) -> SampledMedia:
    """The n sampled frames (and the frame after each) of a clip, decoded; with ``signature``
    also its motion signature, which means retrieving every frame to the end, not only the
    sampled ones (a clip whose proxy holds the signature does without)."""
    path = Path(path)
    if not path.is_file():
        raise UnreadableMedia(f"{path}: clip not found; check the path")
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise UnreadableMedia(f"{path.name}: cannot open the clip; re-encode it as H.264 MP4")
        fps = float(cap.get(cv2.CAP_PROP_FPS)) or 0.0
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        width = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        height = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        if count <= 0:
            raise UnreadableMedia(f"{path.name}: the clip reports no frames; re-encode it")
        wanted = set(sample_indices(count, n))
        frames: list[Frame] = []
        rows: list[np.ndarray] = []
        pending: tuple[int, np.ndarray] | None = None
        idx = 0
        last_wanted = max(wanted) + 1
        side = (SIGNATURE_SIDE, SIGNATURE_SIDE)
        while (signature or idx <= last_wanted) and cap.grab():
            img = None
            if signature or pending is not None or idx in wanted:
                ok, got = cap.retrieve()
                img = got if ok else None
            if signature:
                if img is None:
                    break
                gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
                rows.append(cv2.resize(gray, side, interpolation=cv2.INTER_AREA))
            if pending is not None:
                nxt = small_gray(img) if img is not None else None
                frames.append(Frame(pending[0], pending[0] / fps if fps else 0.0, pending[1], nxt))
                pending = None
            if idx in wanted and img is not None:
                pending = (idx, _to_analysis_size(img))
            idx += 1
        if pending is not None:
            frames.append(Frame(pending[0], pending[0] / fps if fps else 0.0, pending[1], None))
    finally:
        cap.release()
    if not frames:
        raise UnreadableMedia(f"{path.name}: no frame could be decoded; re-encode the clip")
    # the container's frame count can be off by a few; trust what was actually decoded (all of
    # it with the signature; without, the count holds once decoding got past the samples)
    count = max(idx if signature or idx <= last_wanted else count, 1)
    duration = count / fps if fps else 0.0
    rows_ = signature_rows(np.stack(rows)) if rows else None
    return SampledMedia(path, "video", width, height, fps, duration, count, frames, rows_)


def _to_analysis_size(image: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    size = analysis_size(w, h, ANALYSIS_LONG_SIDE)
    return image if size == (w, h) else cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def load_proxy(analysis: Path, clip_path: Path, n: int = 8) -> SampledMedia | None:
    """The sampled frames from ingest's analysis proxy; None when it does not hold the n frames
    the policy samples (the caller decodes the clip instead). Raises UnreadableMedia when the
    proxy is damaged."""
    try:
        proxy = read_proxy(Path(analysis), n)
    except (OSError, ValueError) as exc:
        raise UnreadableMedia(f"{Path(clip_path).name}: {exc}; ingest the source again") from None
    if proxy is None:
        return None
    fps = proxy.fps
    frames = [
        Frame(i, i / fps if fps else 0.0, proxy.frames[i], proxy.next_small_gray.get(i))
        for i in sorted(proxy.frames)
    ]
    return SampledMedia(
        Path(clip_path),
        "video",
        proxy.width,
        proxy.height,
        fps,
        proxy.frame_count / fps if fps else 0.0,
        proxy.frame_count,
        frames,
        proxy.signature,
        proxy.signature_fps,
    )


def load_media(path: Path, n: int = 8, analysis: Path | None = None) -> SampledMedia:
    """A clip's sampled frames (from its analysis proxy when given and sufficient) or a photo."""
    path = Path(path)
    if analysis is not None:
        media = load_proxy(analysis, path, n)
        if media is not None:
            return media
    if media_kind(path) != "video":
        return load_photo(path)
    stored = read_signature(Path(analysis)) if analysis is not None else None
    if stored is None:
        return sample_video(path, n)
    # the source-rate signature ingest stored beats the clip-rate one decoded: a 16 fps clip
    # drops source frames in a pattern that depends on where it was cut
    media = sample_video(path, n, signature=False)
    return replace(media, signature=stored[0], signature_fps=stored[1])
