"""Frame sampling: N frames spread evenly over the whole clip, or a photo as one frame.

We decode sequentially (grab every frame, retrieve only the sampled ones) instead of seeking:
with long GOPs a seek decodes from the previous keyframe anyway, so N seeks can cost more than
one pass, and one pass has a predictable cost equal to the decode floor. Next to each sampled
frame we keep a small grey copy of the frame right after it, which is what optical flow needs to
measure camera shake (samples seconds apart would measure scene change instead).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from loraforge.curation.errors import UnreadableMedia, UnsupportedMedia

PHOTO_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"})
VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v"})
FLOW_WIDTH = 160  # flow on 160 px wide frames: enough to tell shake from a pan, and cheap


@dataclass(frozen=True)
class Frame:
    index: int  # frame number in the clip (0 for a photo)
    time_s: float
    image: np.ndarray  # BGR uint8, full resolution
    next_small_gray: np.ndarray | None = None  # the following frame, FLOW_WIDTH wide


@dataclass(frozen=True)
class SampledMedia:
    path: Path
    kind: str  # "video" | "photo"
    width: int
    height: int
    fps: float
    duration_s: float
    frame_count: int
    frames: list[Frame] = field(default_factory=list)


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


def sample_indices(frame_count: int, n: int) -> list[int]:
    """Centres of n equal slices of the clip, so the first and last moments are covered too."""
    if frame_count <= 0 or n <= 0:
        return []
    n = min(n, frame_count)
    return sorted({min(frame_count - 1, int((i + 0.5) * frame_count / n)) for i in range(n)})


def small_gray(image: np.ndarray, width: int = FLOW_WIDTH) -> np.ndarray:
    h, w = image.shape[:2]
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
    return cv2.resize(gray, (width, max(1, round(h * width / w))), interpolation=cv2.INTER_AREA)


def load_photo(path: Path) -> SampledMedia:
    path = Path(path)
    if not path.is_file():
        raise UnreadableMedia(f"{path}: photo not found; check the path")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise UnreadableMedia(f"{path.name}: cannot decode the photo; re-export it as JPEG or PNG")
    h, w = image.shape[:2]
    return SampledMedia(path, "photo", w, h, 0.0, 0.0, 1, [Frame(0, 0.0, image)])


def sample_video(path: Path, n: int = 8) -> SampledMedia:
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
        pending: tuple[int, np.ndarray] | None = None
        idx = 0
        last_wanted = max(wanted) + 1
        while idx <= last_wanted and cap.grab():
            if pending is not None:
                ok, img = cap.retrieve()
                nxt = small_gray(img) if ok else None
                frames.append(Frame(pending[0], pending[0] / fps if fps else 0.0, pending[1], nxt))
                pending = None
            if idx in wanted:
                ok, img = cap.retrieve()
                if ok:
                    pending = (idx, img)
            idx += 1
        if pending is not None:
            frames.append(Frame(pending[0], pending[0] / fps if fps else 0.0, pending[1], None))
    finally:
        cap.release()
    if not frames:
        raise UnreadableMedia(f"{path.name}: no frame could be decoded; re-encode the clip")
    # the container's frame count can be off by a few; trust what was actually decoded
    count = max(count if idx > last_wanted else idx, 1)
    duration = count / fps if fps else 0.0
    return SampledMedia(path, "video", width, height, fps, duration, count, frames)


def load_media(path: Path, n: int = 8) -> SampledMedia:
    path = Path(path)
    return sample_video(path, n) if media_kind(path) == "video" else load_photo(path)
