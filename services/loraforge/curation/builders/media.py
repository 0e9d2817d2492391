"""Pixels for builders: frames of a clip (or a photo) at its own size, and image files out.

Curation measured on analysis-size frames (long side <= 1280, ingest's proxy); builders write
training images, so they decode the clip itself at the resolution ingest encoded it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from loraforge.curation.errors import UnreadableMedia
from loraforge.curation.frames import PHOTO_SUFFIXES

# PNG, lossless: a derived image is trained on, so it should not add a JPEG generation on top
# of the clip's own compression. Level 3: ~3x faster than 9 for ~10 % more bytes.
PNG_LEVEL = 3


def read_frames(path: Path, indices: Sequence[int]) -> list[tuple[int, np.ndarray]]:
    """(index, BGR uint8) of the wanted frames, in index order; a photo is frame 0. Reads the
    clip once, sequentially (grab every frame, retrieve the wanted ones), like frames.py."""
    path = Path(path)
    wanted = sorted({int(i) for i in indices if int(i) >= 0})
    if path.suffix.lower() in PHOTO_SUFFIXES:
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None:
            raise UnreadableMedia(
                f"{path.name}: cannot decode the photo; re-export it as JPEG or PNG"
            )
        return [(0, img)] if 0 in wanted or not wanted else []
    if not wanted:
        return []
    cap = cv2.VideoCapture(str(path))
    out: list[tuple[int, np.ndarray]] = []
    try:
        if not cap.isOpened():
            raise UnreadableMedia(f"{path.name}: cannot open the clip; re-encode it as H.264 MP4")
        want, idx, last = set(wanted), 0, wanted[-1]
        while idx <= last and cap.grab():
            if idx in want:
                ok, img = cap.retrieve()
                if ok:
                    out.append((idx, img))
            idx += 1
        if not out and idx > 0:
            # past the end (a container that over-reports its frames): the last decoded frame
            cap.set(cv2.CAP_PROP_POS_FRAMES, idx - 1)
            ok, img = cap.read()
            if ok:
                out.append((idx - 1, img))
    finally:
        cap.release()
    if not out:
        raise UnreadableMedia(f"{path.name}: no frame could be decoded; re-encode the clip")
    return out


def write_image(path: Path, image: np.ndarray) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), image, [cv2.IMWRITE_PNG_COMPRESSION, PNG_LEVEL]):
        raise OSError(f"could not write {path}")
    return path
