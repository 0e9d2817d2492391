"""Where small faces may be: MediaPipe's full-range BlazeFace, as proposals for the HOG backend.

dlib's HOG face detector sees faces of ~80 px and more, and the dlib backend runs it on frames
shrunk to 640 px wide (dlib_backend.DETECT_MAX_SIDE). On 16:9 footage that is faces of 22 % of
the frame height and more: the face of a waist-up medium shot (10-18 %), which the policy's
`min_face_height_ratio` (10 %) accepts, was not found, and such clips were rejected as
`no_face`. Scanning the whole frame at a scale where those faces are 80 px costs 4-6x the HOG
pass on every frame. BlazeFace's full-range model
(``data/face_detection_full_range_sparse.tflite``, 192 px input, 7-11 ms a frame here) proposes
faces from ~10 % of a 16:9 frame's height; the backend runs it only on frames where HOG found no
face, and HOG again only on a crop around each proposal, scaled so the face is as large as HOG
sees best. HOG stays the judge: the proposals' own boxes are not used (landmarks and embeddings
are dlib's, as for every other face), and what BlazeFace takes for a face elsewhere (street
textures scored 0.56-0.71 here, a face turned on its side 0.56) is not confirmed. The backend
also asks it for a second opinion on weak HOG faces beside a stronger one
(dlib_backend.WEAK_FACE_SCORE): a print on a shirt is not a second person.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from loraforge.curation.geometry import Box, iou
from loraforge.curation.tflite import interpreter, letterbox, ssd_anchors

_SIDE = 192
MODEL = "face_detection_full_range_sparse.tflite"
# A proposal below this score is not looked at. Measured on the astronaut composited into a
# 1280x720 frame: faces of 10-40 % of the frame height score 0.66-0.95, 8 % 0.33; faceless
# bench frames (coffee, rocket, street pans) gave proposals of up to 0.71, which HOG rejects.
MIN_SCORE = 0.5
# at most this many proposals a frame get a HOG pass (~3 ms each)
MAX_PROPOSALS = 3
# BlazeFace's full-range model is reliable on faces up to about this share of the frame height
# (the astronaut at 10-40 % scored 0.66-0.95); a face filling the frame scores near 0
RELIABLE_MAX_FACE_RATIO = 0.4


@dataclass(frozen=True)
class Proposal:
    box: Box  # frame pixels; BlazeFace's box covers the forehead: ~1.2x the HOG box
    score: float


class _Model(threading.local):
    def __init__(self) -> None:
        self.it = interpreter(MODEL)
        self.inp = self.it.get_input_details()[0]["index"]
        self.boxes, self.scores = (o["index"] for o in self.it.get_output_details())


class FaceProposals:
    """Candidate face boxes in a frame, best first."""

    def __init__(self, min_score: float = MIN_SCORE) -> None:
        self.min_score = min_score
        self._model = _Model()  # fails now, with the fix, if the model or the runtime is missing

    def __call__(
        self,
        rgb: np.ndarray,
        limit: int = MAX_PROPOSALS,
        min_score: float | None = None,
        *,
        frame_scale: float = 1.0,
    ) -> list[Proposal]:
        """Proposals in an RGB image that is ``frame_scale`` times the size of the frame whose
        pixels the boxes are given in: the face backend passes its working copy (a 720p frame
        at half size), since shrinking the full frame to the model's 192 px costs ~3 ms more
        and tells it nothing more."""
        floor = self.min_score if min_score is None else min_score
        m = self._model
        boxed, f, ox, oy = letterbox(rgb, _SIDE)
        f *= frame_scale
        m.it.set_tensor(m.inp, (boxed.astype(np.float32) / 127.5 - 1.0)[None])  # RGB in [-1, 1]
        m.it.invoke()
        raw = m.it.get_tensor(m.boxes)[0]
        logits = m.it.get_tensor(m.scores)[0, :, 0].astype(np.float64)
        scores = 1.0 / (1.0 + np.exp(-np.clip(logits, -100, 100)))
        a = ssd_anchors(_SIDE, (4,), 1)  # one layer: a 48 x 48 grid, one anchor a cell
        out: list[Proposal] = []
        for k in np.argsort(-scores):
            if scores[k] < floor or len(out) == limit:
                break
            # box centre as an offset from its anchor, size in input pixels
            cx = raw[k, 0] / _SIDE + a[k, 0]
            cy = raw[k, 1] / _SIDE + a[k, 1]
            bw, bh = raw[k, 2] / _SIDE, raw[k, 3] / _SIDE
            box = Box(
                float(((cx - bw / 2) * _SIDE - ox) / f),
                float(((cy - bh / 2) * _SIDE - oy) / f),
                float(bw * _SIDE / f),
                float(bh * _SIDE / f),
            )
            if box.w > 0 and box.h > 0 and all(iou(box, p.box) < 0.3 for p in out):
                out.append(Proposal(box, float(scores[k])))
        return out
