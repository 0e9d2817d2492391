"""dlib face backend: HOG detector on grey images (DlibBackend._hog), with BlazeFace proposals
where it finds no face, for faces too small for its working copy (face_proposals.py); 68-point
shape predictor; ResNet-34 embedding (dlib's network and weights, run by ONNX Runtime:
face_resnet.py).

Always available offline: dlib's models ship in the face_recognition_models wheel, BlazeFace in
``data/``. Thresholds (from dlib's own LFW evaluation, 99.38 %): two raw descriptors closer
than 0.6 in euclidean distance are the same person. Raw descriptors have a norm of ~1.42
(measured: 1.40-1.45), and we compare L2-normalised vectors, so the same cut is 0.6 / 1.42 =
0.42 here. Near-copies of one shot (crops, re-encodes) sit below ~0.15 on unit vectors; a
mirrored shot is ~0.14.
"""

from __future__ import annotations

import importlib.util
import pickle
import threading
from functools import lru_cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from loraforge.curation.errors import BackendUnavailable
from loraforge.curation.face_proposals import RELIABLE_MAX_FACE_RATIO, FaceProposals
from loraforge.curation.face_resnet import MODEL_FILE as RESNET_FILE
from loraforge.curation.face_resnet import FaceResNet
from loraforge.curation.face_types import DetectedFace, normalize
from loraforge.curation.geometry import Box, contains_point, iou
from loraforge.curation.threads import measuring_threads

RAW_SAME_PERSON_DISTANCE = 0.6
RAW_DESCRIPTOR_NORM = 1.42
SAME_PERSON_DISTANCE = RAW_SAME_PERSON_DISTANCE / RAW_DESCRIPTOR_NORM
DUPLICATE_DISTANCE = 0.15
# HOG's score a face must pass, on grey images (DlibBackend._hog). Grey scores run lower than
# colour ones for the same face (~0.05 near the threshold, ~7 % at 1.0): on 256 marginal
# portraits (two faces at 4 sizes, stretched 0.85-1.33x, turned, dark, blurred, grainy,
# colour-cast, low contrast) grey found 113 at 0, 123 at -0.05 and 140 at -0.1, against 121
# for colour at dlib's default 0; none of 107 faceless images and frames (skimage's cat, coffee,
# rocket, horse, clock, textures, street footage at 0.5-2.4x) scored above -0.15 in either.
HOG_THRESHOLD = -0.05
# HOG's smallest face is ~80 px; frames whose short side is below this are upsampled once
# (4x the cost) so that faces filling a third of a small frame are still found.
HOG_MIN_FACE = 80
UPSAMPLE_BELOW_SHORT_SIDE = 360
# detection runs on a copy whose long side is at most this (720p -> 640x360): close-ups' faces
# are large, and the detector cost grows with pixel count. Smaller faces (a medium shot's, 10-22 %
# of a 16:9 frame's height) are found on a frame where this pass finds none, from BlazeFace's
# proposals (face_proposals.py): HOG again on a crop of the full-size frame around each.
DETECT_MAX_SIDE = 640
# proposals for faces smaller than this share of the frame height are not looked at (a face the
# policy would reject as too small anyway: its minimum is 10 %)
SMALL_FACE_MIN_RATIO = 0.06
# BlazeFace's box covers the forehead too: ~1.2x the height of HOG's box for the same face
PROPOSAL_TO_HOG = 1 / 1.2
# a face found on a crop is scanned, landmarked and embedded on a view of the full-size frame
# scaled so that the face is this tall (HOG's pyramid finds it at 80-96 px), this many face
# heights on a side (HOG's window and the embedding's aligned chip take the face with margin)
VIEW_FACE_PX = 110
VIEW_SIDE_FACES = 2.5
# HOG also fires, weakly, on face-like prints: the mission patch on the astronaut's suit scored
# 0.04-0.24 beside her own face (1.1-1.6) in waist-up shots, on 6 of 8 frames, which made the
# clip "2 persons" and, as large as her face, the patch its main face. On frames with more than
# one face, a face scoring under WEAK_FACE_SCORE must also be where BlazeFace sees a face with
# at least CONFIRM_SCORE: the patch got nothing above 0.07 there; real weak faces beside a
# strong one got 0.5-0.58 (a second person cut by the frame edge, HOG 0.23) and 0.89 (a crowd's
# face HOG scored 0.02). Real faces in the bench footage score 0.8-1.8 at the working scale; a
# lone weak face (a zoomed, soft close-up: 0.1-0.6) is kept as it is, since BlazeFace's
# full-range model misses faces that fill the frame. (HOG scores here were measured on colour
# input; grey ones run ~7 % lower, and a weak face may now score down to HOG_THRESHOLD.)
WEAK_FACE_SCORE = 0.5
CONFIRM_SCORE = 0.25
# proposals looked at when confirming weak faces (a crowd has more faces than MAX_PROPOSALS)
CONFIRM_PROPOSALS = 12


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
def _models() -> tuple[Any, Any, Any, FaceResNet]:  # dlib and its models (dlib ships no types)
    try:
        import dlib
    except ImportError as e:  # pragma: no cover - depends on the image
        raise BackendUnavailable("dlib is not installed; install loraforge[curation]") from e
    d = models_dir()
    return (
        dlib,
        dlib.get_frontal_face_detector(),
        dlib.shape_predictor(str(d / "shape_predictor_68_face_landmarks.dat")),
        FaceResNet(dlib, d / RESNET_FILE),
    )


