"""Text in the picture: PP-OCR text detection, and recognition to confirm what it found.

The models are PaddleOCR's PP-OCRv4 detector (DB, ~4.7 MB) and recogniser (SVTR-LCNet with
CTC, its character table inside the ONNX file), shipped inside the ``rapidocr-onnxruntime``
wheel and run with onnxruntime on the CPU: nothing is downloaded. We use rapidocr's own
pre/post-processing classes with the paths of those files, not its ``RapidOCR`` pipeline
(whose angle classifier and full-size resize we do not need).

Cost, measured on the 2-core development machine (best of 5, one thread): the detector takes
~27 ms for a 416x234 frame, ~45 ms at 512x288, ~85 ms at 640x360 and ~450 ms when handed a
1280x720 frame (its post-processing works at the input size), so frames are shrunk to
OCR_WIDTH first and only a few frames per clip are read (``overlays.TEXT_FRAMES``: two, a
third when text is seen). Recognition (~15-40 ms a line) runs
only on boxes that would reject a clip or be reported, to confirm that they hold characters.
One intra-op thread: curation runs several clips in parallel threads, and ONNX Runtime's own
pool on top of that only oversubscribes the cores.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

import cv2
import numpy as np

from loraforge.curation.errors import BackendUnavailable

# 720p subtitles (~36 px high, 5 % of the height) become ~12 px: inside the detector's range
# (it read every test subtitle and sign at 384-512 px); the cost grows with the pixel count,
# ~27 ms a frame here against ~45 ms at 512 px
OCR_WIDTH = 416
DET_MODEL = "ch_PP-OCRv4_det_infer.onnx"
REC_MODEL = "ch_PP-OCRv4_rec_infer.onnx"
# A line counts as text when the recogniser reads at least MIN_CHARS letters or digits with a
# mean confidence of MIN_REC_SCORE. Set on real photos: on Grace Hopper's sleeve stripes the
# detector finds a box that reads '★★' (0.58), on the coffee cup one that reads 'O' (0.50);
# a putText subtitle over the astronaut reads back exactly at 0.98.
MIN_CHARS = 2
MIN_REC_SCORE = 0.6


@dataclass(frozen=True)
class TextLine:
    box: tuple[float, float, float, float]  # x, y, w, h as fractions of the image given


def _model_path(name: str) -> str:
    try:
        root = resources.files("rapidocr_onnxruntime") / "models"
    except ModuleNotFoundError as e:  # pragma: no cover - the curation extra installs it
        raise BackendUnavailable(
            "text detection needs the rapidocr-onnxruntime package (PP-OCR models); "
            "install loraforge[curation]"
        ) from e
    path = root / name
    if not path.is_file():
        raise BackendUnavailable(
            f"the OCR model {name} is missing from rapidocr_onnxruntime; reinstall it "
            "(pip install --force-reinstall rapidocr-onnxruntime==1.4.4)"
        )
    return str(path)


class _TablePreProcess:
    """rapidocr's detector preprocessing (``DetPreProcess``: resize to multiples of 32, then
    ``(x * scale - mean) / std`` per channel in float64, to CHW float32) with the normalisation
    read from a table: the same float operations done once on each of the 256 levels of each
    channel instead of on every pixel (its float64 passes cost ~2 ms a frame)."""

    def __init__(self, inner: Any) -> None:  # rapidocr's DetPreProcess (untyped)
        self._inner = inner
        levels = np.arange(256, dtype=np.uint8).astype("float32") * inner.scale
        self._table = ((levels[:, None] - inner.mean) / inner.std).astype(np.float32)

    def __call__(self, img: np.ndarray) -> np.ndarray | None:
        resized = self._inner.resize(img)
        if resized is None:
            return None
        table = self._table
        if resized.dtype != np.uint8 or resized.ndim != 3 or resized.shape[2] != table.shape[1]:
            out: np.ndarray = self._inner.permute(self._inner.normalize(resized))
            return np.expand_dims(out, axis=0).astype(np.float32)
        return np.stack([table[:, c][resized[..., c]] for c in range(table.shape[1])])[None]


class TextReader:
    """PP-OCR detection + recognition, one ONNX Runtime session each (thread-safe runs)."""

    def __init__(self, threads: int = 1) -> None:
        try:
            from rapidocr_onnxruntime.ch_ppocr_det import TextDetector
            from rapidocr_onnxruntime.ch_ppocr_rec import TextRecognizer
        except ImportError as e:
            raise BackendUnavailable(
                f"text detection needs rapidocr-onnxruntime and onnxruntime ({e}); "
                "install loraforge[curation]"
            ) from e
        common = {"intra_op_num_threads": threads, "inter_op_num_threads": 1, "use_cuda": False}
        self._det = TextDetector(
            {
                **common,
                "model_path": _model_path(DET_MODEL),
                "limit_side_len": OCR_WIDTH,
                "limit_type": "max",
                "mean": [0.5, 0.5, 0.5],
                "std": [0.5, 0.5, 0.5],
                # PaddleOCR's defaults for this model
                "thresh": 0.3,
                "box_thresh": 0.5,
                "max_candidates": 1000,
                "unclip_ratio": 1.6,
                "use_dilation": True,
                "score_mode": "fast",
            }
        )
        base = self._det.get_preprocess
        self._det.get_preprocess = lambda max_wh: _TablePreProcess(base(max_wh))
        self._rec = TextRecognizer(
            {
                **common,
                "model_path": _model_path(REC_MODEL),
                "rec_img_shape": [3, 48, 320],
                "rec_batch_num": 6,
            }
        )

    @staticmethod
    def _ocr_scale(image: np.ndarray) -> np.ndarray:
        h, w = image.shape[:2]
        if w <= OCR_WIDTH:
            return image
        return cv2.resize(
            image, (OCR_WIDTH, max(1, round(h * OCR_WIDTH / w))), interpolation=cv2.INTER_AREA
        )

    def detect(self, image_bgr: np.ndarray) -> list[TextLine]:
        """Text lines in the image, as axis-aligned boxes in fractions of its size."""
        img = self._ocr_scale(image_bgr)
        h, w = img.shape[:2]
        quads, _ = self._det(img)
        out: list[TextLine] = []
        if quads is None:
            return out
        for q in quads:
            q = np.asarray(q, np.float32)
            x0, y0 = np.clip(q.min(0), 0, [w, h])
            x1, y1 = np.clip(q.max(0), 0, [w, h])
            if x1 - x0 < 2 or y1 - y0 < 2:
                continue
            out.append(
                TextLine((float(x0 / w), float(y0 / h), float((x1 - x0) / w), float((y1 - y0) / h)))
            )
        return out

    def read(
        self, image_bgr: np.ndarray, boxes: list[tuple[float, float, float, float]]
    ) -> list[tuple[str, float]]:
        """Recognise each box (fractions of the image); a little margin around each line."""
        h, w = image_bgr.shape[:2]
        crops = []
        for x, y, bw, bh in boxes:
            m = 0.15 * bh * h
            x0, y0 = int(max(0, x * w - m)), int(max(0, y * h - m))
            x1, y1 = int(min(w, (x + bw) * w + m)), int(min(h, (y + bh) * h + m))
            crops.append(image_bgr[y0 : max(y1, y0 + 1), x0 : max(x1, x0 + 1)])
        if not crops:
            return []
        res, _ = self._rec(crops)
        return [(str(t), float(s)) for t, s in res]


def is_text(text: str, score: float) -> bool:
    """Whether a recognised line holds characters (see MIN_CHARS / MIN_REC_SCORE)."""
    return score >= MIN_REC_SCORE and sum(ch.isalnum() for ch in text) >= MIN_CHARS


@lru_cache(maxsize=1)
def default_reader() -> TextReader:
    """One reader per process: the sessions are read-only model state, like the face models,
    and loading them (~0.3 s) for every clip would cost more than reading the clip."""
    return TextReader()
