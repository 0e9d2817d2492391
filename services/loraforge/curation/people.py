"""Who is in the frame: every person, including those who show no face.

A clip of "one person" is rejected when a second person shares the shot: in the background,
over the shoulder, cut by the frame edge, seen from behind, upper body only. Face detection
alone misses most of those, and a full-body pedestrian window (HOG 64x128) misses anyone who is
not standing whole in the frame. Offline models, each doing what it is good at:

- MediaPipe's BlazePose person detector (``data/pose_detection.tflite``): an SSD that finds a
  person from the head and upper body, partial or whole, and gives the hip centre and the
  radius of the circle that holds the full body (what MediaPipe crops for its landmark model).
- MediaPipe's selfie segmentation (``data/selfie_segmentation.tflite``): a person mask. It covers
  shoulders and people cut by the frame edge, but it is a foreground segmenter that
  also paints cats and cups when no person is there, so a region of the mask counts as a person
  only when the person detector confirms it on a crop of that region.
- The face backend's faces (passed in): every face is a person.
- For pose datasets, MediaPipe's pose landmark model (``data/pose_landmark_full.tflite``) on the
  main person: 33 body keypoints with their visibility, to tell a whole body from a portrait.

The .tflite files come from the mediapipe 0.10.14 wheel (tflite.py; 9.6 MB together). The
subject's own body is never a second person: mask regions in the body band under a known head
(face or detector head box) belong to that head.

The detector needs a head, not a face: a head of hair with no face (the astronaut with her face
covered by her own hair, as someone seen from behind) scores 0.75-0.9. Limit, measured: a second
person whose head is out of the picture (only shoulders and chest) or a dark backlit silhouette
scored 0.1-0.36 and is not counted.

dlib's CNN face detector (``mmod_human_face_detector.dat``) was measured for this and is not
used: it finds faces of 80 px and more, so at 320 px (0.75-1.0 s of CPU a frame here) it found
Grace Hopper's large face but missed the astronaut's (62 px there) and the cameraman's profile,
which the person detector finds in ~20 ms; upsampling to reach small faces costs seconds a frame.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from loraforge.curation.geometry import Box, iou
from loraforge.curation.tflite import interpreter, letterbox, letterbox_place, ssd_anchors

# Person detector score for someone found in the whole frame. Set on real photos (skimage,
# matplotlib; detections that pass _upright_body): people score 0.55-0.85 (the astronaut 0.8,
# Grace Hopper 0.66-0.81, the cameraman in profile 0.55-0.57); on frames with no one the
# highest scores were skimage's logo drawing 0.52 and its horse silhouette 0.48, everything
# else (cat, coffee, rocket, textures, microscopy) stays under 0.3.
PERSON_MIN_SCORE = 0.5
# Score for a second person, looked for with the people found so far blacked out: people
# standing beside or behind the subject score 0.44-0.9 there (Grace Hopper small and out of
# focus 0.44-0.56, the cameraman 0.6-0.83, a head seen from behind 0.75-0.9); other things
# beside the subject mostly stay at or under 0.39 (a horse), the subject's own leftover
# shoulders under 0.35. One known exception: the space-shuttle model beside the astronaut (the
# example footage's pan) reached 0.58 in one frame; a clip counts a second person only when
# half its checked frames show one (metrics).
SECOND_PERSON_MIN_SCORE = 0.45
# Score on a crop around a region of the person mask that no known person explains. Crops are
# looked at only beside a person already found (see detect). Measured on crops: people cut by
# the frame edge 0.67-0.77, the cameraman in profile 0.5-0.72; the highest non-person crop was
# the space shuttle model beside the letterboxed astronaut, 0.45.
REGION_MIN_SCORE = 0.5
# the detector runs again with the people found so far blacked out, at most this many times,
# and at most this many mask regions (the largest) are checked a frame: in a crowd the count
# is a lower bound, which is all a "one person" rule needs, at a bounded cost (~40 ms a region)
MAX_PEEL_ROUNDS = 3
MAX_REGIONS = 4
MASK_THRESHOLD = 0.5
# a mask region smaller than this share of the frame is an arm, a hand or a shadow of the
# subject, not a person: a background person a quarter of the frame high is ~2-3 %
MIN_REGION_FRACTION = 0.012
# a known head owns the mask under it within this many head widths either side of its centre:
# shoulders span ~2.8 face widths (45 cm against 16 cm); arms held out beyond it leave mask
# regions that the detector does not take for a person (it needs a head)
BODY_BAND_HEAD_WIDTHS = 1.6
# the models look at small inputs (224-256 px); frames are shrunk to this first
WORK_SIDE = 512

_ANCHOR_STRIDES = (8, 16, 32, 32, 32)
_DET_SIDE = 224
_SEG_SIDE = 256


@dataclass(frozen=True)
class PersonDetection:
    """One person the detector found, in the pixels of the frame it was given."""

    score: float
    head: Box
    hips: tuple[float, float]
    body_radius: float  # circle around the hips that holds the whole body
    # the point of that circle towards the head: with the hips, it sets the landmark crop's
    # size and rotation (MediaPipe's alignment keypoints 0 and 1)
    circle: tuple[float, float] = (0.0, 0.0)


@dataclass(frozen=True)
class Person:
    box: Box  # the head (face or detector head box), or the mask region for a body without one
    score: float
    source: str  # face | detector | region
    has_face: bool
    # the whole body is inside the frame (keypoints: nose, shoulder, hip, knee and ankle visible
    # in frame; without keypoints: the detector's full-body circle); None: no body detection
    full_body: bool | None = None
    body_height_ratio: float = 0.0  # full-body circle diameter / frame height
    visible_keypoints: tuple[str, ...] = ()  # BODY_PARTS seen in frame (keypoints only)
    # the detector's head box of a person known by the face (``_band``)
    head: Box | None = None

    def scaled(self, k: float) -> Person:
        """The same person in the pixels of the frame scaled by ``k``."""
        head = self.head.scaled(k) if self.head is not None else None
        return dataclasses.replace(self, box=self.box.scaled(k), head=head)


class _Models(threading.local):
    """TFLite interpreters are not thread-safe; clips are measured on several threads."""

    def __init__(self) -> None:
        self.detector = interpreter("pose_detection.tflite")
        self.segmenter = interpreter("selfie_segmentation.tflite")
        self._landmarks = None
        # tensor indices, looked up once: the details lists cost as much as a small resize
        self.det_in = self.detector.get_input_details()[0]["index"]
        self.det_boxes, self.det_scores = (o["index"] for o in self.detector.get_output_details())
        self.seg_in = self.segmenter.get_input_details()[0]["index"]
        self.seg_out = self.segmenter.get_output_details()[0]["index"]
        # the detector's outputs (boxes, logits) for an all-black input, once computed: a frame
        # whose people are all blacked out is black, and its input is the same every time
        self.black: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def landmarks(self) -> Any:  # ai_edge_litert's Interpreter
        if self._landmarks is None:  # 6 MB, only for pose datasets
            self._landmarks = interpreter("pose_landmark_full.tflite")
        return self._landmarks


# BlazePose keypoint indices of the parts a whole body shows (either side counts)
BODY_PARTS: dict[str, tuple[int, ...]] = {
    "nose": (0,),
    "shoulder": (11, 12),
    "hip": (23, 24),
    "knee": (25, 26),
    "ankle": (27, 28),
}
# keypoint visibility (the model's own probability that the point is not occluded)
KEYPOINT_MIN_VISIBILITY = 0.5
_LM_SIDE = 256


class PeopleDetector:
    """Counts people per frame; ``detect`` takes the faces the face backend found there."""

    def __init__(
        self,
        person_min_score: float = PERSON_MIN_SCORE,
        second_person_min_score: float = SECOND_PERSON_MIN_SCORE,
        region_min_score: float = REGION_MIN_SCORE,
    ) -> None:
        self.person_min_score = person_min_score
        self.second_person_min_score = second_person_min_score
        self.region_min_score = region_min_score
        self._local = _Models()  # fails now, with the fix, if a model or the runtime is missing

    # -- models ----------------------------------------------------------------------------

    def persons(self, rgb: np.ndarray, min_score: float) -> list[PersonDetection]:
        """MediaPipe person detector on one RGB image, after non-maximum suppression."""
        models = self._local
        if rgb.any():
            img, f, ox, oy = letterbox(rgb, _DET_SIDE)
            raw, logits = self._detector_outputs(img)
        else:
            # all black (everyone blacked out, a fade): its letterbox is all zeros whatever
            # its size, the same input as before, so the model's outputs are those it gave then
            f, ox, oy, _, _ = letterbox_place(rgb.shape[0], rgb.shape[1], _DET_SIDE)
            if models.black is None:
                models.black = self._detector_outputs(np.zeros((_DET_SIDE, _DET_SIDE, 3), np.uint8))
            raw, logits = models.black
        scores = 1.0 / (1.0 + np.exp(-np.clip(logits, -100, 100)))
        # the pose_detection graph: 5 layers, strides 8-32, two anchors per cell per layer
        a = ssd_anchors(_DET_SIDE, _ANCHOR_STRIDES, 2)  # 2254
        found: list[PersonDetection] = []

        def to_img(x: Any, y: Any) -> tuple[Any, Any]:
            """From the 224 letterbox (0..1) back to image pixels (numpy scalars as given)."""
            return (x * _DET_SIDE - ox) / f, (y * _DET_SIDE - oy) / f

        for k in np.argsort(-scores):
            if scores[k] < min_score:
                break
            r = raw[k] / _DET_SIDE
            cx, cy = r[0] + a[k, 0], r[1] + a[k, 1]
            x0, y0 = to_img(cx - r[2] / 2, cy - r[3] / 2)
            x1, y1 = to_img(cx + r[2] / 2, cy + r[3] / 2)
            hx, hy = to_img(r[4] + a[k, 0], r[5] + a[k, 1])
            ux, uy = to_img(r[6] + a[k, 0], r[7] + a[k, 1])
            hips, circle = (float(hx), float(hy)), (float(ux), float(uy))
            head = Box(float(x0), float(y0), float(x1 - x0), float(y1 - y0))
            radius = float(np.hypot(circle[0] - hips[0], circle[1] - hips[1]))
            d = PersonDetection(float(scores[k]), head, hips, radius, circle)
            if _upright_body(d) and all(iou(head, o.head) < 0.3 for o in found):
                found.append(d)
        return found

    def _detector_outputs(self, img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The person detector's raw outputs on a 224 letterbox: boxes (2254, 12) and score
        logits (2254,) as float64."""
        models = self._local
        it = models.detector
        it.set_tensor(models.det_in, (img.astype(np.float32) / 127.5 - 1.0)[None])
        it.invoke()
        raw = it.get_tensor(models.det_boxes)[0]
        logits = it.get_tensor(models.det_scores)[0, :, 0].astype(np.float64)
        return raw, logits

    def keypoints(self, rgb: np.ndarray, d: PersonDetection) -> tuple[np.ndarray, np.ndarray]:
        """BlazePose's 33 body keypoints of one detected person: (33, 2) image pixels and their
        visibility (0..1). The crop is MediaPipe's: centred on the hips, 2.5 body-circle radii
        wide, turned so that the hips-to-head axis is upright."""
        it = self._local.landmarks
        cx, cy = d.hips
        dx, dy = d.circle[0] - cx, d.circle[1] - cy
        size = 2.0 * float(np.hypot(dx, dy)) * 1.25
        rot = np.pi / 2 - np.arctan2(-dy, dx)
        c, s = np.cos(rot) * size / _LM_SIDE, np.sin(rot) * size / _LM_SIDE
        # crop pixel (u, v) -> image: centre + R(rot) @ ((u, v) - 128) * size / 256
        lin = np.array([[c, -s], [s, c]])
        aff = np.hstack(
            [lin, (np.array([cx, cy]) - lin @ np.array([_LM_SIDE / 2, _LM_SIDE / 2]))[:, None]]
        )
        crop = cv2.warpAffine(
            rgb,
            aff,
            (_LM_SIDE, _LM_SIDE),
            flags=cv2.WARP_INVERSE_MAP | cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
        )
        it.set_tensor(it.get_input_details()[0]["index"], (crop.astype(np.float32) / 255.0)[None])
        it.invoke()
        out = {o["name"]: o["index"] for o in it.get_output_details()}
        pts = it.get_tensor(out["Identity"])[0].reshape(-1, 5)[:33].astype(np.float64)
        xy = pts[:, :2] @ lin.T + aff[:, 2]
        visibility = 1.0 / (1.0 + np.exp(-np.clip(pts[:, 3], -50, 50)))
        return xy, visibility

    def person_mask(self, rgb: np.ndarray) -> np.ndarray:
        """Probability that each pixel is a person, at the image's size."""
        models = self._local
        it = models.segmenter
        small = cv2.resize(rgb, (_SEG_SIDE, _SEG_SIDE), interpolation=cv2.INTER_AREA)
        it.set_tensor(models.seg_in, (small.astype(np.float32) / 255.0)[None])
        it.invoke()
        m = it.get_tensor(models.seg_out)[0, :, :, 0]
        prob: np.ndarray = cv2.resize(
            m, (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_LINEAR
        )
        return prob

    # -- counting --------------------------------------------------------------------------

    def detect(
        self, bgr: np.ndarray, faces: Sequence[Box] = (), keypoints: bool = False
    ) -> list[Person]:
        """Everyone in the frame: each face; each person the detector finds (in the whole
        frame, then again with the people already found blacked out, so a second person is
        not outscored by the first); and, once someone is in the frame, each region of the
        person mask outside the known people's bodies that a detector confirms."""
        h, w = bgr.shape[:2]
        f = min(1.0, WORK_SIDE / max(h, w))
        rgb = cv2.cvtColor(
            cv2.resize(
                bgr, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA
            )
            if f < 1.0
            else bgr,
            cv2.COLOR_BGR2RGB,
        )
        sh, sw = rgb.shape[:2]
        people = [Person(fb.scaled(f), 1.0, "face", True) for fb in faces]
        view = rgb
        for round_ in range(MAX_PEEL_ROUNDS):
            bar = self.person_min_score if round_ == 0 else self.second_person_min_score
            found = self.persons(view, bar)
            if keypoints and round_ == 0 and found:
                # the main person (the largest face's, else the surest detection): whole body?
                d = next(
                    (d for p in people[:1] for d in found if _same_head(p.box, d.head)), found[0]
                )
                xy, vis = self.keypoints(rgb, d)
                seen = _visible_parts(xy, vis, sw, sh)
                full = all(part in seen for part in BODY_PARTS)
                self._add_detection(people, d, sw, sh, full_body=full, parts=seen)
            new = sum(self._add_detection(people, d, sw, sh) for d in found)
            if not people or (round_ > 0 and not new):
                break
            view = rgb.copy()
            for p in people:
                view[_body_band(p.box, sw, sh)] = 0

        # the segmenter paints cats and cups as people when nobody is there: its regions are
        # only looked at beside someone found already, as candidates for a second person
        bands = [_band(p, sw, sh) for p in people]
        min_area = MIN_REGION_FRACTION * sh * sw
        # the mask is cleared under the known people's bodies, and a region counts only its
        # mask pixels: when fewer than min_area pixels lie outside those bodies, no region can
        # pass whatever the segmenter says, so it is not run
        if people and _outside(bands, sw, sh) >= min_area:
            mask = (self.person_mask(rgb) > MASK_THRESHOLD).astype(np.uint8)
            # crops are checked with the known people blacked out too, so that a region next
            # to the subject does not find the subject again
            view = rgb.copy()
            for band in bands:
                mask[band] = 0
                view[band] = 0
            for x, y, bw, bh in _regions(mask, min_area):
                score = 0.0
                # a tight and a loose crop: a person cut by the region edge needs context (the
                # loose one only when the tight one did not already confirm the region)
                for margin in (0.2, 0.5):
                    if score >= self.region_min_score:
                        break
                    mx, my = int(margin * bw), int(margin * bh)
                    crop = view[
                        max(0, y - my) : min(sh, y + bh + my), max(0, x - mx) : min(sw, x + bw + mx)
                    ]
                    hits = self.persons(crop, self.region_min_score)
                    score = max([score] + [d.score for d in hits])
                if score >= self.region_min_score:
                    people.append(
                        Person(
                            Box(float(x), float(y), float(bw), float(bh)), score, "region", False
                        )
                    )
        return [p.scaled(1 / f) for p in people]

    @staticmethod
    def _add_detection(
        people: list[Person],
        d: PersonDetection,
        sw: int,
        sh: int,
        full_body: bool | None = None,
        parts: tuple[str, ...] = (),
    ) -> int:
        """Attach a detection to the face it belongs to, or add it as a new person (1).
        ``full_body``: decided from keypoints already; else from the full-body circle."""
        full = (
            full_body
            if full_body is not None
            else bool(
                d.head.y >= -0.02 * sh
                and d.hips[1] + d.body_radius <= 1.02 * sh
                and d.hips[0] - 0.5 * d.body_radius >= -0.02 * sw
                and d.hips[0] + 0.5 * d.body_radius <= 1.02 * sw
            )
        )
        ratio = float(2 * d.body_radius / sh)
        for i, p in enumerate(people):
            if _same_head(p.box, d.head):
                if p.full_body is None:
                    people[i] = Person(
                        p.box, p.score, p.source, p.has_face, full, ratio, parts, d.head
                    )
                elif p.head is None:
                    people[i] = dataclasses.replace(p, head=d.head)
                return 0
        people.append(Person(d.head, d.score, "detector", False, full, ratio, parts))
        return 1


def _visible_parts(xy: np.ndarray, vis: np.ndarray, width: int, height: int) -> tuple[str, ...]:
    """BODY_PARTS with at least one keypoint visible and inside the frame (2 % margin)."""
    inside = (
        (xy[:, 0] >= -0.02 * width)
        & (xy[:, 0] <= 1.02 * width)
        & (xy[:, 1] >= -0.02 * height)
        & (xy[:, 1] <= 1.02 * height)
    )
    ok = inside & (vis >= KEYPOINT_MIN_VISIBILITY)
    return tuple(part for part, idx in BODY_PARTS.items() if any(ok[i] for i in idx))


def _upright_body(d: PersonDetection) -> bool:
    """The detector's body fits its head: hips below the head, body circle a few head sizes.

    Measured on real photos: people have their hips 0.7-4.9 head heights below the head box's
    centre and a body circle of 1.2-6.9 head heights (head-and-shoulders shots to waist-up
    portraits); the detector's hits on a cat's face put the hips 8-10 head heights *above*
    the head with a 13-14 head circle. People lying down are not counted by the detector (the
    person mask and the faces still count them)."""
    hx, hy = d.head.center
    size = max(d.head.h, 1e-6)
    dy = (d.hips[1] - hy) / size
    dx = abs(d.hips[0] - hx) / size
    return 0.3 <= dy <= 7.0 and dx <= 2.5 and 0.8 <= d.body_radius / size <= 9.0


def _regions(mask: np.ndarray, min_area: float) -> list[tuple[int, int, int, int]]:
    """Boxes (x, y, w, h) of the mask's regions, merging regions stacked above one another
    (a head and a body the mask split at the neck or collar are one person)."""
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask)
    boxes = [[int(v) for v in s[:5]] for s in stats[1:n] if s[4] >= min_area / 4]
    merged = True
    while merged:
        merged = False
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                a, b = boxes[i], boxes[j]
                overlap = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
                if overlap > 0.5 * min(a[2], b[2]):
                    x0, y0 = min(a[0], b[0]), min(a[1], b[1])
                    x1, y1 = max(a[0] + a[2], b[0] + b[2]), max(a[1] + a[3], b[1] + b[3])
                    boxes[i] = [x0, y0, x1 - x0, y1 - y0, a[4] + b[4]]
                    del boxes[j]
                    merged = True
                    break
            if merged:
                break
    boxes.sort(key=lambda b: -b[4])
    return [(x, y, w, h) for x, y, w, h, area in boxes if area >= min_area][:MAX_REGIONS]


