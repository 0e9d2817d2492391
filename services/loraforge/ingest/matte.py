"""Black mattes cut away: a film letterboxed into a 16:9 or 4:3 frame, a 4:3 programme
pillarboxed into 16:9, a windowboxed picture.

A 2.39:1 film in a 1920x1080 frame carries 140 black rows above and below the picture. Kept,
they are a quarter of every training frame (the LoRA learns black bands; curation refuses such
clips as `letterbox`), so each clip is cut to the picture inside its mattes, the way a
transcoder's auto-crop does.

Where the bars are: ffmpeg's ``cropdetect`` on every full-size frame of the analysis decode
gives the exact rows and columns where the picture starts (decode.py), at a strict threshold
(black bars) and a loose one (dark-grey bars: a film scan, a lifted black). What makes a bar a matte
and not a dark part of the picture (a night sky, the dark room of a low-key close-up):

- it is flat: in the small analysis frame its rows (columns) are dark and uniform, where the
  picture's darkness has grain, gradients and things in it (``flat_dark_runs``);
- it holds on every frame of the clip: the clip's bar is the smallest of its frames';
- it comes in pairs of about the same size (top and bottom, left and right), because a matte
  centres the picture; a dark sky only darkens the top.

One exception to "every frame": subtitles. Films put them in the bottom bar, so on the frames
that show a line the bottom bar looks thinner. When one bar of the pair holds on every frame
and the other on at least half of them, at the same size, the pair is a matte and the text in
it goes with the crop.

Only then is that axis cropped, to even sizes (yuv420p). The clip's other frames, the
keyframes and the analysis proxy come out of the same cropped graph.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from loraforge.ingest.models import ProbeResult

# a bar thinner than this share of the side is left alone (a few dark rows of overscan)
MIN_BAR = 0.02
# top and bottom (left and right) bars may differ by this share of the larger, or 4 px: mattes
# are centred, give or take an encoder's rounding
MAX_ASYMMETRY = 0.15
# a "picture" smaller than this share of the side after cropping is a dark shot, not mattes;
# a phone's 9:16 video pillarboxed into 16:9 keeps 0.32 of the width
MIN_PICTURE = 0.25
# flat and dark in the small analysis frame (0-255): a digital matte is black (16-20 once
# encoded) with a little compression noise
_FLAT_MAX = 40
_FLAT_SPREAD = 12
_REACH = 2.5  # small-frame pixels the flat run may stop short of cropdetect's edge
# the step a matte ends at: this much brighter (mean of a row, 0-255) within this many rows
_STEP = 20.0
_STEP_WITHIN = 3

Bars = tuple[int, int, int, int]  # top, bottom, left, right, in full-size frame pixels


def frame_size(probe: ProbeResult) -> tuple[int, int]:
    """Width and height of the frames ffmpeg's filters see: stored pixels (before the pixel
    aspect is applied), turned by the display rotation (ffmpeg rotates before the graph)."""
    w, h = probe.coded_width, probe.coded_height
    return (h, w) if probe.rotation in (90, 270) else (w, h)


def flat_dark_runs(small_bgr: np.ndarray) -> Bars:
    """How many rows from the top and bottom, and columns from the left and right, of a small
    frame are flat and dark (matte candidates) and end at a step: within _STEP_WITHIN rows
    after them the picture is _STEP brighter. A matte ends at once; the dark surroundings of a
    low-key shot brighten gradually, and their run counts as 0."""
    # a coloured border is not black, whatever its luma; a 3x3 mean takes film grain out of
    # the spread test (a matte under grain of sigma 10 at 720p, ~2 grey levels in the 256 px
    # frame, spread 12-14 over a row and failed it on a third of the frames), while a subtitle
    # stroke in a bar stays far above _FLAT_MAX
    g = cv2.blur(small_bgr.max(axis=2), (3, 3))
    rows = (g.max(axis=1) <= _FLAT_MAX) & (np.ptp(g, axis=1) <= _FLAT_SPREAD)
    cols = (g.max(axis=0) <= _FLAT_MAX) & (np.ptp(g, axis=0) <= _FLAT_SPREAD)
    row_mean, col_mean = g.mean(axis=1), g.mean(axis=0)

    def run(flags: np.ndarray, means: np.ndarray) -> int:
        off = np.flatnonzero(~flags)
        n = int(off[0]) if off.size else len(flags)
        if n == 0 or n == len(flags):
            return n
        after = means[n : n + _STEP_WITHIN]
        return n if float(after.max()) - float(means[:n].mean()) >= _STEP else 0

    return (
        run(rows, row_mean),
        run(rows[::-1], row_mean[::-1]),
        run(cols, col_mean),
        run(cols[::-1], col_mean[::-1]),
    )


def frame_bars(
    detected: Sequence[tuple[int, int, int, int] | None],
    runs: Bars,
    size: tuple[int, int],
    small: tuple[int, int],
) -> Bars | None:
    """One frame's mattes from cropdetect's picture boxes at its two thresholds (decode.py;
    x1, x2, y1, y2 inclusive; None where the frame is all below that threshold): on each side,
    the deepest edge that the small frame's flat dark run reaches (within 2.5 small pixels: the
    small frame's column across the edge blends bar and picture), else 0. The strict box finds
    black bars beside a dark picture, the loose one dark-grey bars; a loose edge inside a dark
    picture is not reached by the run, which stops at the matte's step. None: a black frame."""
    boxes = [d for d in detected if d is not None]
    if not boxes:
        return None
    w, h = size
    sx, sy = w / small[0], h / small[1]
    t, b, lft, r = runs

    def side(run: int, scale: float, edges: list[int]) -> int:
        return max((e for e in edges if run * scale >= e - _REACH * scale), default=0)

    return (
        side(t, sy, [y1 for _, _, y1, _ in boxes]),
        side(b, sy, [h - 1 - y2 for _, _, _, y2 in boxes]),
        side(lft, sx, [x1 for x1, _, _, _ in boxes]),
        side(r, sx, [w - 1 - x2 for _, x2, _, _ in boxes]),
    )


