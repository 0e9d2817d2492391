"""Motion from dense optical flow between a sampled frame and the frame right after it: how
much the camera moves (static, moderate, shaky) and which way the picture moves (direction).

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


def dense_flow(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Farneback flow from a to b; computed once per pair and shared by classify and direction."""
    return cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 2, 9, 2, 5, 1.1, 0)


def _magnitude(flow: np.ndarray) -> np.ndarray:
    """Length of each flow vector, float32: the same float32 operations as
    ``np.linalg.norm(flow, axis=2)`` (u*u + v*v, then the square root), at a tenth of its cost
    (norm's reduction over an axis of two is slow)."""
    u, v = flow[..., 0], flow[..., 1]
    mag: np.ndarray = np.sqrt(u * u + v * v)
    return mag


def flow_speed(
    a: np.ndarray, b: np.ndarray, fps: float, flow: np.ndarray | None = None
) -> tuple[float, np.ndarray]:
    flow = dense_flow(a, b) if flow is None else flow
    w = a.shape[1]
    scale = (fps or 1.0) / w
    mag = float(_magnitude(flow).mean()) * scale
    return mag, np.median(flow.reshape(-1, 2), axis=0) * scale


def classify(
    pairs: list[tuple[np.ndarray, np.ndarray]], fps: float, flows: list[np.ndarray] | None = None
) -> MotionStats:
    """``flows``: dense_flow of each pair, when the caller has them already."""
    if not pairs:
        return MotionStats(0.0, 0.0, "static")
    speeds, globals_ = [], []
    for i, (a, b) in enumerate(pairs):
        s, g = flow_speed(a, b, fps, None if flows is None else flows[i])
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


# The direction of a clip's motion, named after how the picture's content moves on screen
# (a camera panning right makes the content move left; a subject spinning clockwise seen from
# the camera is rotate_cw): one label a clip, compared across an effect dataset.
DIRECTIONS = (
    "moves_left",
    "moves_right",
    "moves_up",
    "moves_down",
    "zoom_in",
    "zoom_out",
    "rotate_cw",
    "rotate_ccw",
)
# flow below this (pixels a frame at FLOW_WIDTH) is noise and encoding wobble, not motion
_MOVING_PX = 0.25
# a clip needs this share of moving pixels to have a direction at all
_MIN_MOVING_SHARE = 0.02


@dataclass(frozen=True)
class Direction:
    label: str | None  # one of DIRECTIONS; None: no dominant motion
    rate: float  # speed of the dominant component, frame widths / second
    components: dict[str, float]  # signed: dx, dy (content motion), zoom, rotation; same unit


def _pair_components(flow: np.ndarray) -> tuple[float, float, float, float] | None:
    """Least-squares similarity motion of the moving pixels, about their centroid:
    u = a*x - b*y + tx, v = b*x + a*y + ty (image axes, y down). Returns (tx, ty, a*R, b*R) in
    pixels a frame, R the RMS distance of the moving pixels from their centroid, so that a zoom
    or a rotation is measured by how far it moves the pixels, like a translation. b > 0 is a
    clockwise turn on screen (y points down)."""
    _h, _w = flow.shape[:2]
    moving = _magnitude(flow) > _MOVING_PX
    if moving.mean() < _MIN_MOVING_SHARE:
        return None
    ys, xs = np.nonzero(moving)
    u, v = flow[ys, xs, 0].astype(np.float64), flow[ys, xs, 1].astype(np.float64)
    x = xs - xs.mean()
    y = ys - ys.mean()
    r2 = float((x * x + y * y).sum())
    if r2 <= 0:
        return float(u.mean()), float(v.mean()), 0.0, 0.0
    # with centred coordinates the normal equations separate: t is the mean flow, and a, b
    # are the flow's projections on the radial and tangential fields
    a = float((x * u + y * v).sum() / r2)
    b = float((x * v - y * u).sum() / r2)
    radius = float(np.sqrt(r2 / len(x)))
    return float(u.mean()), float(v.mean()), a * radius, b * radius


def direction(
    pairs: list[tuple[np.ndarray, np.ndarray]], fps: float, flows: list[np.ndarray] | None = None
) -> Direction:
    """The clip's dominant motion: the largest of the median pan, tilt, zoom and rotation.
    ``flows``: dense_flow of each pair, when the caller has them already."""
    comps = []
    width = 1
    for i, (a, b) in enumerate(pairs):
        width = a.shape[1]
        flow = dense_flow(a, b) if flows is None else flows[i]
        c = _pair_components(flow)
        if c is not None:
            comps.append(c)
    # a direction has to hold in most pairs: a clip moving only in one pair out of eight has none
    if not comps or len(comps) * 2 < len(pairs):
        return Direction(None, 0.0, {})
    scale = (fps or 1.0) / width
    dx, dy, zoom, rot = (float(np.median([c[i] for c in comps])) * scale for i in range(4))
    named = {"dx": dx, "dy": dy, "zoom": zoom, "rotation": rot}
    key = max(named, key=lambda k: abs(named[k]))
    rate = abs(named[key])
    if rate < STATIC_MAX:
        return Direction(None, rate, {k: round(v, 4) for k, v in named.items()})
    label = {
        "dx": ("moves_right", "moves_left"),
        "dy": ("moves_down", "moves_up"),
        "zoom": ("zoom_in", "zoom_out"),
        "rotation": ("rotate_cw", "rotate_ccw"),
    }[key][0 if named[key] > 0 else 1]
    return Direction(label, round(rate, 4), {k: round(v, 4) for k, v in named.items()})
