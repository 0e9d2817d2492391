"""Camera motion from dense optical flow between a sampled frame and the frame right after it.

Flow runs on 160 px wide grey frames (frames.FLOW_WIDTH): shake is a whole-frame displacement of
several pixels at that size, and Farneback there costs about a millisecond. Magnitudes are in
frame widths per second so that the thresholds do not depend on resolution or frame rate.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

STATIC_MAX = 0.02  # < 2 % of the frame width per second: tripod or locked-off
SHAKY_MIN = 0.15  # > 15 %/s of erratic motion: handheld shake or whip pans


@dataclass(frozen=True)
class MotionStats:
    mean_speed: float  # median over pairs of the mean flow magnitude, frame widths / second
    jitter: float  # spread of the global motion vector between pairs, same unit
    label: str  # static | moderate | shaky


def flow_speed(a: np.ndarray, b: np.ndarray, fps: float) -> tuple[float, np.ndarray]:
    flow = cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 2, 9, 2, 5, 1.1, 0)
    w = a.shape[1]
    scale = (fps or 1.0) / w
    mag = float(np.linalg.norm(flow, axis=2).mean()) * scale
    return mag, np.median(flow.reshape(-1, 2), axis=0) * scale


def classify(pairs: list[tuple[np.ndarray, np.ndarray]], fps: float) -> MotionStats:
    if not pairs:
        return MotionStats(0.0, 0.0, "static")
    speeds, globals_ = [], []
    for a, b in pairs:
        s, g = flow_speed(a, b, fps)
        speeds.append(s)
        globals_.append(g)
    speed = float(np.median(speeds))
    # a smooth pan moves the frame the same way every time; shake keeps changing direction
    jitter = float(np.linalg.norm(np.std(np.array(globals_), axis=0))) if len(globals_) > 1 else 0.0
    if speed < STATIC_MAX:
        label = "static"
    elif jitter > SHAKY_MIN or speed > 2 * SHAKY_MIN:
        label = "shaky"
    else:
        label = "moderate"
    return MotionStats(speed, jitter, label)
