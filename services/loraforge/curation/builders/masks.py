"""Where the people are, pixel by pixel: the mask a builder removes (background) or keeps
(a character's subject).

Built from the models curation already runs (people.py): MediaPipe's person segmenter gives the
shape, the person detector and the faces say which of its regions are people (the segmenter
alone also paints cats and cups), and where the segmenter missed a detected person (small,
far, dark) the detector's head box and body circle stand in. The union is dilated, because the
segmenter works at 256 px and its edge misses hair and a halo a few pixels wide; a missed rim
of a person is what a background LoRA would learn as a ghost.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from loraforge.curation.geometry import Box
from loraforge.curation.people import (
    BODY_BAND_HEAD_WIDTHS,
    PERSON_MIN_SCORE,
    WORK_SIDE,
    PeopleDetector,
    PersonDetection,
)

# Segmenter probability counted as person. Lower than people.py's 0.5 (which counts people):
# here a missed rim costs more than a few extra filled pixels. On the astronaut cut-out
# composited over the rocket and the motorcycle room (tests/unit/curation/test_builders.py),
# 0.3 covered the pasted pixels within the dilation where 0.5 left rims at the hair and arms.
SEG_THRESHOLD = 0.3
# Dilation: a share of the person's own height (hair, motion blur and the segmenter's 256 px
# grid scale with the person), at least DILATE_MIN_PX. Set on the same composites: 4 % of the
# person's height took the pasted-pixel coverage from ~0.96 to >= 0.995.
DILATE_PERSON_FRACTION = 0.04
DILATE_MIN_PX = 3
# a head box is widened by this much for hair and ears the segmenter may cut
HEAD_MARGIN = 0.35
# A detection whose body the segmenter does not show is filled as a box only when it is this
# sure (or has a face): peeled second rounds at people.py's 0.45 also hit furniture in a busy
# room (the motorcycle room: 0.45-0.55), which would blank out a third of the frame.
SURE_PERSON_SCORE = 0.6
# closing of the segmenter mask at WORK_SIDE (512 px): ~2 % of the frame
CLOSE_PX = 11
# a person's segmenter region is kept within their body box grown by this share on each side
# (arms held out, a bent knee); beyond it, what the segmenter joins to them is furniture
BODY_REACH = 0.35
# share of a peeled detection's head box (grown) the segmenter must paint: a real second person's
# head is painted over most of it (0.3-0.7 on the composites), furniture at 0-0.05
PEELED_SUPPORT = 0.15


@dataclass
class PersonMask:
    mask: np.ndarray  # bool, frame size: every person, dilated
    people: list[Box]  # one box per person found (frame pixels): head or face, or mask region
    heads: list[Box]  # detector head boxes and faces
    fraction: float  # share of the frame the mask covers

    @property
    def count(self) -> int:
        return len(self.people)


def work_rgb(bgr: np.ndarray) -> tuple[np.ndarray, float]:
    """The frame in RGB with its long side at most WORK_SIDE, and the scale it was taken at."""
    h, w = bgr.shape[:2]
    f = min(1.0, WORK_SIDE / max(h, w))
    small = (
        cv2.resize(bgr, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)
        if f < 1
        else bgr
    )
    return cv2.cvtColor(small, cv2.COLOR_BGR2RGB), f


def _body_box(d: PersonDetection, width: int, height: int) -> Box:
    """The box a detected person's body fills: from above the head to the bottom of the
    full-body circle, as wide as the circle's half (a standing body is ~1/4 as wide as tall)."""
    cx = d.hips[0]
    top = d.head.y - HEAD_MARGIN * d.head.h
    bottom = d.hips[1] + d.body_radius
    half = max(0.5 * d.body_radius, BODY_BAND_HEAD_WIDTHS * d.head.w)  # shoulders: people.py
    x0, x1 = max(0.0, cx - half), min(float(width), cx + half)
    y0, y1 = max(0.0, top), min(float(height), bottom)
    return Box(x0, y0, max(0.0, x1 - x0), max(0.0, y1 - y0))


def _grow(b: Box, m: float) -> Box:
    return Box(b.x - m * b.w, b.y - m * b.h, b.w * (1 + 2 * m), b.h * (1 + 2 * m))


