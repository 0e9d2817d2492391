"""Footage of one person who stands, walks, runs or jumps, built from real photos.

The person is the astronaut (skimage), cut out with MediaPipe's person mask (people.py) and
composited over a wide street-and-temple background (scikit-learn's china.jpg, then skimage's
coffee and rocket photos for more width). Motion is a world position over time: the camera may
pan (a tracking shot) while the person moves, so what the action reads must be the person's
motion against the background, not on screen. Sizes: the figure is FIG_H px high (waist-up;
her stature, from the torso, is ~1.95 FIG_H), frames are 480x360.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import cv2
import numpy as np
import skimage.data
from sklearn.datasets import load_sample_image

W, H = 480, 360
FIG_H = 220
FIG_Y = H - FIG_H - 5  # her hips (just under the photo's edge) in the frame


@lru_cache(maxsize=1)
def figure() -> tuple[np.ndarray, np.ndarray]:
    """(BGR, alpha 0..1) of the astronaut at FIG_H px high."""
    from loraforge.curation.people import PeopleDetector

    rgb = skimage.data.astronaut()
    alpha = PeopleDetector().person_mask(rgb)
    alpha = np.clip((alpha - 0.3) / 0.4, 0, 1).astype(np.float32)
    s = FIG_H / rgb.shape[0]
    size = (round(rgb.shape[1] * s), FIG_H)
    return (
        cv2.resize(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), size, interpolation=cv2.INTER_AREA),
        cv2.resize(alpha, size, interpolation=cv2.INTER_AREA),
    )


@lru_cache(maxsize=1)
def world() -> np.ndarray:
    """A wide textured background, H px high."""
    parts = [
        cv2.cvtColor(load_sample_image("china.jpg"), cv2.COLOR_RGB2BGR),
        cv2.cvtColor(skimage.data.coffee(), cv2.COLOR_RGB2BGR),
        cv2.cvtColor(skimage.data.rocket(), cv2.COLOR_RGB2BGR),
        cv2.cvtColor(load_sample_image("china.jpg"), cv2.COLOR_RGB2BGR)[:, ::-1],
        cv2.cvtColor(load_sample_image("flower.jpg"), cv2.COLOR_RGB2BGR),
        cv2.cvtColor(skimage.data.chelsea(), cv2.COLOR_RGB2BGR),
    ]
    return np.hstack(
        [
            cv2.resize(p, (round(p.shape[1] * H / p.shape[0]), H), interpolation=cv2.INTER_AREA)
            for p in parts
        ]
    )


def scene(fig_x: float, fig_y: float, cam_x: float) -> np.ndarray:
    """The frame of a camera whose left edge is at world x=cam_x, the figure's top-left at
    world (fig_x, fig_y)."""
    bg = world()[:, int(round(cam_x)) : int(round(cam_x)) + W].astype(np.float32)
    assert bg.shape[1] == W, f"the camera left the world (x={cam_x:.0f}); shorten the clip"
    fig, alpha = figure()
    x, y = int(round(fig_x - cam_x)), int(round(fig_y))
    fh, fw = fig.shape[:2]
    x0, y0, x1, y1 = max(0, x), max(0, y), min(W, x + fw), min(H, y + fh)
    if x1 > x0 and y1 > y0:
        a = alpha[y0 - y : y1 - y, x0 - x : x1 - x, None]
        bg[y0:y1, x0:x1] = a * fig[y0 - y : y1 - y, x0 - x : x1 - x] + (1 - a) * bg[y0:y1, x0:x1]
    return bg.astype(np.uint8)


STATURE = 1.95 * FIG_H  # px: torso 0.57 of the astronaut photo's height x 3.4


def moving(speed_bh: float, cam_follow: float, fps: float) -> Callable[[int], np.ndarray]:
    """A person moving at speed_bh body heights/s; the camera pans at cam_follow of that speed."""
    v = speed_bh * STATURE

    def frame(i: int) -> np.ndarray:
        t = i / fps
        return scene(60 + v * t, FIG_Y, v * cam_follow * t)

    return frame


def standing_panned(pan_px_s: float, fps: float, x: float = 300) -> Callable[[int], np.ndarray]:
    """A person standing still at world x while the camera pans past (they slide across the
    screen)."""

    def frame(i: int) -> np.ndarray:
        return scene(x, FIG_Y, pan_px_s * i / fps)

    return frame


def jumping(fps: float, period_s: float = 1.0, lift_bh: float = 0.2) -> Callable[[int], np.ndarray]:
    """A person jumping on the spot: hops of lift_bh body heights, one per period (0.4 s in the
    air)."""

    def frame(i: int) -> np.ndarray:
        ph = (i / fps) % period_s
        air = 0.4
        up = 4 * lift_bh * STATURE * (ph / air) * (1 - ph / air) if ph < air else 0.0
        return scene(160, FIG_Y - up + 0.0, 0)

    return frame
