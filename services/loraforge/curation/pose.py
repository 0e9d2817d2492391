"""Head pose from 2D landmarks (cv2.solvePnP against a generic 3D face) and angle buckets.

Sign convention, in image terms so that it survives any camera: the 3D model uses camera axes
(x right, y down, z away from the camera) and a face looking straight at the camera has its nose
pointing along -z.
  yaw   > 0: the nose points towards the RIGHT edge of the image; < 0: towards the left edge.
  pitch > 0: the nose points up (camera below the face); < 0: down (camera above).
  roll  > 0: the eye line rises towards the right of the image.
A horizontally mirrored frame therefore negates yaw and roll and keeps pitch, and lands in the
opposite profile bucket. Buckets are named after where the nose points in the image:
``profile_left`` = nose towards the image's left edge.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

# generic adult head in millimetres (nose tip at the origin), iBUG-68 indices
_MODEL_POINTS = np.array(
    [
        (0.0, 0.0, 0.0),  # 30 nose tip
        (0.0, 330.0, 65.0),  # 8 chin
        (-225.0, -170.0, 135.0),  # 36 outer corner of the eye on the image left
        (225.0, -170.0, 135.0),  # 45 outer corner of the eye on the image right
        (-150.0, 150.0, 125.0),  # 48 mouth corner, image left
        (150.0, 150.0, 125.0),  # 54 mouth corner, image right
        (0.0, -50.0, 40.0),  # 27 bridge of the nose between the eyes
    ],
    dtype=np.float64,
)
_LANDMARK_IDS = [30, 8, 36, 45, 48, 54, 27]

BUCKETS = ("frontal", "three_quarter", "profile_left", "profile_right", "above", "below")
# the angle-mix targets group these: both profiles and both vertical views count together
BUCKET_GROUP = {
    "frontal": "frontal",
    "three_quarter": "three_quarter",
    "profile_left": "profile",
    "profile_right": "profile",
    "above": "above_below",
    "below": "above_below",
}
FRONTAL_MAX_YAW = 15.0
PROFILE_MIN_YAW = 45.0
VERTICAL_MIN_PITCH = 20.0


@dataclass(frozen=True)
class HeadPose:
    yaw: float
    pitch: float
    roll: float


def estimate_pose(landmarks: np.ndarray, width: int, height: int) -> HeadPose | None:
    """Pose of one face; a pinhole camera with focal length = image width is close enough."""
    pts = np.asarray(landmarks, np.float64)[_LANDMARK_IDS]
    f = float(width)
    cam = np.array([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1]], np.float64)
    ok, rvec, _ = cv2.solvePnP(_MODEL_POINTS, pts, cam, np.zeros(4), flags=cv2.SOLVEPNP_ITERATIVE)
    if not ok:
        return None
    rot, _ = cv2.Rodrigues(rvec)
    nose = rot @ np.array([0.0, 0.0, -1.0])  # where the face looks, in camera axes
    yaw = math.degrees(math.atan2(nose[0], -nose[2]))
    pitch = math.degrees(math.atan2(-nose[1], math.hypot(nose[0], nose[2])))
    left_eye = np.asarray(landmarks[36:42], np.float64).mean(0)
    right_eye = np.asarray(landmarks[42:48], np.float64).mean(0)
    roll = math.degrees(math.atan2(-(right_eye[1] - left_eye[1]), right_eye[0] - left_eye[0]))
    return HeadPose(yaw, pitch, roll)


def bucket(pose: HeadPose) -> str:
    """Strong yaw wins over pitch: a profile from slightly above is still a profile."""
    if abs(pose.yaw) >= PROFILE_MIN_YAW:
        return "profile_right" if pose.yaw > 0 else "profile_left"
    if abs(pose.pitch) >= VERTICAL_MIN_PITCH:
        return "below" if pose.pitch > 0 else "above"
    if abs(pose.yaw) >= FRONTAL_MAX_YAW:
        return "three_quarter"
    return "frontal"