# HOG face detectors are not thread-safe, but dlib releases the GIL while one runs, so clips
# measured on parallel threads (pipeline.measure_all) each take a detector of their own from
# this pool: ~1.7x on 2 cores. dlib.get_frontal_face_detector() unpacks its embedded model
# (0.23 s here); a copy of the first one through its own serialisation (pickle) costs 2 ms and
# is the same detector. The shape predictor (~3 ms) stays shared behind a lock; the ResNet
# (FaceResNet: an ONNX Runtime session) takes concurrent calls.
_free_detectors: list[Any] = []  # dlib.fhog_object_detector
_detectors_built = 0
_detectors_lock = threading.Lock()


def _detector_copy() -> Any:  # dlib.fhog_object_detector
    return pickle.loads(_serialized_detector())


@lru_cache(maxsize=1)
def _serialized_detector() -> bytes:
    return pickle.dumps(_models()[1])


def _fill_detector_pool(n: int) -> None:
    global _detectors_built
    first = _models()[1]
    with _detectors_lock:
        while _detectors_built < n:
            _free_detectors.append(first if _detectors_built == 0 else _detector_copy())
            _detectors_built += 1


def _take_detector() -> Any:
    global _detectors_built
    with _detectors_lock:
        if _free_detectors:
            return _free_detectors.pop()
        _detectors_built += 1
    return _detector_copy()  # more callers than cores: one more


def _give_detector(det: Any) -> None:
    with _detectors_lock:
        _free_detectors.append(det)


