"""Body keypoints over a clip and the action they show: walking, running, jumping, standing,
sitting, gesturing.

Keypoints are BlazePose's 33 (MediaPipe's pose landmark model, run by ``people.PeopleDetector``)
on the main person of each sampled frame, tracked by nearest hips. The action is named from how
those keypoints move over the clip, in units of the person's own size so that it holds at any
distance from the camera:

- ground speed: hip translation against the background (the camera's own pan, measured by
  optical flow on the background with the person's box left out, is subtracted), in body heights
  per second. People walk at 1.0-1.6 m/s and run from ~2.5 m/s: for a 1.75 m adult that is
  0.6-0.9 and >= 1.4 body heights/s.
- vertical hip motion: a jump lifts the hips well above where they stand (0.1-0.3 of the body
  height for a standing jump); a gait's own bounce is 0.02-0.06.
- knee angle (hip-knee-ankle) and thigh slope: a seated person has the knee bent to ~90-120
  degrees with the thigh near horizontal; a standing one ~165-180 degrees.
- wrist motion against the shoulders (normalised by the torso): arms that move while the body
  stays put are gesturing.

Body height comes from the keypoints (nose to ankles, x 1.1 for the top of the head) when the
feet are seen, else from the torso (shoulders to hips, x 3.4: stature is ~3.4 torso lengths for
adults, e.g. 1.75 m against ~0.52 m). Which cues are robust: moving vs still and sitting vs
standing rest on large, directly measured differences; walking vs running rests on the speed
cut-off alone (a sprinter filmed head-on by a tracking camera reads as standing: motion towards
the camera changes the scale, not the position); jumping needs a sample at the top of the jump.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import cv2
import numpy as np

from loraforge.curation.frames import Frame
from loraforge.curation.people import (
    KEYPOINT_MIN_VISIBILITY,
    PERSON_MIN_SCORE,
    WORK_SIDE,
    PeopleDetector,
)

ACTIONS = ("walking", "running", "jumping", "standing", "sitting", "gesturing")

# BlazePose indices
NOSE, L_SHOULDER, R_SHOULDER, L_ELBOW, R_ELBOW, L_WRIST, R_WRIST = 0, 11, 12, 13, 14, 15, 16
L_HIP, R_HIP, L_KNEE, R_KNEE, L_ANKLE, R_ANKLE = 23, 24, 25, 26, 27, 28
KEYPOINT_NAMES = (
    "nose",
    "left_eye_inner",
    "left_eye",
    "left_eye_outer",
    "right_eye_inner",
    "right_eye",
    "right_eye_outer",
    "left_ear",
    "right_ear",
    "mouth_left",
    "mouth_right",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_pinky",
    "right_pinky",
    "left_index",
    "right_index",
    "left_thumb",
    "right_thumb",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
    "left_heel",
    "right_heel",
    "left_foot_index",
    "right_foot_index",
)

STATURE_PER_TORSO = 3.4  # adult stature / shoulder-to-hip length (anthropometric tables)
SHOULDERS_PER_STATURE = 0.23  # biacromial breadth / stature, adults (~40 cm / 175 cm)
HEAD_TOP_FACTOR = 1.1  # nose-to-ankle span x this = stature (nose ~0.9 of the way up)
MIN_LIMB_STATURE = 0.12  # a thigh or shin shorter than this share of stature is not a real leg
# ground speed in body heights / s: a slow walk (0.5 m/s = 0.29 BH/s for 1.75 m) still moves;
# a person shifting their weight or the tracker's jitter stays under ~0.1
MOVING_MIN_SPEED = 0.25
# a jog starts at ~2.3-2.5 m/s (1.3-1.4 BH/s); a brisk walk tops out at ~2 m/s (1.15 BH/s)
RUNNING_MIN_SPEED = 1.3
# a hip lift above the clip's median height: a standing jump raises the hips by 0.14-0.3 of
# stature (25-50 cm); a running gait's bounce stays within ~0.06 (vertical oscillation 6-10 cm),
# and keypoint jitter under a fast tracking pan read up to 0.10 on the composited runner
JUMP_MIN_LIFT = 0.14
# seated: knee angle under this (a seated knee is ~90-120 deg, a standing one 165-180) and the
# thigh within this slope of horizontal (|dy| / thigh length: sitting ~0-0.5, a deep lunge or a
# stride's bent knee keeps the thigh steep, > 0.7)
SITTING_MAX_KNEE_DEG = 135.0
SITTING_MAX_THIGH_SLOPE = 0.6
# wrist motion against the shoulder centre, std over the clip in torso lengths: arms at rest
# or a slight sway stay under ~0.05; talking with the hands or waving moves them 0.1-0.5
GESTURE_MIN_WRIST_MOTION = 0.10
# photos have no motion: a raised hand (wrist above the shoulder line) is the gesture cue
# the background flow is measured on this many corner points at most, and needs this many
MAX_FLOW_POINTS = 200
MIN_FLOW_POINTS = 12
FB_MAX_ERROR = 1.0  # px: a point tracked forward and back lands this close to its start


@dataclass(frozen=True)
class BodyFrame:
    """The main person's 33 keypoints in one frame, in that frame's pixels."""

    index: int  # frame number in the clip
    time_s: float
    score: float  # the person detector's score
    xy: np.ndarray  # (33, 2)
    visibility: np.ndarray  # (33,)
    width: int = 0  # the frame's size: a point is seen only inside it (0: not checked)
    height: int = 0

    def seen(self, i: int) -> bool:
        """Visible (the model's own probability) and inside the frame (2 % margin): the model
        also places points it cannot see, e.g. the knees of a waist-up shot below the frame."""
        if self.visibility[i] < KEYPOINT_MIN_VISIBILITY:
            return False
        if self.width and self.height:
            x, y = self.xy[i]
            return bool(
                -0.02 * self.width <= x <= 1.02 * self.width
                and -0.02 * self.height <= y <= 1.02 * self.height
            )
        return True

    def mid(self, a: int, b: int) -> np.ndarray | None:
        """Midpoint of a left/right pair, or the one side seen; None when neither is."""
        pts = [self.xy[i] for i in (a, b) if self.seen(i)]
        return np.mean(pts, axis=0) if pts else None

    def box(self, grow: float = 0.4) -> tuple[float, float, float, float]:
        """x0, y0, x1, y1 of the visible keypoints, grown by ``grow`` of its size each side: the
        joints' hull is smaller than the person (hair, clothes, a helmet held at the hip; 15 %
        left the astronaut's helmet outside, and its corners, moving with her, outvoted a
        low-texture background in the camera's measure)."""
        pts = self.xy[[i for i in range(len(self.xy)) if self.seen(i)]]
        pts = pts if len(pts) else self.xy
        x0, y0 = pts.min(0)
        x1, y1 = pts.max(0)
        mx, my = grow * (x1 - x0) + 4, grow * (y1 - y0) + 4
        return float(x0 - mx), float(y0 - my), float(x1 + mx), float(y1 + my)

    def as_dict(self, width: int, height: int) -> dict[str, Any]:
        """JSON evidence: keypoints as fractions of the frame, with their visibility."""
        return {
            "frame": self.index,
            "time_s": round(self.time_s, 3),
            "score": round(self.score, 3),
            "keypoints": {
                name: [round(float(x) / width, 4), round(float(y) / height, 4), round(float(v), 3)]
                for name, (x, y), v in zip(KEYPOINT_NAMES, self.xy, self.visibility, strict=True)
            },
        }


def _angle(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> float:
    """Angle at b, degrees."""
    u, v = a - b, c - b
    cos = float(np.dot(u, v) / max(np.linalg.norm(u) * np.linalg.norm(v), 1e-6))
    return math.degrees(math.acos(max(-1.0, min(1.0, cos))))


def track_body(frames: Sequence[Frame], people: PeopleDetector) -> list[BodyFrame | None]:
    """Keypoints of the main person in each frame: the surest detection in the first frame
    that has one, then in each frame the detection nearest the previous hips (a second person
    crossing the shot does not take over the track)."""
    out: list[BodyFrame | None] = []
    last_hips: np.ndarray | None = None
    for fr in frames:
        h, w = fr.image.shape[:2]
        f = min(1.0, WORK_SIDE / max(h, w))
        small = (
            cv2.resize(
                fr.image, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA
            )
            if f < 1.0
            else fr.image
        )
        rgb = cv2.cvtColor(small, cv2.COLOR_BGR2RGB)
        found = people.persons(rgb, PERSON_MIN_SCORE)
        if not found:
            out.append(None)
            continue
        if last_hips is None:
            d = found[0]  # sorted by score
        else:
            d = min(found, key=lambda d: float(np.hypot(*(np.array(d.hips) / f - last_hips))))
        xy, vis = people.keypoints(rgb, d)
        body = BodyFrame(fr.index, fr.time_s, d.score, xy / f, vis, w, h)
        hips = body.mid(L_HIP, R_HIP)
        last_hips = hips if hips is not None else np.array(d.hips) / f
        out.append(body)
    return out


def background_shift(
    prev_gray: np.ndarray,
    gray: np.ndarray,
    exclude: tuple[float, float, float, float] | None,
    prior: np.ndarray | None = None,
) -> np.ndarray | None:
    """The camera's translation between two frames (pixels): the median motion of corner points
    outside the person's box that track forward and back to where they started (within
    FB_MAX_ERROR px). Frames analysed 1/6 s apart under a fast pan move 50-150 px, more than
    pyramidal LK finds alone, so it starts from guesses and keeps the one most points confirm:
    phase correlation of the frames with the person's box filled flat, the previous pair's
    shift (``prior``: a pan is smooth) and no motion. None when the background has too little
    texture to tell."""
    mask = np.full(gray.shape, 255, np.uint8)
    if exclude is not None:
        x0, y0, x1, y1 = (int(round(v)) for v in exclude)
        mask[max(0, y0) : max(0, y1), max(0, x0) : max(0, x1)] = 0
    pts = cv2.goodFeaturesToTrack(prev_gray, MAX_FLOW_POINTS, 0.01, 8, mask=mask)
    if pts is None or len(pts) < MIN_FLOW_POINTS:
        return None
    a, b = prev_gray.astype(np.float32), gray.astype(np.float32)
    if exclude is not None:
        a = np.where(mask > 0, a, a.mean())
        b = np.where(mask > 0, b, b.mean())
    (gx, gy), _ = cv2.phaseCorrelate(a, b, cv2.createHanningWindow(a.shape[::-1], cv2.CV_32F))
    guesses = [np.array([gx, gy], np.float32), np.zeros(2, np.float32)]
    if prior is not None:
        guesses.insert(1, np.asarray(prior, np.float32))
    best: tuple[int, np.ndarray] | None = None
    for g in guesses:
        start = (pts + g).astype(np.float32)
        nxt, st, _ = cv2.calcOpticalFlowPyrLK(
            prev_gray,
            gray,
            pts,
            start,
            winSize=(21, 21),
            maxLevel=3,
            flags=cv2.OPTFLOW_USE_INITIAL_FLOW,
        )
        back, st2, _ = cv2.calcOpticalFlowPyrLK(
            gray,
            prev_gray,
            nxt,
            (nxt - g).astype(np.float32),
            winSize=(21, 21),
            maxLevel=3,
            flags=cv2.OPTFLOW_USE_INITIAL_FLOW,
        )
        ok = (
            (st.ravel() == 1)
            & (st2.ravel() == 1)
            & (np.linalg.norm((back - pts).reshape(-1, 2), axis=1) < FB_MAX_ERROR)
        )
        if ok.sum() >= MIN_FLOW_POINTS and (best is None or ok.sum() > best[0]):
            best = (int(ok.sum()), np.median((nxt - pts).reshape(-1, 2)[ok], axis=0))
    return None if best is None else best[1]


@dataclass
class ActionFeatures:
    """What the action is named from; also written as evidence."""

    frames_with_body: int = 0
    body_height_px: float = 0.0  # median stature in pixels
    stature_from: str = "torso"  # ankles | torso | shoulders | mixed
    ground_speed: float | None = None  # body heights / s against the background; None: photo
    camera_compensated: bool = False  # the background's motion was measured and removed
    hip_lift: float | None = None  # rise above the median (second highest sample), body heights
    hip_bounce: float | None = None  # std of the hips' vertical position, body heights
    knee_angle: float | None = None  # median of the straighter knee, degrees
    thigh_slope: float | None = None  # median |dy| / thigh length
    wrist_motion: float | None = None  # std of wrist positions against the shoulders, torso lengths
    wrist_raised_fraction: float = 0.0  # frames with a wrist above the shoulder line
    stride: float | None = None  # median ankle separation, body heights
    tracked: str = "hips"  # the point whose motion is measured: hips | shoulders

    def as_dict(self) -> dict[str, Any]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


@dataclass
class ActionResult:
    label: str | None  # one of ACTIONS; None: no body seen
    features: ActionFeatures
    why: str  # the rule that named it, with its numbers
    bodies: list[BodyFrame | None] = field(default_factory=list)


def _stature(b: BodyFrame) -> tuple[float, str] | None:
    nose, ankles = (b.xy[NOSE] if b.seen(NOSE) else None), b.mid(L_ANKLE, R_ANKLE)
    if nose is not None and ankles is not None and ankles[1] > nose[1]:
        return float(ankles[1] - nose[1]) * HEAD_TOP_FACTOR, "ankles"
    sh, hp = b.mid(L_SHOULDER, R_SHOULDER), b.mid(L_HIP, R_HIP)
    if sh is not None and hp is not None:
        return float(np.linalg.norm(hp - sh)) * STATURE_PER_TORSO, "torso"
    if b.seen(L_SHOULDER) and b.seen(R_SHOULDER):
        # a shot cut above the hips: shoulder breadth, the least reliable (a body turned
        # sideways shows narrow shoulders and reads small, hence fast)
        return float(
            np.linalg.norm(b.xy[L_SHOULDER] - b.xy[R_SHOULDER])
        ) / SHOULDERS_PER_STATURE, "shoulders"
    return None


def _knee(b: BodyFrame, stature: float) -> tuple[float, float] | None:
    """(knee angle, thigh slope) of the leg with the straighter knee (a standing person may bend
    one knee; a seated one bends both), from legs seen whole: hip, knee and ankle. The model
    also places a knee it cannot see with a confident visibility (measured: a waist-up figure
    over a background got knees "seen" under it), and a knee alone says nothing of the thigh
    the model imagined, so a leg without its ankle is not read: a seated person whose shins
    a table hides is not called seated."""
    best = None
    for hip, knee, ankle in ((L_HIP, L_KNEE, L_ANKLE), (R_HIP, R_KNEE, R_ANKLE)):
        if not (b.seen(hip) and b.seen(knee) and b.seen(ankle)):
            continue
        thigh, shin = b.xy[knee] - b.xy[hip], b.xy[ankle] - b.xy[knee]
        # thigh and shin are each ~0.24 of stature; the legs the model invents for a figure cut
        # at the waist are folded into the few pixels left under it (measured 0.02-0.1)
        if min(np.linalg.norm(thigh), np.linalg.norm(shin)) < MIN_LIMB_STATURE * stature:
            continue
        slope = abs(float(thigh[1])) / max(float(np.linalg.norm(thigh)), 1e-6)
        ang = _angle(b.xy[hip], b.xy[knee], b.xy[ankle])
        if best is None or ang > best[0]:
            best = (ang, slope)
    return best


def action_features(
    bodies: Sequence[BodyFrame | None],
    grays: Sequence[np.ndarray] | None = None,
) -> ActionFeatures:
    """Features over the frames where the body was found. ``grays``: each frame in grey (same
    size as the keypoints' frames) to measure the camera's pan; None for a photo."""
    seen = [(i, b) for i, b in enumerate(bodies) if b is not None]
    feats = ActionFeatures(frames_with_body=len(seen))
    if not seen:
        return feats
    statures = [s for _, b in seen if (s := _stature(b)) is not None]
    if not statures:
        return feats
    # the best-founded estimate seen in at least half the frames: ankles, torso, shoulders
    for how in ("ankles", "torso", "shoulders"):
        these = [s for s, h in statures if h == how]
        if len(these) * 2 >= len(statures):
            break
    else:
        how, these = "mixed", [s for s, _ in statures]
    height = float(np.median(these))
    feats.body_height_px = height
    feats.stature_from = how

    knees = [kn for _, b in seen if (kn := _knee(b, height)) is not None]
    if len(knees) * 2 >= len(seen):  # legs seen whole in at least half the frames
        feats.knee_angle = float(np.median([k[0] for k in knees]))
        feats.thigh_slope = float(np.median([k[1] for k in knees]))
    strides = [
        abs(float(b.xy[L_ANKLE, 0] - b.xy[R_ANKLE, 0])) / height
        for _, b in seen
        if b.seen(L_ANKLE) and b.seen(R_ANKLE)
    ]
    if strides:
        feats.stride = float(np.median(strides))
    raised = [
        any(
            b.seen(wr) and b.seen(sh) and b.xy[wr, 1] < b.xy[sh, 1]
            for wr, sh in ((L_WRIST, L_SHOULDER), (R_WRIST, R_SHOULDER))
        )
        for _, b in seen
    ]
    feats.wrist_raised_fraction = float(np.mean(raised))

    # wrists against the shoulder centre, in torso lengths
    torso = height / STATURE_PER_TORSO
    rel: dict[int, list[np.ndarray]] = {L_WRIST: [], R_WRIST: []}
    for _, b in seen:
        sh = b.mid(L_SHOULDER, R_SHOULDER)
        for wr in rel:
            if sh is not None and b.seen(wr):
                rel[wr].append((b.xy[wr] - sh) / torso)
    motions = [
        float(np.sqrt(np.var(np.array(v), axis=0).sum())) for v in rel.values() if len(v) >= 3
    ]
    feats.wrist_motion = max(motions) if motions else None

    if grays is None or len(seen) < 2:
        return feats
    # hip positions in the background's frame of reference: the camera's cumulative pan added back
    offset = np.zeros(2)
    offsets = [np.zeros(2)]
    compensated = True
    last: np.ndarray | None = None
    for k in range(1, len(grays)):
        prev = bodies[k - 1] or bodies[k]
        shift = background_shift(
            grays[k - 1], grays[k], prev.box() if prev is not None else None, last
        )
        if shift is None:
            # too little background between the frames (the person fills it, or a flat wall):
            # a pan is smooth, so the previous pair's shift stands in; without one, unknown
            compensated = compensated and last is not None
            shift = last if last is not None else np.zeros(2)
        last = shift
        offset = offset + shift  # a still point of the world moves by the background's shift
        offsets.append(offset.copy())
    feats.camera_compensated = compensated
    # the body's position: the hips' centre, or the shoulders' in a shot cut above the hips
    # (the same point in every frame, so that the track does not jump between the two)
    hips_seen = sum(b.mid(L_HIP, R_HIP) is not None for _, b in seen)
    ref = (L_HIP, R_HIP) if hips_seen * 2 >= len(seen) else (L_SHOULDER, R_SHOULDER)
    feats.tracked = "hips" if ref[0] == L_HIP else "shoulders"
    track = [(b.time_s, at - offsets[i]) for i, b in seen if (at := b.mid(*ref)) is not None]
    if len(track) >= 2:
        t = np.array([p[0] for p in track])
        xy = np.array([p[1] for p in track]) / height
        if t[-1] > t[0]:
            # robust speed: the slope of a straight-line fit through positions over time, per axis
            # (one mis-tracked frame moves it less than a sum of frame-to-frame steps would)
            vx = np.polyfit(t, xy[:, 0], 1)[0]
            vy = np.polyfit(t, xy[:, 1], 1)[0]
            feats.ground_speed = float(np.hypot(vx, vy))
            ys = xy[:, 1] - np.polyval(np.polyfit(t, xy[:, 1], 1), t)  # level ground or a slope
            # the top of the body's path: the second highest sample (a jump is ~0.4 s in the air,
            # 2-3 samples at 6/s; one glitched frame is not a jump); y grows downwards
            top = np.sort(ys)[1] if len(ys) >= 4 else ys.min()
            feats.hip_lift = float(max(0.0, np.median(ys) - top))
            feats.hip_bounce = float(np.std(ys))
    return feats


def name_action(f: ActionFeatures) -> tuple[str | None, str]:
    """The action and the rule that named it. Order: sitting (a posture that excludes the
    rest), jumping, running, walking (motion of the whole body), gesturing (arms only),
    standing."""
    if f.frames_with_body == 0 or f.body_height_px <= 0:
        return None, "no body keypoints found"
    if (
        f.knee_angle is not None
        and f.thigh_slope is not None
        and f.knee_angle <= SITTING_MAX_KNEE_DEG
        and f.thigh_slope <= SITTING_MAX_THIGH_SLOPE
    ):
        return "sitting", (
            f"knee {f.knee_angle:.0f} deg (<= {SITTING_MAX_KNEE_DEG:.0f}), thigh slope "
            f"{f.thigh_slope:.2f} (<= {SITTING_MAX_THIGH_SLOPE})"
        )
    if f.hip_lift is not None and f.hip_lift >= JUMP_MIN_LIFT:
        return (
            "jumping",
            f"hips rise {f.hip_lift:.2f} body heights above their level (>= {JUMP_MIN_LIFT})",
        )
    if f.ground_speed is not None and f.ground_speed >= RUNNING_MIN_SPEED:
        return "running", f"moves {f.ground_speed:.2f} body heights/s (>= {RUNNING_MIN_SPEED})"
    if f.ground_speed is not None and f.ground_speed >= MOVING_MIN_SPEED:
        return "walking", f"moves {f.ground_speed:.2f} body heights/s (>= {MOVING_MIN_SPEED})"
    if f.ground_speed is None:  # a photo: posture only
        if f.wrist_raised_fraction > 0.5:
            return "gesturing", "a hand raised above the shoulder line"
        return "standing", "upright, no hand raised (a photo: no motion to measure)"
    if f.wrist_motion is not None and f.wrist_motion >= GESTURE_MIN_WRIST_MOTION:
        return "gesturing", (
            f"body still ({f.ground_speed:.2f} body heights/s), wrists move "
            f"{f.wrist_motion:.2f} torso lengths (>= {GESTURE_MIN_WRIST_MOTION})"
        )
    return "standing", f"body still ({f.ground_speed:.2f} body heights/s), arms quiet"


def analyse_action(
    frames: Sequence[Frame], people: PeopleDetector, video: bool = True
) -> ActionResult:
    """Keypoints on every frame, the features and the action of one clip (or photo)."""
    bodies = track_body(frames, people)
    grays = None
    if video and len(frames) > 1:
        grays = [cv2.cvtColor(fr.image, cv2.COLOR_BGR2GRAY) for fr in frames]
    feats = action_features(bodies, grays)
    label, why = name_action(feats)
    return ActionResult(label, feats, why, bodies)
