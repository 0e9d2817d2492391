"""dlib face backend: HOG detector, 68-point shape predictor, ResNet-34 embedding.

Always available offline: the models ship in the face_recognition_models wheel. Thresholds
(from dlib's own LFW evaluation, 99.38 %): two raw descriptors closer than 0.6 in euclidean
distance are the same person. Raw descriptors have a norm of ~1.42 (measured: 1.40-1.45), and we
compare L2-normalised vectors, so the same cut is 0.6 / 1.42 = 0.42 here. Near-copies of one
shot (crops, re-encodes) sit below ~0.15 on unit vectors; a mirrored shot is ~0.14.
"""

from __future__ import annotations

import importlib.util
import threading
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from loraforge.curation.errors import BackendUnavailable
from loraforge.curation.faces import DetectedFace, normalize
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
        raise BackendUnavailable(f"{d}: dlib model files missing; reinstall face_recognition_models")
    return d


@lru_cache(maxsize=1)
def _models():
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


class DlibBackend:
    name = "dlib"
    same_person_distance = SAME_PERSON_DISTANCE
    duplicate_distance = DUPLICATE_DISTANCE

    def __init__(self) -> None:
        self._dlib, self._detector, self._predictor, self._encoder = _models()
        # dlib objects are not documented as thread-safe; callers may use a thread pool
        self._lock = threading.Lock()

    def detect(self, image_bgr: np.ndarray, embed_largest: bool = True) -> list[DetectedFace]:
        h, w = image_bgr.shape[:2]
        f = min(1.0, DETECT_MAX_SIDE / max(h, w))
        work = image_bgr if f == 1.0 else cv2.resize(
            image_bgr, (round(w * f), round(h * f)), interpolation=cv2.INTER_AREA
        )
        rgb = np.ascontiguousarray(work[:, :, ::-1])
        upsample = 1 if min(work.shape[:2]) < UPSAMPLE_BELOW_SHORT_SIDE else 0
        with self._lock:
            rects, scores, _ = self._detector.run(rgb, upsample, 0.0)
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
