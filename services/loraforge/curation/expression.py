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


def expression_label(
    smiling_frac: float, open_frac: float, talking: bool, closed_frac: float
) -> str:
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


# --- expression classes for an expression LoRA (builders/expression.py) -----------------------
#
# Six classes from seed 003 and the users' documents: neutral, smile, laughing, talking, serious,
# surprised. Mouth and eye ratios are the ones above; brows are measured against the
# inter-ocular distance (eye centre to eye centre), which an expression does not change, where
# the face height above grows when the jaw drops. Brow height varies between people (measured:
# 0.27 IOD on the smiling astronaut, whose cheeks push the eyes narrow, 0.35 on Grace Hopper),
# so a raise or a frown is judged against the person's own median over the dataset when one is
# given (``baseline``), against fixed values otherwise. What is robust: smile (mouth width and
# corner lift), laughing (a smile with the mouth open), talking (the mouth opening and closing
# across a clip's frames). What is a heuristic: surprised (brows raised plus an open mouth),
# serious (brows lowered or drawn together, or lips pressed level) -- landmarks see geometry,
# not intent, and a frown of concentration reads as serious too.

EXPRESSION_CLASSES = ("neutral", "smile", "laughing", "talking", "serious", "surprised")
# surprised: brows at least this far above the person's baseline, in IOD (a raise lifts them
# ~0.08-0.15 IOD); without a baseline, above this absolute height (above the 0.27-0.38 neutral
# range)
BROW_RAISE_IOD = 0.07
BROW_RAISED_ABS = 0.45
# serious: brows this far below the baseline, or the inner brow ends drawn together by this much
# (a frown lowers the brows ~0.05-0.1 IOD and pulls their inner ends ~0.1 IOD closer)
BROW_LOWER_IOD = 0.04
BROW_FURROW_IOD = 0.05
# corner lift here is measured from the upper inner lip (62), which stays put when the jaw
# drops (the lip centre used above moves down with it, so an open mouth read as a smile), in
# IOD. A smile lifts the corners (the astronaut, smiling: 0.06-0.08, her mouth 0.48 of the jaw,
# Grace Hopper's composed mouth 0.0-0.01); 0.08 or a wide mouth is a smile; down-turned
# (<= -0.02) reads as serious
SMILE_LIFT_IOD = 0.08
SERIOUS_MAX_LIFT_IOD = -0.02
# a surprised mouth drops open; laughing is a smile with the mouth open this far (teeth apart)
SURPRISE_MIN_MAR = 0.25
LAUGH_MIN_MAR = 0.25


@dataclass(frozen=True)
class FaceShape:
    """The expression measures of one face, scale-free; written as evidence."""

    mouth_width_ratio: float
    corner_lift: float  # mouth corners above the upper inner lip, IOD (> 0 = up)
    mouth_aspect_ratio: float
    eye_aspect_ratio: float
    brow_height: float  # brow centre above the eye centre, inter-ocular distances
    inner_brow_gap: float  # inner brow ends apart, inter-ocular distances

    def as_dict(self) -> dict[str, float]:
        return {k: round(float(getattr(self, k)), 4) for k in self.__dataclass_fields__}


def measure_face_shape(landmarks: np.ndarray) -> FaceShape:
    p = np.asarray(landmarks, np.float64)
    e = measure_expression(p)
    le, re = p[36:42].mean(0), p[42:48].mean(0)
    iod = max(_d(le, re), 1e-6)
    brow = (_d(p[17:22].mean(0), le) + _d(p[22:27].mean(0), re)) / (2.0 * iod)
    lift = (p[62][1] - (p[48][1] + p[54][1]) / 2.0) / iod
    return FaceShape(
        e.mouth_width_ratio,
        lift,
        e.mouth_aspect_ratio,
        e.eye_aspect_ratio,
        brow,
        _d(p[21], p[22]) / iod,
    )


@dataclass(frozen=True)
class ShapeBaseline:
    """The person's own resting values: medians over every face of the dataset."""

    brow_height: float
    inner_brow_gap: float


def baseline_of(shapes: list[FaceShape]) -> ShapeBaseline | None:
    if len(shapes) < 3:  # a median of fewer says little about a resting face
        return None
    return ShapeBaseline(
        float(np.median([s.brow_height for s in shapes])),
        float(np.median([s.inner_brow_gap for s in shapes])),
    )