def person_mask(
    people: PeopleDetector,
    bgr: np.ndarray,
    faces: Sequence[Box] = (),
    seg_threshold: float = SEG_THRESHOLD,
) -> PersonMask:
    """Every person in the frame as one dilated mask at the frame's size."""
    h, w = bgr.shape[:2]
    rgb, f = work_rgb(bgr)
    sh, sw = rgb.shape[:2]
    prob = people.person_mask(rgb)
    seg: np.ndarray = (prob >= seg_threshold).astype(np.uint8)
    # the segmenter's low-confidence parts of a body (a dark suit at the frame's edge) come as
    # speckle; closing joins it to the body it belongs to
    seg = cv2.morphologyEx(
        seg, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (CLOSE_PX, CLOSE_PX))
    )
    # the detector, peeled (each person found blacked out, look again, as people.detect does):
    # the first round's people are trusted; a later round's, found at people.py's lower
    # second-person score, only where the segmenter shows something at its head (peeled
    # rounds also hit shelves and lamps: the motorcycle room 0.6, the rocket pad's lights 0.45)
    dets: list[PersonDetection] = []
    view = rgb.copy()
    for round_ in range(3):
        new = people.persons(
            view, PERSON_MIN_SCORE if round_ == 0 else people.second_person_min_score
        )
        new = [d for d in new if all(_far(d, o) for o in dets)]
        if round_ > 0:
            new = [
                d
                for d in new
                if _support(seg, _grow(d.head, HEAD_MARGIN), sw, sh) >= PEELED_SUPPORT
            ]
        if not new:
            break
        dets.extend(new)
        for d in new:
            x0, y0, x1, y1 = _body_box(d, sw, sh).clipped(sw, sh)
            view[y0:y1, x0:x1] = 0
    face_boxes = [b.scaled(f) for b in faces]
    heads: list[Box] = face_boxes + [d.head for d in dets]
    keep = np.zeros((sh, sw), np.uint8)
    seeds = np.zeros((sh, sw), np.uint8)  # where a person is known to be
    for b in heads:
        x0, y0, x1, y1 = _grow(b, HEAD_MARGIN).clipped(sw, sh)
        seeds[y0:y1, x0:x1] = 1
        if _support(seg, b, sw, sh) < 0.5:
            keep[y0:y1, x0:x1] = (
                1  # a head the segmenter missed (dark, small): the box, hair included
            )
    reach = seeds.copy()  # how far a person's segmenter region may extend
    for d in dets:
        x0, y0, x1, y1 = _body_box(d, sw, sh).clipped(sw, sh)
        seeds[y0:y1, x0:x1] = 1
        x0, y0, x1, y1 = _grow(_body_box(d, sw, sh), BODY_REACH).clipped(sw, sh)
        reach[y0:y1, x0:x1] = 1
    if not dets:  # faces only (a close-up the detector missed): the body under each face,
        # arms and shoulders up to 3 face widths either side of it
        for b in face_boxes:
            x0, y0, x1, y1 = Box(b.x - 2.5 * b.w, b.y - 0.5 * b.h, 6 * b.w, sh).clipped(sw, sh)
            reach[y0:y1, x0:x1] = 1
    # the segmenter's regions that touch a known person are that person (body, arms, cut by
    # the frame edge), within the person's reach: the segmenter also joins a chair or a
    # motorcycle seat the person touches. Regions nowhere near anyone are its cats and cups.
    _n, labels = cv2.connectedComponents(seg)
    for lab in np.unique(labels[(seeds > 0) & (seg > 0)]):
        if lab:
            keep[(labels == lab) & (reach > 0)] = 1
    # a sure detection whose body the segmenter does not show (small, far, dark): its body box
    for d in dets:
        sure = d.score >= SURE_PERSON_SCORE or any(_same(d.head, b) for b in face_boxes)
        if sure and _support(seg, _body_box(d, sw, sh), sw, sh) < 0.15:
            x0, y0, x1, y1 = _body_box(d, sw, sh).clipped(sw, sh)
            keep[y0:y1, x0:x1] = 1
    full = cv2.resize(keep, (w, h), interpolation=cv2.INTER_NEAREST) if f < 1 else keep
    mask = full > 0
    if mask.any():
        ys = np.where(mask.any(axis=1))[0]
        r = max(DILATE_MIN_PX, int(round(DILATE_PERSON_FRACTION * (ys[-1] - ys[0] + 1))))
        k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
        mask = cv2.dilate(mask.astype(np.uint8), k) > 0
    people_boxes = list(faces) + [
        d.head.scaled(1 / f) for d in dets if not any(_same(d.head, b) for b in face_boxes)
    ]
    return PersonMask(mask, people_boxes, [b.scaled(1 / f) for b in heads], float(mask.mean()))


def _support(seg: np.ndarray, b: Box, width: int, height: int) -> float:
    """Share of the box the segmenter paints as person."""
    x0, y0, x1, y1 = b.clipped(width, height)
    return float(seg[y0:y1, x0:x1].mean()) if (x1 - x0) * (y1 - y0) else 0.0


def _far(a: PersonDetection, b: PersonDetection) -> bool:
    ax, ay = a.head.center
    bx, by = b.head.center
    return abs(ax - bx) > 0.5 * max(a.head.w, b.head.w) or abs(ay - by) > 0.5 * max(
        a.head.h, b.head.h
    )


def _same(a: Box, b: Box) -> bool:
    ax, ay = a.center
    return b.x - 0.5 * b.w <= ax <= b.x2 + 0.5 * b.w and b.y - 0.5 * b.h <= ay <= b.y2 + 0.5 * b.h
