"""Filling masked pixels: OpenCV's inpainting offline, LaMa from a provisioned directory.

Both behind one interface (`Inpainter.fill(bgr, mask) -> bgr`); the background builder picks
one by its `inpainter` option. Nothing is downloaded: LaMa's ONNX export must already be in
`<models_dir>/lama/` (LORAFORGE_MODELS__DIR), or the job is refused with what to provision.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from loraforge.runtime.errors import ConfigurationError

# OpenCV's Telea fill works outward from the mask's rim; its cost grows with the masked area
# times the radius, so large frames are filled at FILL_SIDE on the long side and only the
# masked pixels of the full frame are replaced by the upscaled fill (the rest stays untouched).
FILL_SIDE = 640
TELEA_RADIUS = 5
LAMA_DIR = "lama"
LAMA_FILES = ("lama_fp32.onnx", "big-lama.onnx", "lama.onnx")
LAMA_SIDE = 512  # the ONNX export's fixed input size


class Inpainter(Protocol):
    name: str

    def fill(self, bgr: np.ndarray, mask: np.ndarray) -> np.ndarray: ...


def _blend_back(bgr: np.ndarray, mask: np.ndarray, filled_small: np.ndarray) -> np.ndarray:
    h, w = bgr.shape[:2]
    big = cv2.resize(filled_small, (w, h), interpolation=cv2.INTER_CUBIC)
    out = bgr.copy()
    out[mask] = big[mask]
    return out


class OpenCVInpainter:
    """cv2.inpaint (Telea). Fills small and thin regions convincingly; a large hole gets a smooth
    smear of its rim's colours, which the fill-fraction limit keeps out of the dataset."""

    name = "opencv"

    def fill(self, bgr: np.ndarray, mask: np.ndarray) -> np.ndarray:
        if not mask.any():
            return bgr.copy()
        h, w = bgr.shape[:2]
        f = min(1.0, FILL_SIDE / max(h, w))
        m8 = mask.astype(np.uint8) * 255
        if f < 1.0:
            size = (max(1, round(w * f)), max(1, round(h * f)))
            small = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)
            msmall = (cv2.resize(m8, size, interpolation=cv2.INTER_AREA) > 0).astype(np.uint8) * 255
            return _blend_back(
                bgr, mask, cv2.inpaint(small, msmall, TELEA_RADIUS, cv2.INPAINT_TELEA)
            )
        return cv2.inpaint(bgr, m8, TELEA_RADIUS, cv2.INPAINT_TELEA)


class LamaInpainter:
    """LaMa (Suvorov et al. 2021, Apache-2.0) as an ONNX export with 512x512 `image` (RGB 0..1)
    and `mask` (0/1) inputs and an RGB output, run by onnxruntime on the CPU."""

    name = "lama"

    def __init__(self, models_dir: Path | None):
        folder = Path(models_dir) / LAMA_DIR if models_dir else None
        path = next((folder / n for n in LAMA_FILES if folder and (folder / n).is_file()), None)
        if path is None:
            where = str(folder) if folder else "LORAFORGE_MODELS__DIR/lama"
            raise ConfigurationError(
                f"the LaMa inpainter needs its ONNX export in {where} "
                f"(one of {', '.join(LAMA_FILES)}); "
                "provision it there, or use build option inpainter=opencv (the offline default)"
            )
        import onnxruntime as ort

        self._session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        self._inputs = [i.name for i in self._session.get_inputs()]

    def fill(self, bgr: np.ndarray, mask: np.ndarray) -> np.ndarray:
        if not mask.any():
            return bgr.copy()
        rgb = cv2.resize(
            cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB),
            (LAMA_SIDE, LAMA_SIDE),
            interpolation=cv2.INTER_AREA,
        )
        m = cv2.resize(
            mask.astype(np.uint8), (LAMA_SIDE, LAMA_SIDE), interpolation=cv2.INTER_NEAREST
        )
        image = (rgb.astype(np.float32) / 255.0).transpose(2, 0, 1)[None]
        feeds = dict(zip(self._inputs, (image, m.astype(np.float32)[None, None]), strict=False))
        out = self._session.run(None, feeds)[0][0].transpose(1, 2, 0)
        if out.max() <= 1.5:  # exports differ: some return 0..1
            out = out * 255.0
        filled = cv2.cvtColor(np.clip(out, 0, 255).astype(np.uint8), cv2.COLOR_RGB2BGR)
        return _blend_back(bgr, mask, filled)


def make_inpainter(name: str, models_dir: Path | None) -> Inpainter:
    if name == "opencv":
        return OpenCVInpainter()
    if name == "lama":
        return LamaInpainter(models_dir)
    raise ConfigurationError(f"unknown inpainter {name!r}; use opencv or lama")
