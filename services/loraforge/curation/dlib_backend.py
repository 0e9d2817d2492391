"""dlib face backend: HOG detector, 68-point shape predictor, ResNet-34 embedding.

Always available offline: the models ship in the face_recognition_models wheel. Thresholds
(from dlib's own LFW evaluation, 99.38 %): two raw descriptors closer than 0.6 in euclidean
distance are the same person. Raw descriptors have a norm of ~1.42 (measured: 1.40-1.45), and we
compare L2-normalised vectors, so the same cut is 0.6 / 1.42 = 0.42 here. Near-copies of one
shot (crops, re-encodes) sit below ~0.15 on unit vectors; a mirrored shot is ~0.14.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from functools import lru_cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from loraforge.curation.errors import BackendUnavailable
from loraforge.curation.face_types import DetectedFace, normalize
from loraforge.curation.geometry import Box

RAW_SAME_PERSON_DISTANCE = 0.6
RAW_DESCRIPTOR_NORM = 1.42
SAME_PERSON_DISTANCE = RAW_SAME_PERSON_DISTANCE / RAW_DESCRIPTOR_NORM
DUPLICATE_DISTANCE = 0.15
# HOG's smallest face is ~80 px; frames whose short side is below this are upsampled once
# (4x the cost) so that faces filling a third of a small frame are still found.
UPSAMPLE_BELOW_SHORT_SIDE = 360
# detection runs on a copy whose long side is at most this (720p -> 640x360): faces that matter
# for a LoRA are large, and the detector cost grows with pixel count
DETECT_MAX_SIDE = 640


def models_dir() -> Path:
    """face_recognition_models' data folder, without importing its __init__.

    The package's __init__ imports pkg_resources, which recent setuptools no longer ships.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise BackendUnavailable(
            "face_recognition_models is not installed; install loraforge[curation]"
        )
    d = Path(next(iter(spec.submodule_search_locations))) / "models"
    if not (d / "shape_predictor_68_face_landmarks.dat").is_file():
        raise BackendUnavailable(
            f"{d}: dlib model files missing; reinstall face_recognition_models"
        )
    return d


@lru_cache(maxsize=1)
def _models() -> tuple[Any, Any, Any, Any]:  # dlib and its models (dlib ships no types)
    try:
        import dlib
    except ImportError as e:  # pragma: no cover - depends on the image
        raise BackendUnavailable("dlib is not installed; install loraforge[curation]") from e
    d = models_dir()
    return (
        dlib,
        dlib.get_frontal_face_detector(),
        dlib.shape_predictor(str(d / "shape_predictor_68_face_landmarks.dat")),
        dlib.face_recognition_model_v1(str(d / "dlib_face_recognition_resnet_model_v1.dat")),
    )


# HOG face detectors are not thread-safe, but dlib releases the GIL while one runs, so clips
# measured on parallel threads (pipeline.measure_all) each take a detector of their own from
# this pool: ~1.7x on 2 cores. Building one costs ~0.5 s, so the pool is filled once per
# process, next to the other models. The shape predictor (~3 ms) and the ResNet encoder (holds
# the GIL, one call per clip) stay shared behind a lock.
_free_detectors: list[Any] = []  # dlib.fhog_object_detector
_detectors_built = 0
_detectors_lock = threading.Lock()


def _fill_detector_pool(n: int) -> None:
    global _detectors_built
    dlib, first = _models()[:2]
    with _detectors_lock:
        while _detectors_built < n:
            _free_detectors.append(
                first if _detectors_built == 0 else dlib.get_frontal_face_detector()
            )
            _detectors_built += 1


def _take_detector() -> Any:
    global _detectors_built
    with _detectors_lock:
        if _free_detectors:
            return _free_detectors.pop()
        _detectors_built += 1
    return _models()[0].get_frontal_face_detector()  # more callers than cores: build one more


def _give_detector(det: Any) -> None:
    with _detectors_lock:
        _free_detectors.append(det)


class DlibBackend:
    name = "dlib"
    same_person_distance = SAME_PERSON_DISTANCE
    duplicate_distance = DUPLICATE_DISTANCE

    def __init__(self) -> None:
        self._dlib, self._detector, self._predictor, self._encoder = _models()
        # one detector per clip the pipeline measures at once (it runs min(cores, 4) threads)
        _fill_detector_pool(max(1, min(os.cpu_count() or 1, 4)))
        # the predictor and encoder are not documented as thread-safe
        self._lock = threading.Lock()

    @staticmethod
    def _work_image(image_bgr: np.ndarray) -> tuple[np.ndarray, float]:
        """The RGB copy detection and embedding run on, and its scale against the frame."""
        h, w = image_bgr.shape[:2]
        f = min(1.0, DETECT_MAX_SIDE / max(h, w))
        work = (
            image_bgr
            if f == 1.0
            else cv2.resize(image_bgr, (round(w * f), round(h * f)), interpolation=cv2.INTER_AREA)
        )
        return cv2.cvtColor(
            work, cv2.COLOR_BGR2RGB
        ), f  # contiguous; numpy's [..., ::-1] copy is slower

    def detect(self, image_bgr: np.ndarray, embed_largest: bool = True) -> list[DetectedFace]:
        rgb, f = self._work_image(image_bgr)
        upsample = 1 if min(rgb.shape[:2]) < UPSAMPLE_BELOW_SHORT_SIDE else 0
        detector = _take_detector()
        try:
            rects, scores, _ = detector.run(rgb, upsample, 0.0)
        finally:
            _give_detector(detector)
        with self._lock:
            found = []
            for r, s in zip(rects, scores, strict=True):
                shape = self._predictor(rgb, r)
                pts = np.array([(p.x, p.y) for p in shape.parts()], np.float32) / f
                box = Box(r.left() / f, r.top() / f, r.width() / f, r.height() / f)
                found.append((box, float(s), pts, shape))
            found.sort(key=lambda t: (-t[0].area, t[0].x, t[0].y))
            out = []
            for i, (box, s, pts, shape) in enumerate(found):
                emb = None
                if embed_largest and i == 0:
                    emb = normalize(np.asarray(self._encoder.compute_face_descriptor(rgb, shape)))
                out.append(DetectedFace(box, s, pts, emb))
        return out

    def embed(self, image_bgr: np.ndarray, face: DetectedFace) -> np.ndarray | None:
        """Embedding of a face that ``detect`` found in this frame (with embed_largest=False).

        Rebuilds dlib's landmark object from the face's landmarks at the working scale (they
        are integers there), so the result is exactly what ``detect(..., True)`` computes; this
        lets a caller detect on every frame and embed only the frame it picks afterwards.
        """
        if face.landmarks is None:
            return None
        rgb, f = self._work_image(image_bgr)
        dl = self._dlib
        left, top = round(face.box.x * f), round(face.box.y * f)
        rect = dl.rectangle(
            left, top, left + round(face.box.w * f) - 1, top + round(face.box.h * f) - 1
        )
        pts = np.rint(np.asarray(face.landmarks, np.float64) * f).astype(int)
        shape = dl.full_object_detection(rect, [dl.point(int(x), int(y)) for x, y in pts])
        with self._lock:
            return normalize(np.asarray(self._encoder.compute_face_descriptor(rgb, shape)))