def _body_band(head: Box, width: int, height: int) -> tuple[slice, slice]:
    """The part of the frame a person's own body covers: from a head above the face box (hair,
    a hat) down to the bottom, BODY_BAND_HEAD_WIDTHS head widths either side of its centre."""
    cx, _ = head.center
    half = BODY_BAND_HEAD_WIDTHS * head.w
    x0, x1 = int(max(0, cx - half)), int(min(width, cx + half))
    return slice(int(max(0, head.y - head.h)), height), slice(x0, x1)


def _band(p: Person, width: int, height: int) -> tuple[slice, slice]:
    """The body band that clears the person mask before its regions are looked at: from the
    face box, widened to the detector's head box when the detector found this person too (its
    box is ~2.4x the face box). From the face alone, a small waist-up figure's held-out arm and
    the helmet in her hand were left outside, and the detector took them for a second person
    (0.55-0.57). The detector's own rounds still black out the face's band only: the wider one
    hid the crowd's neighbours from it."""
    rows, cols = _body_band(p.box, width, height)
    if p.head is None:
        return rows, cols
    r2, c2 = _body_band(p.head, width, height)
    return slice(min(rows.start, r2.start), height), slice(
        min(cols.start, c2.start), max(cols.stop, c2.stop)
    )


def _outside(bands: Sequence[tuple[slice, slice]], width: int, height: int) -> int:
    """How many pixels of the frame no body band (``_body_band``: each from its top row down
    to the bottom) covers: per column, the rows above the highest band top over it."""
    top = np.full(width, height, np.int64)
    for rows, cols in bands:
        top[cols] = np.minimum(top[cols], rows.start)
    return int(top.sum())


def _same_head(face: Box, head: Box) -> bool:
    """The detector's head box of the person who has this face. Its box sits lower than a
    face box (measured on the astronaut and Grace Hopper: centred 0.4-0.6 face heights below
    the face's centre, over mouth and chin), so it matches when its centre lies within half a
    face size of the face box."""
    hx, hy = head.center
    return (
        face.x - 0.5 * face.w <= hx <= face.x2 + 0.5 * face.w
        and face.y - 0.5 * face.h <= hy <= face.y2 + 0.5 * face.h
    )
