"""Photo sets for a person (seed 002): crop so the person dominates, and reject what spoils a
likeness LoRA, each with its reason and the measured value behind it.

Per photo (``measure_photo``, on the photo at its own resolution):
- eyes closed: eye aspect ratio of dlib's 68 landmarks (expression.EYES_CLOSED_EAR);
- harsh shadow across the face: the two halves of the face (split along the nose line) and the
  eye band against the cheeks, compared in linear light;
- face too small: the face box in pixels (the likeness detail a crop can carry);
- extreme camera angle: head pose pitch (pose.estimate_pose);
- wide-angle distortion: nose width / face width, judged against the person's own photos
  (``decide_set``): a close wide-angle lens magnifies the nose, which is nearer the lens than
  the face outline (Ward et al. 2018, "Nasal distortion in short-distance photographs": at
  30 cm the nasal base reads ~30 % wider against the face than at 1.5 m);
- mirror selfie: text in the picture that reads only when flipped (PP-OCR, text.py).

Across the set (``decide_set``): wide-angle outliers, look-alike shots (same clothes +
background + pose, not only re-encodes: a burst of one pose in one place teaches that place and
pose), and mirror selfies beyond a share of the set.

Crops (``crop_box``): a portrait is cut around the face, head and shoulders (the face box 35 %
of the crop's height, room for the hair above); a shot that shows the whole body is cut to the
body with a small margin (seed 002: "leave a little space" for full-length photos).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypedDict

import cv2
import numpy as np

from loraforge.curation.expression import EYES_CLOSED_EAR, measure_expression
from loraforge.curation.faces import DetectedFace, FaceBackend, embedding_distance
from loraforge.curation.geometry import Box
from loraforge.curation.people import (
    BODY_PARTS,
    KEYPOINT_MIN_VISIBILITY,
    PeopleDetector,
    _same_head,
)
from loraforge.curation.pose import estimate_pose
from loraforge.curation.text import TextReader, is_text

# -- thresholds (each says what it was set on) -----------------------------------------------

# Eye aspect ratio below which the eyes are closed: expression.EYES_CLOSED_EAR (0.20; open eyes
# read 0.25-0.35). Measured here: the astronaut 0.34, Grace Hopper 0.30, the astronaut with her
# eyes painted shut along the lid line (landmark-driven edit) 0.08.
CLOSED_EYES_EAR = EYES_CLOSED_EAR
# Lighting ratio (linear light, bright part / dark part of the face) above which a shadow cuts
# across the face. Portrait lighting runs 2:1 (flat) to 4:1 (dramatic Rembrandt light); 8:1
# (3 stops) leaves half the face black, which a likeness LoRA learns as part of the face.
# Measured (halves / eye band): the astronaut 1.5 / 1.1, Grace Hopper 1.0 / 1.2; one half of the
# face at 80 % of the light 1.1-1.7, at 50 % 2.9-4.4, at 40 % 4.7-7.2; the eyes under a brim
# shadow at 40 % 5.9, at 50 % 3.8.
MAX_SHADOW_RATIO = 4.0
# The shadow is judged only on faces turned less than this: further round, the far half is
# foreshortened and naturally darker (a profile's far cheek is the shadow side of the head).
SHADOW_MAX_YAW = 30.0
# Face box height in pixels below which the face is too small to carry the likeness: dlib's
# identity chip is 150 px; under 64 px more than half of it is interpolated. The astronaut's
# face is 88 px in her 512 px portrait.
MIN_FACE_PX = 64
# Camera angle: |pitch| from 20 degrees counts as the above/below view the angle mix asks for
# (pose.VERTICAL_MIN_PITCH); beyond 35 the lens looks up the nostrils or down on the crown, the
# "shot from far below / above" seed 002 rejects. Head-pose error of landmark PnP is ~5-8 deg.
MAX_PITCH = 35.0
# Wide angle: nose width / face width (landmarks 31-35 over 0-16). A set's own median is the
# baseline (noses differ between people far more than the lens effect: 0.21-0.33). A photo more
# than 18 % above it is distorted; 30 % is the selfie effect at 30 cm (Ward et al.), a normal
# phone portrait at arm's length (~60 cm) reads ~15 %. The astronaut reads 0.215, Grace Hopper
# 0.234; a centre bulge of 45 % over the face (what a close wide-angle lens does) 0.29.
WIDE_ANGLE_EXCESS = 0.18
# without enough frontal photos for a median, an absolute bound: the 95th percentile of adult
# nasal width / bizygomatic width (~0.30) plus the lens effect at arm's length
WIDE_ANGLE_ABSOLUTE = 0.34
WIDE_ANGLE_MIN_BASELINE = 3  # frontal photos needed for the set's own median
WIDE_ANGLE_MAX_YAW = 20.0  # the ratio is read on near-frontal faces only
# Look-alike: same clothes AND same background AND same pose. Histogram correlations (HSV, 1 =
# identical); set on the astronaut: second shots of the same pose (4-20 % closer, moved 10-60 px,
# 8 % darker to 10 % brighter) read clothes 0.88-0.98 and background 0.82-0.94; the same person
# and pose composited over skimage's coffee, rocket and cat photos reads 0.00-0.14 for the
# background (clothes 0.99), her suit recoloured 0.02 for the clothes (background 0.998). The
# cut sits nearer the look-alikes' side: a similar colour of clothes counts as the same.
# Re-encodes and near-copies are curation's near_duplicate already (dedup.py: pHash).
LOOKALIKE_CLOTHES = 0.75
LOOKALIKE_BACKGROUND = 0.70
# pose: head angles within these, the face at the same place and size in the frame
LOOKALIKE_MAX_ANGLE = 10.0
LOOKALIKE_MAX_SHIFT = 0.10  # face centre, fractions of the frame
LOOKALIKE_MAX_SCALE = 0.25  # face height, relative
# Mirror selfies: a few are fine, many teach the mirror, the phone and the mirrored hair part
# (seed 002: "10 mirror photos" is a bad set). At most this share of the set is kept.
MAX_MIRROR_FRACTION = 0.2
# a line counts as mirrored text when its flipped reading is text and scores this much above
# the unflipped reading (PP-OCR reads mirrored Latin text as garbage at 0.3-0.6)
MIRROR_SCORE_MARGIN = 0.15

# crops
PORTRAIT_FACE_FRACTION = 0.35  # face box height / crop height: head and shoulders
PORTRAIT_ASPECT = 0.8  # width / height (4:5, the portrait format)
PORTRAIT_TOP = 0.25  # crop height above the face box: the hair and a little air
BODY_MARGIN = 0.06  # of the body height, each side of a full-length shot


class MirroredLine(TypedDict):
    """A line of text that reads only when the photo is flipped left-right (mirrored_text)."""

    box: list[float]  # x, y, w, h as fractions of the photo
    text: str  # read flipped
    score: float
    unflipped_text: str  # read as the photo is
    unflipped_score: float


@dataclass
class PhotoMeasure:
    """What one photo shows, at its own resolution (pixels of the photo)."""

    clip_id: str
    width: int
    height: int
    face: Box | None = None
    landmarks: np.ndarray | None = field(default=None, repr=False)
    embedding: np.ndarray | None = field(default=None, repr=False)
    eye_aspect_ratio: float | None = None
    yaw: float | None = None
    pitch: float | None = None
    roll: float | None = None
    nose_ratio: float | None = None
    shadow_halves: float | None = None  # bright half / dark half, linear light
    shadow_eyes: float | None = None  # cheeks / eye band (or the reverse), linear light
    body: Box | None = None  # whole body in frame (keypoints), else None
    mirrored_text: list[MirroredLine] = field(default_factory=list)
    clothes_hist: np.ndarray | None = field(default=None, repr=False)
    background_hist: np.ndarray | None = field(default=None, repr=False)

    def evidence(self) -> dict[str, Any]:
        def r(v: float | None, n: int = 3) -> float | None:
            return None if v is None else round(float(v), n)

        return {
            "face_box": None
            if self.face is None
            else [round(v, 1) for v in (self.face.x, self.face.y, self.face.w, self.face.h)],
            "eye_aspect_ratio": r(self.eye_aspect_ratio),
            "yaw": r(self.yaw, 1),
            "pitch": r(self.pitch, 1),
            "roll": r(self.roll, 1),
            "nose_ratio": r(self.nose_ratio),
            "shadow_halves": r(self.shadow_halves, 2),
            "shadow_eyes": r(self.shadow_eyes, 2),
            "body_box": None
            if self.body is None
            else [round(v, 1) for v in (self.body.x, self.body.y, self.body.w, self.body.h)],
            "mirrored_text": self.mirrored_text,
        }


@dataclass(frozen=True)
class PhotoReason:
    code: str
    message: str
    evidence: dict[str, Any] = field(default_factory=dict)


# -- per photo -------------------------------------------------------------------------------


def _linear(bgr: np.ndarray) -> np.ndarray:
    """Relative luminance in linear light (sRGB decoded, Rec. 709 weights)."""
    c = bgr.astype(np.float32) / 255.0
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    return 0.0722 * lin[..., 0] + 0.7152 * lin[..., 1] + 0.2126 * lin[..., 2]


def _ratio(a: float, b: float) -> float:
    lo, hi = sorted((max(a, 1e-4), max(b, 1e-4)))
    return hi / lo


def face_shadow(bgr: np.ndarray, landmarks: np.ndarray) -> tuple[float, float]:
    """(halves, eyes) lighting ratios of the face in linear light: the median luminance of the
    face's left and right halves (split along the nose line 27-33 and on to the chin), and of the
    eye band (brows to the nose bridge's middle) against the cheeks (nose to mouth). Medians,
    so eyes, teeth and specular highlights do not decide."""
    p = np.asarray(landmarks, np.float32)
    h, w = bgr.shape[:2]
    x0, y0 = np.floor(p.min(0)).astype(int)
    x1, y1 = np.ceil(p.max(0)).astype(int)
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1 + 1), min(h, y1 + 1)
    lum = _linear(bgr[y0:y1, x0:x1])
    q = p - np.array([x0, y0], np.float32)
    # the face: jaw line 0..16, closed over the brows
    outline = np.concatenate([q[0:17], q[26:16:-1]]).astype(np.int32)
    face = np.zeros(lum.shape, np.uint8)
    cv2.fillPoly(face, [outline], 1)
    ys, xs = np.mgrid[0 : lum.shape[0], 0 : lum.shape[1]].astype(np.float32)
    # which side of the nose line (bridge 27 to chin 8) each pixel is on
    a, b = q[27], q[8]
    side = (b[0] - a[0]) * (ys - a[1]) - (b[1] - a[1]) * (xs - a[0])
    left = lum[(face > 0) & (side > 0)]
    right = lum[(face > 0) & (side < 0)]
    # eye band: from the brows down to the middle of the nose bridge; cheeks: nose tip to mouth
    brow_y, bridge_y = q[17:27, 1].min(), q[29, 1]
    tip_y, mouth_y = q[30, 1], q[51, 1]
    eyes = lum[(face > 0) & (ys >= brow_y) & (ys <= bridge_y)]
    cheeks = lum[(face > 0) & (ys >= tip_y) & (ys <= mouth_y)]
    halves = (
        _ratio(float(np.median(left)), float(np.median(right))) if left.size and right.size else 1.0
    )
    band = (
        _ratio(float(np.median(eyes)), float(np.median(cheeks)))
        if eyes.size and cheeks.size
        else 1.0
    )
    return halves, band


def nose_ratio(landmarks: np.ndarray) -> float:
    p = np.asarray(landmarks, np.float64)
    return float(np.linalg.norm(p[31] - p[35])) / max(float(np.linalg.norm(p[0] - p[16])), 1e-6)


def _hist(hsv: np.ndarray, mask: np.ndarray | None) -> np.ndarray | None:
    if mask is not None and int(mask.sum()) < 200:
        return None
    hist = cv2.calcHist([hsv], [0, 1, 2], mask, [16, 6, 4], [0, 180, 0, 256, 0, 256])
    return cv2.normalize(hist, None).flatten()


def clothes_box(face: Box, width: int, height: int) -> tuple[int, int, int, int]:
    """The chest below the face: 2.4 face widths wide, from below the chin down 2 face heights."""
    cx = face.x + face.w / 2
    return Box(cx - 1.2 * face.w, face.y2 + 0.35 * face.h, 2.4 * face.w, 2.0 * face.h).clipped(
        width, height
    )


def layout_histograms(
    bgr: np.ndarray, face: Box | None, person_mask: np.ndarray | None
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(clothes, background) colour histograms: the chest under the face; everything the person
    mask leaves (without a mask: outside a band 3 face widths wide under the face)."""
    h, w = bgr.shape[:2]
    hsv = cv2.cvtColor(bgr, cv2.COLOR_BGR2HSV)
    clothes = None
    if face is not None:
        x0, y0, x1, y1 = clothes_box(face, w, h)
        if x1 - x0 > 4 and y1 - y0 > 4:
            clothes = _hist(hsv[y0:y1, x0:x1], None)
    bg: np.ndarray
    if person_mask is not None:
        bg = (person_mask < 0.5).astype(np.uint8)
    else:
        bg = np.ones((h, w), np.uint8)
        if face is not None:
            x0, _, x1, _ = Box(face.x - face.w, 0, 3 * face.w, h).clipped(w, h)
            bg[int(max(0, face.y - 0.5 * face.h)) :, x0:x1] = 0
    # a background must be seen to be compared: a tight portrait leaves a thin edge of it
    bg = cv2.erode(bg, np.ones((9, 9), np.uint8))
    background = _hist(hsv, bg) if bg.mean() > 0.08 else None
    return clothes, background


def mirrored_text(bgr: np.ndarray, reader: TextReader) -> list[MirroredLine]:
    """Lines of text that read as text only when flipped left-right: the photo is a mirror
    image (a mirror selfie, or a front camera that mirrors). Each: box (fractions), the text
    read flipped, both scores."""
    lines = reader.detect(bgr)
    if not lines:
        return []
    boxes = [ln.box for ln in lines]
    plain = reader.read(bgr, boxes)
    flipped_img = cv2.flip(bgr, 1)
    fboxes = [(1.0 - x - bw, y, bw, bh) for x, y, bw, bh in boxes]
    flipped = reader.read(flipped_img, fboxes)
    out: list[MirroredLine] = []
    for box, (t0, s0), (t1, s1) in zip(boxes, plain, flipped, strict=True):
        if is_text(t1, s1) and s1 >= s0 + MIRROR_SCORE_MARGIN:
            out.append(
                {
                    "box": [round(v, 4) for v in box],
                    "text": t1,
                    "score": round(s1, 3),
                    "unflipped_text": t0,
                    "unflipped_score": round(s0, 3),
                }
            )
    # a photo with more readable lines than mirrored ones is not a mirror image (a mirrored
    # reading of a symmetric word such as "OTTO" is not evidence)
    readable = sum(1 for t, s in plain if is_text(t, s))
    return out if len(out) > readable else []


def _largest(faces: Sequence[DetectedFace]) -> DetectedFace | None:
    return max(faces, key=lambda f: f.box.area) if faces else None


def body_box(bgr: np.ndarray, people: PeopleDetector, face: Box | None) -> Box | None:
    """The whole body of the main person (BlazePose keypoints: nose, shoulders, hips, knees,
    ankles visible in frame), from the top of the head to the feet; None when the body is not
    all in the photo (a portrait or a half-length shot)."""
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    found = people.persons(rgb, people.person_min_score)
    if not found:
        return None
    d = next((d for d in found if face is not None and _same_head(face, d.head)), found[0])
    xy, vis = people.keypoints(rgb, d)
    h, w = bgr.shape[:2]
    seen = (
        (vis >= KEYPOINT_MIN_VISIBILITY)
        & (xy[:, 0] >= 0)
        & (xy[:, 0] < w)
        & (xy[:, 1] >= 0)
        & (xy[:, 1] < h)
    )
    if not all(any(seen[i] for i in idx) for idx in BODY_PARTS.values()):
        return None
    pts = xy[seen]
    x0, y0 = pts.min(0)
    x1, y1 = pts.max(0)
    # keypoints stop at the eyes and ankles: the head top is ~half a face above the brows,
    # the soles a little under the ankles
    head = face if face is not None else d.head
    y0 = min(y0, head.y - 0.45 * head.h)
    x0, x1 = min(x0, head.x), max(x1, head.x2)
    y1 = y1 + 0.04 * (y1 - y0)
    return Box(float(x0), float(y0), float(x1 - x0), float(y1 - y0))


def measure_photo(
    clip_id: str,
    bgr: np.ndarray,
    backend: FaceBackend,
    people: PeopleDetector | None = None,
    reader: TextReader | None = None,
) -> PhotoMeasure:
    """Measure one photo: its largest face (landmarks, embedding, eyes, pose, shadow, nose),
    the whole body when it is in frame, the layout histograms and mirrored text."""
    h, w = bgr.shape[:2]
    m = PhotoMeasure(clip_id, w, h)
    f = _largest(backend.detect(bgr, embed_largest=True))
    if f is not None:
        m.face, m.embedding = f.box, f.embedding
        if f.landmarks is not None and len(f.landmarks) == 68:  # iBUG-68 (dlib, insightface)
            lm = np.asarray(f.landmarks, np.float32)
            m.landmarks = lm
            m.eye_aspect_ratio = measure_expression(lm).eye_aspect_ratio
            pose = estimate_pose(lm, w, h)
            if pose is not None:
                m.yaw, m.pitch, m.roll = pose.yaw, pose.pitch, pose.roll
            m.nose_ratio = nose_ratio(lm)
            m.shadow_halves, m.shadow_eyes = face_shadow(bgr, lm)
    mask = None
    if people is not None:
        m.body = body_box(bgr, people, m.face)
        mask = people.person_mask(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    m.clothes_hist, m.background_hist = layout_histograms(bgr, m.face, mask)
    if reader is not None:
        m.mirrored_text = mirrored_text(bgr, reader)
    return m


def photo_reasons(m: PhotoMeasure) -> list[PhotoReason]:
    """What rejects this photo on its own (set-wide reasons: decide_set)."""
    out: list[PhotoReason] = []
    if m.face is None or m.landmarks is None:
        return [
            PhotoReason(
                "no_face",
                "no_face: no face found in the photo; a likeness LoRA "
                "learns from photos where the face is visible",
            )
        ]
    if m.face.h < MIN_FACE_PX:
        out.append(
            PhotoReason(
                "face_too_small",
                f"face_too_small: the face is {m.face.h:.0f} px high (min {MIN_FACE_PX}); "
                "use a larger original or a closer shot",
                {"face_px": round(m.face.h, 1)},
            )
        )
    if m.eye_aspect_ratio is not None and m.eye_aspect_ratio < CLOSED_EYES_EAR:
        out.append(
            PhotoReason(
                "eyes_closed",
                f"eyes_closed: eye aspect ratio {m.eye_aspect_ratio:.2f} (open eyes read "
                f">= {CLOSED_EYES_EAR:.2f})",
                {"eye_aspect_ratio": round(m.eye_aspect_ratio, 3)},
            )
        )
    if m.yaw is not None and abs(m.yaw) < SHADOW_MAX_YAW:
        worst = max(m.shadow_halves or 1.0, m.shadow_eyes or 1.0)
        if worst > MAX_SHADOW_RATIO:
            where = (
                "one half of the face"
                if (m.shadow_halves or 0) >= (m.shadow_eyes or 0)
                else "the eyes"
            )
            out.append(
                PhotoReason(
                    "harsh_shadow",
                    f"harsh_shadow: a shadow across {where}, lighting ratio {worst:.1f}:1 "
                    f"(max {MAX_SHADOW_RATIO:.0f}:1); use a photo in softer or frontal light",
                    {
                        "shadow_halves": round(m.shadow_halves or 1.0, 2),
                        "shadow_eyes": round(m.shadow_eyes or 1.0, 2),
                    },
                )
            )
    if m.pitch is not None and abs(m.pitch) > MAX_PITCH:
        view = "from below" if m.pitch > 0 else "from above"
        out.append(
            PhotoReason(
                "extreme_angle",
                f"extreme_angle: shot {view}, head pitch {m.pitch:+.0f} deg "
                f"(max +-{MAX_PITCH:.0f}); "
                "such angles distort the face's proportions",
                {"pitch": round(m.pitch, 1)},
            )
        )
    return out


# -- crops -----------------------------------------------------------------------------------


def _fit(x0: float, y0: float, cw: float, ch: float, width: int, height: int) -> Box:
    """Move a crop window inside the photo (shrinking it only when it is larger than the photo)."""
    cw, ch = min(cw, width), min(ch, height)
    x0 = min(max(0.0, x0), width - cw)
    y0 = min(max(0.0, y0), height - ch)
    return Box(round(x0), round(y0), round(cw), round(ch))


def crop_box(m: PhotoMeasure) -> tuple[Box, str]:
    """(crop in photo pixels, kind): ``full_body`` around the whole body with BODY_MARGIN each
    side, else ``portrait``: head and shoulders around the face. Never larger than the photo."""
    if m.body is not None:
        b = m.body
        pad = BODY_MARGIN * b.h
        return _fit(
            b.x - pad, b.y - pad, b.w + 2 * pad, b.h + 2 * pad, m.width, m.height
        ), "full_body"
    if m.face is None:
        return Box(0, 0, m.width, m.height), "full_frame"
    f = m.face
    ch = f.h / PORTRAIT_FACE_FRACTION
    cw = ch * PORTRAIT_ASPECT
    return _fit(
        f.x + f.w / 2 - cw / 2, f.y - PORTRAIT_TOP * ch, cw, ch, m.width, m.height
    ), "portrait"


def subject_share(m: PhotoMeasure, crop: Box) -> float:
    """Share of the crop's height the subject takes: the body for a full shot, else the face."""
    subject = m.body or m.face
    return 0.0 if subject is None else min(1.0, subject.h / max(crop.h, 1.0))


# -- across the set --------------------------------------------------------------------------


def _angles(m: PhotoMeasure) -> tuple[float, float, float] | None:
    """(yaw, pitch, roll) of a photo whose head pose was estimated (measure sets all three)."""
    if m.yaw is None or m.pitch is None or m.roll is None:
        return None
    return m.yaw, m.pitch, m.roll


def _close_pose(a: PhotoMeasure, b: PhotoMeasure) -> bool:
    pa, pb = _angles(a), _angles(b)
    if a.face is None or b.face is None or pa is None or pb is None:
        return False
    if max(abs(x - y) for x, y in zip(pa, pb, strict=True)) > LOOKALIKE_MAX_ANGLE:
        return False
    (ax, ay), (bx, by) = a.face.center, b.face.center
    shift = math.hypot(ax / a.width - bx / b.width, ay / a.height - by / b.height)
    scale = abs(a.face.h / a.height - b.face.h / b.height) / max(a.face.h / a.height, 1e-6)
    return shift <= LOOKALIKE_MAX_SHIFT and scale <= LOOKALIKE_MAX_SCALE


def _similar(h1: np.ndarray | None, h2: np.ndarray | None) -> float | None:
    if h1 is None or h2 is None:
        return None
    return float(cv2.compareHist(h1.astype(np.float32), h2.astype(np.float32), cv2.HISTCMP_CORREL))


def lookalike(
    a: PhotoMeasure, b: PhotoMeasure, same_person: float | None = None
) -> dict[str, Any] | None:
    """The evidence that b is a look-alike of a (same person, clothes, background and pose),
    or None. `same_person`: the face backend's same-person distance (None: not checked)."""
    if (
        same_person is not None
        and a.embedding is not None
        and b.embedding is not None
        and embedding_distance(a.embedding, b.embedding) > same_person
    ):
        return None
    pa, pb = _angles(a), _angles(b)
    if pa is None or pb is None or not _close_pose(a, b):
        return None
    clothes = _similar(a.clothes_hist, b.clothes_hist)
    background = _similar(a.background_hist, b.background_hist)
    if clothes is None or clothes < LOOKALIKE_CLOTHES:
        return None
    # a tight portrait shows too little background to compare: clothes and pose decide
    if background is not None and background < LOOKALIKE_BACKGROUND:
        return None
    return {
        "of": a.clip_id,
        "clothes_similarity": round(clothes, 3),
        "background_similarity": None if background is None else round(background, 3),
        "yaw_difference": round(abs(pa[0] - pb[0]), 1),
        "pitch_difference": round(abs(pa[1] - pb[1]), 1),
    }


@dataclass
class SetDecision:
    kept: list[str]  # clip ids, in rank order
    rejected: dict[str, list[PhotoReason]]
    baseline_nose_ratio: float | None
    mirror_selfies: list[str]


def decide_set(
    measures: Sequence[PhotoMeasure],
    rank: Sequence[str],
    same_person: float | None = None,
    max_mirror_fraction: float = MAX_MIRROR_FRACTION,
) -> SetDecision:
    """Photo reasons, then the set-wide ones, in `rank` order (best first): a look-alike of a
    better-ranked kept photo is rejected; wide-angle outliers against the set's median nose
    ratio; mirror selfies beyond `max_mirror_fraction` of what is kept (the lowest ranked go)."""
    by_id = {m.clip_id: m for m in measures}
    order = [cid for cid in rank if cid in by_id] + sorted(set(by_id) - set(rank))
    rejected: dict[str, list[PhotoReason]] = {}
    for cid in order:
        rs = photo_reasons(by_id[cid])
        if rs:
            rejected[cid] = rs

    frontal = [
        m.nose_ratio
        for m in (by_id[c] for c in order if c not in rejected)
        if m.nose_ratio is not None and m.yaw is not None and abs(m.yaw) <= WIDE_ANGLE_MAX_YAW
    ]
    baseline = float(np.median(frontal)) if len(frontal) >= WIDE_ANGLE_MIN_BASELINE else None
    for cid in order:
        m = by_id[cid]
        if (
            cid in rejected
            or m.nose_ratio is None
            or m.yaw is None
            or abs(m.yaw) > WIDE_ANGLE_MAX_YAW
        ):
            continue
        limit = baseline * (1 + WIDE_ANGLE_EXCESS) if baseline is not None else WIDE_ANGLE_ABSOLUTE
        if m.nose_ratio > limit:
            against = (
                f"{(m.nose_ratio / baseline - 1):+.0%} against this person's median {baseline:.3f}"
                if baseline is not None
                else f"above {WIDE_ANGLE_ABSOLUTE} with too few photos for a median"
            )
            rejected[cid] = [
                PhotoReason(
                    "wide_angle",
                    f"wide_angle: nose width / face width {m.nose_ratio:.3f}, {against} (limit "
                    f"{limit:.3f}): a close wide-angle shot enlarges the nose; use a photo taken "
                    "from further away",
                    {
                        "nose_ratio": round(m.nose_ratio, 4),
                        "baseline": None if baseline is None else round(baseline, 4),
                        "limit": round(limit, 4),
                    },
                )
            ]

    kept: list[PhotoMeasure] = []
    for cid in order:
        if cid in rejected:
            continue
        m = by_id[cid]
        hit = next((ev for k in kept if (ev := lookalike(k, m, same_person)) is not None), None)
        if hit is not None:
            rejected[cid] = [
                PhotoReason(
                    "look_alike",
                    f"look_alike: same clothes, background and pose as {hit['of']} (clothes "
                    f"{hit['clothes_similarity']:.2f}, background "
                    f"{hit['background_similarity']}, min {LOOKALIKE_CLOTHES}/"
                    f"{LOOKALIKE_BACKGROUND}); it teaches that outfit and place twice",
                    hit,
                )
            ]
            continue
        kept.append(m)

    mirrors = [m.clip_id for m in kept if m.mirrored_text]
    allowed = int(max_mirror_fraction * len(kept))
    for cid in mirrors[allowed:]:
        m = by_id[cid]
        rejected[cid] = [
            PhotoReason(
                "mirror_selfie",
                f"mirror_selfie: mirrored text {m.mirrored_text[0]['text']!r} in the picture, and "
                f"{len(mirrors)} of {len(kept)} photos are mirror images "
                f"(at most {max_mirror_fraction:.0%} are kept); "
                "replace some with photos taken by someone else",
                {"mirrored_text": m.mirrored_text},
            )
        ]
    kept_ids = [m.clip_id for m in kept if m.clip_id not in rejected]
    return SetDecision(kept_ids, rejected, baseline, mirrors)
