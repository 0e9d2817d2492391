"""Burned-in text (subtitles, captions) and logos/watermarks.

Two complementary cues, both on QUALITY_WIDTH grey frames:
* Static overlays: an overlay stays put while the picture under it changes, so its edges are at
  the same pixels in (almost) every sampled frame. That is only meaningful when the rest of the
  frame does change; on a locked-off shot of a still scene everything is static and the cue is
  switched off (we cannot tell a logo from a picture frame on the wall there).
  Static edge blobs in the bottom band that are wide read as text; compact ones anywhere read as
  a logo/watermark.
* Changing subtitles: per frame, a row of >= 5 character-sized MSER regions with similar height
  on a common baseline in the bottom band.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

BOTTOM_BAND = 0.72  # subtitles live below this fraction of the height
PERSIST = 0.9  # edge present in >= 90 % of frames
MIN_SCENE_CHANGE = 0.15  # fraction of pixels whose luma changes over the clip
TEXT_FRAME_FRACTION = 0.5
MIN_CHARS = 8


@dataclass(frozen=True)
class OverlayStats:
    static_overlay_fraction: float  # share of the frame covered by static-overlay blobs
    text_frames_fraction: float  # share of frames with a subtitle-like text row
    burned_in_text: bool
    logo_or_watermark: bool
    scene_change: float  # the gate for the static cue


def _text_row(gray: np.ndarray) -> bool:
    h, w = gray.shape
    band = gray[int(h * BOTTOM_BAND) :]
    mser = cv2.MSER_create(delta=5, min_area=12, max_area=int(0.02 * band.size) + 20)
    _, boxes = mser.detectRegions(band)
    chars = [
        (x, y, bw, bh)
        for x, y, bw, bh in (boxes if len(boxes) else [])
        if 6 <= bh <= 0.6 * band.shape[0] and 0.1 <= bw / bh <= 1.6
    ]
    if len(chars) < MIN_CHARS:
        return False
    for x, y, bw, bh in chars:
        base = y + bh
        row = [c for c in chars if abs(c[1] + c[3] - base) <= 0.15 * bh and 0.75 < c[3] / bh < 1.33]
        # MSER reports nested regions; one per left edge is one character
        lefts = sorted({c[0] // 3: c for c in row}.values())
        if len(lefts) < MIN_CHARS:
            continue
        heights = np.array([c[3] for c in lefts], np.float32)
        gaps = np.diff([c[0] for c in lefts])
        span = lefts[-1][0] + lefts[-1][2] - lefts[0][0]
        # glyphs of one line: same height, evenly packed (no gap wider than 3 glyph heights)
        if (
            heights.std() / heights.mean() < 0.2
            and span > 0.2 * w
            and gaps.max() < 3 * heights.mean()
        ):
            return True
    return False


def measure_overlays(grays: list[np.ndarray]) -> OverlayStats:
    if not grays:
        return OverlayStats(0.0, 0.0, False, False, 0.0)
    text_frac = float(np.mean([_text_row(g) for g in grays]))
    static_frac, text_static, logo, change = 0.0, False, False, 0.0
    if len(grays) >= 3:
        stack = np.stack([g.astype(np.float32) for g in grays])
        change = float((stack.std(0) > 12).mean())
        if change >= MIN_SCENE_CHANGE:
            edges = np.stack([cv2.Canny(g, 80, 160) > 0 for g in grays])
            static = (edges.mean(0) >= PERSIST).astype(np.uint8)
            # close horizontally so that the letters and words of one caption form one blob
            static = cv2.dilate(static, np.ones((5, 5), np.uint8))
            static = cv2.morphologyEx(static, cv2.MORPH_CLOSE, np.ones((1, 31), np.uint8))
            n, _, stats, _ = cv2.connectedComponentsWithStats(static, connectivity=8)
            h, w = static.shape
            covered = 0
            for i in range(1, n):
                x, y, bw, bh, area = stats[i]
                if area < 0.0015 * h * w:
                    continue
                if bh > 0.6 * h or bw > 0.8 * w:
                    continue  # a seam or horizon line spanning the frame, not an overlay
                covered += area
                if y >= h * (BOTTOM_BAND - 0.1) and bw >= 0.15 * w and bw > 2 * bh:
                    text_static = True
                else:
                    logo = True
            static_frac = covered / float(h * w)
    burned = text_static or text_frac >= TEXT_FRAME_FRACTION
    return OverlayStats(static_frac, text_frac, burned, logo, change)