class DlibBackend:
    name = "dlib"
    same_person_distance = SAME_PERSON_DISTANCE
    duplicate_distance = DUPLICATE_DISTANCE

    def __init__(self) -> None:
        self._dlib, self._detector, self._predictor, self._encoder = _models()
        # one detector per clip the pipeline measures at once
        _fill_detector_pool(measuring_threads())
        # the predictor is not documented as thread-safe
        self._lock = threading.Lock()
        self._proposals = FaceProposals()

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
        rects, scores = self._hog(rgb, upsample)  # on its grey (see _hog)
        boxes = [
            (Box(r.left() / f, r.top() / f, r.width() / f, r.height() / f), float(s))
            for r, s in zip(rects, scores, strict=True)
        ]
        # nothing at the working scale: faces too small for it, where BlazeFace sees one
        if not boxes and HOG_MIN_FACE / f / (1 + upsample) > (
            SMALL_FACE_MIN_RATIO * image_bgr.shape[0]
        ):
            boxes = self._small_faces(image_bgr, rgb, f)
        elif len(boxes) > 1:
            boxes = self._confirm_weak(image_bgr, boxes, rgb, f)
        with self._lock:
            found = []
            for box, s in boxes:
                view, scale, origin = self._view(image_bgr, box, (rgb, f))
                shape = self._predictor(view, self._rect(box, scale, origin))
                pts = np.array([(p.x, p.y) for p in shape.parts()], np.float32)
                found.append((box, s, (pts / scale + origin).astype(np.float32), shape, view))
        # the largest face first; HOG's boxes come in few sizes (its pyramid's levels), so
        # two faces often tie, and then the stronger one is the frame's main face
        found.sort(key=lambda t: (-t[0].area, -t[1], t[0].x, t[0].y))
        out = []
        for i, (box, s, pts, shape, view) in enumerate(found):
            emb = None
            if embed_largest and i == 0:
                emb = normalize(self._encoder.descriptor(view, shape))
            out.append(DetectedFace(box, s, pts, emb))
        return out

    @staticmethod
    def _hog(rgb: np.ndarray, upsample: int) -> tuple[Any, Any]:
        """dlib's HOG face detector on the grey of an RGB image: ``(rects, scores)``.

        Grey, not colour, because that is most likely what the detector was made for: the
        training log in dlib's frontal_face_detector.h lists the steps of dlib's
        fhog_object_detector_ex.cpp
        (2:1 upsampling, mirrored copies, pyramid_down<6>, an 80x80 window, a nuclear-norm
        regulariser, singular values thresholded), which trains on grey images. On a colour
        image fhog takes each pixel's strongest channel gradient instead: 27 % more work
        (17.3 against 13.1 ms on a 640x360 frame here), for scores a little higher, which
        HOG_THRESHOLD makes up for. At that threshold grey found the faces colour found on all
        152 frames of the curation benchmark, and kept and rejected the same clips of the
        example footage (`loraforge run`'s, whose faces are stretched 4:3 and score near 0).
        """
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        detector = _take_detector()
        try:
            rects, scores, _ = detector.run(gray, upsample, HOG_THRESHOLD)
        finally:
            _give_detector(detector)
        return rects, scores

    def _confirm_weak(
        self, image_bgr: np.ndarray, boxes: list[tuple[Box, float]], rgb: np.ndarray, f: float
    ) -> list[tuple[Box, float]]:
        """Of several faces, those scoring under WEAK_FACE_SCORE that BlazeFace does not also
        see (a proposal holding the face's centre) are dropped; the strongest face, and faces
        too large for BlazeFace's judgement, stay. ``rgb``, ``f``: the working copy and its
        scale (BlazeFace looks at it, not at the full-size frame)."""
        h = image_bgr.shape[0]
        strongest = max(range(len(boxes)), key=lambda i: boxes[i][1])
        doubtful = [
            i
            for i, (box, s) in enumerate(boxes)
            if s < WEAK_FACE_SCORE and i != strongest and box.h < RELIABLE_MAX_FACE_RATIO * h
        ]
        if not doubtful:
            return boxes
        seen = self._proposals(rgb, CONFIRM_PROPOSALS, CONFIRM_SCORE, frame_scale=f)
        return [
            (box, s)
            for i, (box, s) in enumerate(boxes)
            if i not in doubtful or any(contains_point(p.box, *box.center) for p in seen)
        ]

    def _small_faces(
        self, image_bgr: np.ndarray, rgb: np.ndarray, f: float
    ) -> list[tuple[Box, float]]:
        """HOG on a crop of the full-size frame around each BlazeFace proposal (found on the
        working copy ``rgb``, ``f`` times the frame), scaled so the face is VIEW_FACE_PX tall:
        the faces it confirms (one per proposal, centred inside it), in frame pixels."""
        h = image_bgr.shape[0]
        out: list[tuple[Box, float]] = []
        for p in self._proposals(rgb, frame_scale=f):
            face_h = p.box.h * PROPOSAL_TO_HOG
            if face_h < SMALL_FACE_MIN_RATIO * h:
                continue
            view, scale, origin = self._crop(image_bgr, p.box.center, face_h)
            if view.size == 0:
                continue
            rects, scores = self._hog(view, 0)
            hits = []
            for r, s in zip(rects, scores, strict=True):
                box = Box(
                    r.left() / scale + float(origin[0]),
                    r.top() / scale + float(origin[1]),
                    r.width() / scale,
                    r.height() / scale,
                )
                if contains_point(p.box, *box.center) and all(iou(box, b) < 0.3 for b, _ in out):
                    hits.append((float(s), box))
            if hits:
                s, box = max(hits, key=lambda t: t[0])
                out.append((box, s))
        return out

    @staticmethod
    def _crop(
        image_bgr: np.ndarray, center: tuple[float, float], face_h: float
    ) -> tuple[np.ndarray, float, np.ndarray]:
        """RGB view of the frame around ``center``, VIEW_SIDE_FACES face heights on a side
        (less at the frame's edges), scaled so a face ``face_h`` tall is VIEW_FACE_PX: the view,
        its scale, and the frame pixel at its top-left corner."""
        h, w = image_bgr.shape[:2]
        half = VIEW_SIDE_FACES * face_h / 2
        x0, y0 = max(0, int(center[0] - half)), max(0, int(center[1] - half))
        x1, y1 = min(w, int(center[0] + half) + 1), min(h, int(center[1] + half) + 1)
        scale = VIEW_FACE_PX / face_h
        cw, ch = max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale))
        if x1 <= x0 or y1 <= y0:
            return np.zeros((0, 0, 3), np.uint8), scale, np.array([x0, y0], np.float32)
        view = cv2.resize(
            image_bgr[y0:y1, x0:x1],
            (cw, ch),
            interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR,
        )
        return cv2.cvtColor(view, cv2.COLOR_BGR2RGB), scale, np.array([x0, y0], np.float32)

    def _view(
        self, image_bgr: np.ndarray, box: Box, work: tuple[np.ndarray, float] | None = None
    ) -> tuple[np.ndarray, float, np.ndarray]:
        """What a face's landmarks and embedding are computed on: the working copy for a face
        HOG sees there, else a crop of the full-size frame (``_crop``) around the face box.
        The same box gives the same view, so ``embed`` repeats ``detect``'s computation."""
        rgb, f = work if work is not None else self._work_image(image_bgr)
        upsample = 1 if min(rgb.shape[:2]) < UPSAMPLE_BELOW_SHORT_SIDE else 0
        # HOG's own boxes are >= ~73 px on the image it scanned (the face inside its 80 px
        # window), so every face of the working-copy pass takes the first branch, as before
        if box.h * f >= 0.85 * HOG_MIN_FACE / (1 + upsample):
            return rgb, f, np.zeros(2, np.float32)
        return self._crop(image_bgr, box.center, box.h)

    def _rect(self, box: Box, scale: float, origin: np.ndarray) -> Any:  # dlib.rectangle
        left = round((box.x - float(origin[0])) * scale)
        top = round((box.y - float(origin[1])) * scale)
        return self._dlib.rectangle(
            left, top, left + round(box.w * scale) - 1, top + round(box.h * scale) - 1
        )

    def embed(self, image_bgr: np.ndarray, face: DetectedFace) -> np.ndarray | None:
        """Embedding of a face that ``detect`` found in this frame (with embed_largest=False).

        Rebuilds dlib's landmark object from the face's landmarks on the view ``detect`` used
        (where they are integers), so the result is exactly what ``detect(..., True)``
        computes; this lets a caller detect on every frame and embed only the frame it picks.
        """
        if face.landmarks is None:
            return None
        view, scale, origin = self._view(image_bgr, face.box)
        dl = self._dlib
        pts = np.rint((np.asarray(face.landmarks, np.float64) - origin) * scale).astype(int)
        shape = dl.full_object_detection(
            self._rect(face.box, scale, origin), [dl.point(int(x), int(y)) for x, y in pts]
        )
        return normalize(self._encoder.descriptor(view, shape))