def _pair(a: int, b: int, side: int) -> tuple[int, int]:
    """The two bars of one axis when they are a centred matte, else (0, 0)."""
    if min(a, b) < MIN_BAR * side:
        return 0, 0
    if abs(a - b) > max(4.0, MAX_ASYMMETRY * max(a, b)):
        return 0, 0
    if side - a - b < MIN_PICTURE * side:
        return 0, 0
    return a, b


def _axis(a: list[int], b: list[int], side: int) -> tuple[int, int]:
    """One axis' bars over the clip's frames: both held on every frame, else one on every
    frame and the other on half of them (subtitles in a bar), else none."""
    a_all, b_all = min(a), min(b)
    a_half, b_half = sorted(a)[(len(a) - 1) // 2], sorted(b)[(len(b) - 1) // 2]
    for pair in ((a_all, b_all), (a_all, b_half), (a_half, b_all)):
        got = _pair(*pair, side)
        if got != (0, 0):
            return got
    return 0, 0


def matte_crop(
    bars: Sequence[Bars | None], size: tuple[int, int]
) -> tuple[int, int, int, int] | None:
    """The picture inside the mattes of a clip's frames as ffmpeg's crop wants it: (width,
    height, x, y), even; None when there is nothing to cut (or no frame says)."""
    seen = [b for b in bars if b is not None]
    if not seen:
        return None
    w, h = size
    top, bottom = _axis([b[0] for b in seen], [b[1] for b in seen], h)
    left, right = _axis([b[2] for b in seen], [b[3] for b in seen], w)
    if not (top or bottom or left or right):
        return None
    x, y = -(-left // 2) * 2, -(-top // 2) * 2  # round the bars up: no dark line is kept
    cw, ch = (w - right - x) // 2 * 2, (h - bottom - y) // 2 * 2
    return cw, ch, x, y
