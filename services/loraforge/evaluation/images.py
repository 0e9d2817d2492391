"""One image convention for every scorer: BGR uint8 numpy arrays, as cv2 and the curation face
backends use. Renders arrive from diffusers as RGB PIL images and from disk as files, so this is
the single place where they are converted (getting the channel order wrong silently lowers face
embedding quality instead of failing)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Union

import cv2
import numpy as np

from loraforge.evaluation.errors import InvalidRenders

ImageLike = Union[np.ndarray, "Any", str, Path]  # ndarray is BGR; PIL images are RGB


def to_bgr(img: ImageLike) -> np.ndarray:
    """BGR uint8 (H, W, 3). numpy input is taken as BGR already; PIL input as RGB(A)/L."""
    if isinstance(img, (str, Path)):
        out = cv2.imread(str(img), cv2.IMREAD_COLOR)
        if out is None:
            raise InvalidRenders(f"{img}: cannot read this image; give a PNG or JPEG file")
        return out
    if isinstance(img, np.ndarray):
        a = img
        if a.dtype != np.uint8:
            # float renders in [0, 1] (diffusers output_type="np") are scaled, not truncated
            a = np.clip(a * 255.0 if a.max() <= 1.0 else a, 0, 255).astype(np.uint8)
        if a.ndim == 2:
            return cv2.cvtColor(a, cv2.COLOR_GRAY2BGR)
        if a.ndim == 3 and a.shape[2] == 4:
            return np.ascontiguousarray(a[:, :, :3])
        if a.ndim == 3 and a.shape[2] == 3:
            return np.ascontiguousarray(a)
        raise InvalidRenders(f"image array of shape {a.shape}: expected (H, W, 3) BGR")
    if hasattr(img, "convert"):  # PIL.Image without importing PIL here
        rgb = np.asarray(img.convert("RGB"))
        return np.ascontiguousarray(rgb[:, :, ::-1])
    raise InvalidRenders(
        f"unsupported image type {type(img).__name__}; give BGR arrays, PIL images or file paths"
    )


def to_bgr_list(images: Sequence[ImageLike], what: str = "renders") -> list[np.ndarray]:
    if images is None or len(images) == 0:
        raise InvalidRenders(f"no {what} given; render at least one preview per checkpoint")
    return [to_bgr(i) for i in images]


def to_pil_rgb(img: np.ndarray) -> Any:
    from PIL import Image

    return Image.fromarray(np.ascontiguousarray(img[:, :, ::-1]))
