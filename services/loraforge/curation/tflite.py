"""The TFLite models curation runs (MediaPipe's person, segmentation, pose and face detectors)
and the square letterbox their inputs take.

The .tflite files come from the mediapipe 0.10.14 wheel (Apache-2.0,
``data/MEDIAPIPE_LICENSE.txt``) and run in ``ai-edge-litert``, the TFLite runtime; mediapipe
itself cannot be a dependency (it pins protobuf<5). An interpreter is not thread-safe: each
caller keeps one per thread.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from loraforge.curation.errors import BackendUnavailable


def model_file(name: str) -> Path:
    p = Path(str(resources.files("loraforge.curation").joinpath(f"data/{name}")))
    if not p.is_file():
        raise BackendUnavailable(f"{p} is missing; reinstall loraforge[curation]")
    return p


def interpreter(name: str) -> Any:  # ai_edge_litert's Interpreter (ships no types)
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as e:  # pragma: no cover - depends on the install
        raise BackendUnavailable(
            "ai-edge-litert is not installed; install loraforge[curation]"
        ) from e
    it = Interpreter(model_path=str(model_file(name)), num_threads=1)
    it.allocate_tensors()
    return it


def letterbox_place(h: int, w: int, side: int) -> tuple[float, int, int, int, int]:
    """Where an h x w image goes in a side x side letterbox: scale, offsets, size."""
    f = side / max(h, w)
    nw, nh = max(1, round(w * f)), max(1, round(h * f))
    return f, (side - nw) // 2, (side - nh) // 2, nw, nh


def letterbox(image: np.ndarray, side: int) -> tuple[np.ndarray, float, int, int]:
    f, ox, oy, nw, nh = letterbox_place(image.shape[0], image.shape[1], side)
    out = np.zeros((side, side, 3), np.uint8)
    out[oy : oy + nh, ox : ox + nw] = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA)
    return out, f, ox, oy


@lru_cache(maxsize=4)
def ssd_anchors(side: int, strides: tuple[int, ...], per_layer: int) -> np.ndarray:
    """Anchor centres (x, y in [0, 1]) of MediaPipe's SSD detectors (SsdAnchorsCalculator with
    fixed-size anchors): per layer, ``per_layer`` anchors on each cell of a side/stride grid;
    consecutive layers of the same stride share one grid, their anchors side by side."""
    out = []
    i = 0
    while i < len(strides):
        j = i
        while j < len(strides) and strides[j] == strides[i]:
            j += 1
        fm = int(np.ceil(side / strides[i]))
        ys, xs = np.mgrid[0:fm, 0:fm]
        centres = np.stack([(xs.ravel() + 0.5) / fm, (ys.ravel() + 0.5) / fm], axis=1)
        out.append(np.repeat(centres, per_layer * (j - i), axis=0))
        i = j
    return np.concatenate(out).astype(np.float32)
