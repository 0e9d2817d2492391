"""Expression signals from 68 landmarks: smile, open mouth / talking, closed eyes.

Ratios are scale-free, so they work at any face size. Cut-offs were set on dlib landmarks:
a neutral mouth spans ~0.36-0.42 of the jaw width and a broad smile >= 0.45; inner-lip aspect
ratio is ~0 closed and > 0.3 clearly open; eye aspect ratio (Soukupova & Cech 2016) is ~0.25-0.35
open and < 0.2 closed. Talking shows as the mouth opening and closing between frames, i.e. the
spread of the mouth ratio over the clip rather than its mean.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SMILE_WIDTH_RATIO = 0.45
SMILE_CORNER_LIFT = 0.04
MOUTH_OPEN_MAR = 0.30
EYES_CLOSED_EAR = 0.20
TALKING_MAR_STD = 0.08


@dataclass(frozen=True)
class FaceExpression:
    mouth_width_ratio: float  # mouth corner distance / jaw width
    corner_lift: float  # corners above the lip centre, in face heights (> 0 = up)
    mouth_aspect_ratio: float
    eye_aspect_ratio: float

    @property
    def smiling(self) -> bool:
        return self.mouth_width_ratio >= SMILE_WIDTH_RATIO or self.corner_lift >= SMILE_CORNER_LIFT

    @property
    def mouth_open(self) -> bool:
        return self.mouth_aspect_ratio >= MOUTH_OPEN_MAR

    @property
    def eyes_closed(self) -> bool:
        return self.eye_aspect_ratio < EYES_CLOSED_EAR


def _d(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b))


def _ear(eye: np.ndarray) -> float:
    return (_d(eye[1], eye[5]) + _d(eye[2], eye[4])) / (2.0 * max(_d(eye[0], eye[3]), 1e-6))


def measure_expression(landmarks: np.ndarray) -> FaceExpression:
    p = np.asarray(landmarks, np.float64)
    jaw = max(_d(p[0], p[16]), 1e-6)
    face_h = max(_d(p[27], p[8]), 1e-6)
    mouth_w = _d(p[48], p[54])
    lip_centre_y = (p[62][1] + p[66][1]) / 2.0
    corners_y = (p[48][1] + p[54][1]) / 2.0
    inner_w = max(_d(p[60], p[64]), 1e-6)
    mar = (_d(p[61], p[67]) + _d(p[62], p[66]) + _d(p[63], p[65])) / (3.0 * inner_w)
    ear = (_ear(p[36:42]) + _ear(p[42:48])) / 2.0
    return FaceExpression(mouth_w / jaw, (lip_centre_y - corners_y) / face_h, mar, ear)


def expression_label(smiling_frac: float, open_frac: float, talking: bool, closed_frac: float) -> str:
    """One label per clip for the report and for spreading the selection."""
    if closed_frac > 0.5:
        return "eyes_closed"
    if talking:
        return "talking"
    if smiling_frac >= 0.5:
        return "smiling"
    if open_frac >= 0.5:
        return "mouth_open"
    return "neutral"