def classify_face(s: FaceShape, baseline: ShapeBaseline | None = None) -> tuple[str, str]:
    """(class, why) of one face; never "talking", which needs several frames (classify_clip)."""
    smiling = s.mouth_width_ratio >= SMILE_WIDTH_RATIO or s.corner_lift >= SMILE_LIFT_IOD
    raised = (
        s.brow_height - baseline.brow_height >= BROW_RAISE_IOD
        if baseline
        else s.brow_height >= BROW_RAISED_ABS
    )
    if raised and s.mouth_aspect_ratio >= SURPRISE_MIN_MAR and not smiling:
        return "surprised", (
            f"brows raised ({s.brow_height:.2f} IOD), mouth open "
            f"(aspect {s.mouth_aspect_ratio:.2f} >= {SURPRISE_MIN_MAR})"
        )
    if smiling and s.mouth_aspect_ratio >= LAUGH_MIN_MAR:
        return "laughing", (
            f"smile (mouth {s.mouth_width_ratio:.2f} of the jaw) with the mouth open "
            f"(aspect {s.mouth_aspect_ratio:.2f} >= {LAUGH_MIN_MAR})"
        )
    if smiling:
        return "smile", (
            f"mouth {s.mouth_width_ratio:.2f} of the jaw (>= {SMILE_WIDTH_RATIO}) or corners "
            f"lifted {s.corner_lift:.3f} IOD (>= {SMILE_LIFT_IOD})"
        )
    lowered = baseline is not None and (
        baseline.brow_height - s.brow_height >= BROW_LOWER_IOD
        or baseline.inner_brow_gap - s.inner_brow_gap >= BROW_FURROW_IOD
    )
    if s.mouth_aspect_ratio < MOUTH_OPEN_MAR and (lowered or s.corner_lift <= SERIOUS_MAX_LIFT_IOD):
        why = (
            "brows lowered or drawn together"
            if lowered
            else f"mouth corners turned down ({s.corner_lift:.3f} IOD <= {SERIOUS_MAX_LIFT_IOD})"
        )
        return "serious", why
    return "neutral", "no smile, brows at rest, mouth closed or still"


def classify_clip(
    shapes: list[FaceShape], video: bool, baseline: ShapeBaseline | None = None
) -> tuple[str, str, list[str]]:
    """(class, why, per-frame classes) of a clip's faces: talking when the mouth opens and
    closes across frames (the spread of its aspect ratio, as metrics.talking), unless the face
    laughs or smiles through most of it; else the most common frame class (ties: the stronger
    expression, in EXPRESSION_CLASSES order from the end)."""
    per = [classify_face(s, baseline)[0] for s in shapes]
    if not per:
        return "neutral", "no face", per
    mars = [s.mouth_aspect_ratio for s in shapes]
    spread = float(np.std(mars)) if len(mars) > 1 else 0.0
    smiley = sum(c in ("smile", "laughing") for c in per) * 2 > len(per)
    if video and len(mars) >= 3 and spread >= TALKING_MAR_STD and not smiley:
        return (
            "talking",
            f"mouth opens and closes (aspect spread {spread:.2f} >= {TALKING_MAR_STD})",
            per,
        )
    order = {c: i for i, c in enumerate(EXPRESSION_CLASSES)}
    label = max(set(per), key=lambda c: (per.count(c), order[c]))
    return label, f"{per.count(label)}/{len(per)} frames {label}", per


# --- face crops (seed 003: the face 40-60 % of the image, RetinaFace-style margin) -------------

CROP_FACE_FRACTION = 0.5  # the face box's height / the crop's: the middle of seed 003's 40-60 %
CROP_MIN_FRACTION, CROP_MAX_FRACTION = 0.4, 0.6
# dlib's box runs from the brows to the chin; hair and forehead are above it, so the crop's
# centre sits this many face heights above the box's centre (more headroom than chin room)
CROP_HEADROOM = 0.08


def face_crop_box(
    face_x: float,
    face_y: float,
    face_w: float,
    face_h: float,
    width: int,
    height: int,
    fraction: float = CROP_FACE_FRACTION,
) -> tuple[tuple[int, int, int, int], float] | None:
    """A square crop (x, y, side, side) around a face with the face at ``fraction`` of its
    height, moved inside the frame where the face is near an edge; and the face's share of it.
    None when even the largest square the frame allows leaves the face above
    CROP_MAX_FRACTION (a face filling the frame has no margin to give)."""
    size = max(face_w, face_h)
    side = min(size / fraction, width, height)
    share = size / side
    if share > CROP_MAX_FRACTION:
        return None
    side_i = int(round(side))
    cx = face_x + face_w / 2
    cy = face_y + face_h / 2 - CROP_HEADROOM * face_h
    x0 = int(round(min(max(cx - side / 2, 0), width - side_i)))
    y0 = int(round(min(max(cy - side / 2, 0), height - side_i)))
    return (max(0, x0), max(0, y0), side_i, side_i), share
