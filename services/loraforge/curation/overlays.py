"""Burned-in text (subtitles, captions, overlaid titles) and logos/watermarks, with evidence.

What defines an overlay is that it stays at the same pixels of the frame WHILE the picture
under it moves or changes. Everything here tests exactly that, on the sampled frames at
QUALITY_WIDTH, inside the black bars:

* Global motion: phase correlation between consecutive samples gives the camera's translation
  (a pan, a tilt, a handheld drift), ORB matches with RANSAC a zoom or rotation; either is kept
  only when following it explains most of the textured picture (a subject walking in front of
  a locked-off camera is not camera motion).
* Static-edge blobs (logos, watermarks): Canny edges at the same pixels in PERSIST of the
  frames, grouped into blobs. A blob is an overlay only when, in most consecutive pairs,
    - the camera moved (pan, zoom, rotation) and the blob matches where it was far better than
      where the camera would have carried it (a horizon under a horizontal pan matches both
      ways and does not count), while the picture around it did go with the camera (a subject
      swaying in front of a locked-off camera can pass for a pan; scenery beside her stays,
      and so does a tenth or more of the picture's texture: ``_locked_off``), or
    - the camera stood still, and on every in-frame side of the blob the picture changed
      (RING_CHANGED_SHARE of each side's pixels) while the blob did not (scenery beside one
      moving person changes on one side only).
  A blob must also be compact (at most LOGO_MAX_W x LOGO_MAX_H of the picture) and lie in the
  outer band where channels and stock sites put their marks; in the middle of the picture,
  where a subject the camera tracks also stays put, three quarters of the pairs must show the
  camera moving under it.
  A blob in a corner, where channels put their bug, that stays while the scenery around it
  stays too is a corner mark, not a logo: on a locked-off shot a channel bug and a lamp in that
  corner behave alike. It is flagged with its box; decision.corner_marks_elsewhere rejects it
  as a watermark where a clip of the same source shows a logo at that place.
  Smooth animation (gradients, colour cycling) leaves no persistent Canny edges at all, and a
  slow pan moves every scene edge except those parallel to it, which the match test discards.
* Text (PP-OCR detection on TEXT_FRAMES frames, recognition to confirm, see text.py): a line is
    - subtitle/caption: a line-shaped box in the bottom SUBTITLE_BAND (or top TOP_BAND) of the
      picture that does not move with the camera;
    - overlaid text: a box at the same pixels in two OCR frames while the camera moved; in a
      corner it is a text logo (``@channel``) and counts as a watermark;
    - scene text: a sign, a T-shirt print, a book cover, anything that moves with the camera,
      or a single sighting outside the bands. Scene text is part of the picture, not an edit:
      it is reported as a flag (with its box and what it reads) so a person can decide, but it
      does not reject the clip. Limitation: on a locked-off shot, text that stays put cannot be
      told from an overlay by motion; in the subtitle bands it is taken for a subtitle, elsewhere
      (a caption mid-frame, a corner ``@channel``) for scene text, flagged not rejected, unless
      the static-edge cue finds it as a logo.
  Recognition confirms every line that rejects or flags: at least two letters or digits read
  with confidence (``text.is_text``); detector hits on stripes, patterns and stars drop out.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TypedDict

import cv2
import numpy as np

from loraforge.curation.text import TextReader, is_text

PERSIST = 0.9  # an edge at the same pixel in >= 90 % of the frames is static
MIN_SCENE_CHANGE = 0.15  # fraction of pixels whose luma changes over the clip (the static gate)
CHANGE_STD = 12.0  # temporal std (grey levels) above which a pixel "changes"
# a camera translation below this (QUALITY_WIDTH pixels between samples) is a still camera;
# phase correlation is good to ~0.1 px on real photos (measured on the astronaut: 2/5/10/20 px
# read 1.86-2.00/4.86-5.00/9.99-10.17/19.85-20.00)
MIN_SHIFT_PX = 0.75
# a blob matches "in place" when its mean difference in place is at most this share of the
# difference after following the camera: an overlay is many times better in place, scene
# structure matches the moved place as well or better
STATIC_MATCH_RATIO = 0.5
RING_CHANGE = 8.0  # grey levels: a pixel around a blob that changed between two samples
# a side of the ring changed when this share of its pixels did (a part of the logo the edge
# map missed can fill the rest of the strip)
RING_CHANGED_SHARE = 0.3
LOGO_MIN_AREA = 0.0015  # of the picture, after dilation: smaller blobs are noise
LOGO_MAX_W, LOGO_MAX_H = 0.45, 0.35  # of the picture: larger static structures are scenery
OUTER_BAND = 0.3  # a blob whose centre is within 30 % of an edge is in the "logo zone"
CORNER_BAND = 0.2  # ... and within 20 % of two edges, in a corner (_pair_vote)
SUBTITLE_BAND = 0.28  # subtitles and lower thirds live in the bottom 28 % of the picture
TOP_BAND = 0.12  # top captions, channel names
TEXT_FRAMES = 3  # OCR frames per clip (_ocr_positions): two, and a third when text is seen
TEXT_MATCH_IOU = 0.5
TEXT_MIN_SHIFT_PX = 2.0  # below this camera shift between OCR frames, text boxes cannot tell
MAX_READS = 6  # recognition calls per clip: tracks beyond these are not read (nor reported)


class Evidence(TypedDict):
    """What a finding was seen on, as the metrics, reasons, manifest and report carry it."""

    kind: str  # OverlayEvidence.kind, or the subject's source (face | person)
    box: list[float]  # x, y, w, h as fractions of the full frame
    frames: list[int]
    text: str | None
    score: float


@dataclass(frozen=True)
class OverlayEvidence:
    kind: str  # subtitle | text_overlay | text_logo | logo | scene_text | corner_mark
    box: tuple[float, float, float, float]  # x, y, w, h as fractions of the full frame
    frames: tuple[int, ...]  # clip frame indices where it was seen
    text: str | None = None  # what the recogniser read, for text
    score: float = 0.0  # recogniser confidence (text) or share of frame pairs voting (logo)

    def describe(self) -> str:
        x, y, w, h = self.box
        where = f"box x={x:.2f} y={y:.2f} w={w:.2f} h={h:.2f}"
        frames = ", ".join(str(f) for f in self.frames)
        said = f" reading {self.text!r}" if self.text else ""
        return f"{self.kind.replace('_', ' ')}{said} at {where} in frames {frames}"

    def as_dict(self) -> Evidence:
        return {
            "kind": self.kind,
            "box": [round(v, 4) for v in self.box],
            "frames": list(self.frames),
            "text": self.text,
            "score": round(self.score, 4),
        }


@dataclass(frozen=True)
class OverlayStats:
    static_overlay_fraction: float  # share of the picture covered by static-overlay blobs
    text_frames_fraction: float  # share of OCR frames holding burned-in text
    burned_in_text: bool
    logo_or_watermark: bool
    scene_change: float  # the gate for the static cue
    text: list[OverlayEvidence] = field(default_factory=list)  # subtitles, overlaid text
    watermarks: list[OverlayEvidence] = field(default_factory=list)  # logos, text logos
    scene_text: list[OverlayEvidence] = field(default_factory=list)
    # static blobs in a corner of a locked-off shot (static_logos): a channel bug or scenery
    corner_marks: list[OverlayEvidence] = field(default_factory=list)
    camera_shift: float = 0.0  # median camera displacement between samples, fraction of the width
    ocr_frames: list[int] = field(default_factory=list)


# --- global motion ------------------------------------------------------------------------


Motion = np.ndarray  # 2x3 affine: content at p in one sample is at M @ (p, 1) in the next
BoxXYWH = tuple[float, float, float, float]  # x, y, w, h as fractions of a picture
# ORB keypoints and their descriptors (None where none were found)
_Features = tuple[Sequence[cv2.KeyPoint], np.ndarray | None]


def _translation(dx: float, dy: float) -> Motion:
    return np.array([[1.0, 0.0, dx], [0.0, 1.0, dy]])


def _follow(b: np.ndarray, motion: Motion) -> np.ndarray:
    """b sampled where the motion carried each pixel of the previous frame: b(M p); -1 outside."""
    return cv2.warpAffine(
        b,
        motion.astype(np.float32),
        (b.shape[1], b.shape[0]),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderValue=-1.0,
    )


def _displacement(motion: Motion, w: int, h: int) -> float:
    """Mean displacement (pixels) of a 3x3 grid of points spread over the frame."""
    xs, ys = np.meshgrid([0.1 * w, 0.5 * w, 0.9 * w], [0.1 * h, 0.5 * h, 0.9 * h])
    pts = np.stack([xs.ravel(), ys.ravel(), np.ones(9)])
    return float(np.hypot(*(motion @ pts - pts[:2])).mean())


def _explains(a: np.ndarray, b: np.ndarray, motion: Motion) -> bool:
    """The motion is the camera's when following it matches better than standing still on at
    least half of the textured pixels (a subject walking in front of a locked-off camera moves
    only its own pixels)."""
    followed = _follow(b, motion)
    gx, gy = cv2.Sobel(a, cv2.CV_32F, 1, 0), cv2.Sobel(a, cv2.CV_32F, 0, 1)
    # camera_motion's frames hold whole grey levels, so the gradients are whole numbers (under
    # 1021) and their squared length is exact in float32: the test is hypot > 40, without
    # hypot's cost (ten times that of the products)
    textured = (gx * gx + gy * gy > 1600.0) & (followed >= 0)
    n = np.count_nonzero(textured)
    if n < 0.02 * a.size:
        return False  # a flat picture: nothing to tell motion by
    # cv2.absdiff is abs(x - y) in float32 like numpy's; the share of textured pixels where
    # following is better, counted over the whole picture rather than gathered pixel by pixel
    better = (cv2.absdiff(followed, a) + 1.0 < cv2.absdiff(b, a)) & textured
    return bool(np.count_nonzero(better) / n >= 0.5)


def _orb(img: np.ndarray) -> _Features:
    return cv2.ORB.create(nfeatures=400, fastThreshold=10).detectAndCompute(
        img.astype(np.uint8), None
    )


def _similarity(fa: _Features, fb: _Features) -> Motion | None:
    """Zoom/rotation/translation from ORB matches (``_orb`` of each frame) and RANSAC
    (cv2.estimateAffinePartial2D)."""
    (ka, da), (kb, db) = fa, fb
    if da is None or db is None or len(ka) < 20 or len(kb) < 20:
        return None
    matches = cv2.BFMatcher(cv2.NORM_HAMMING, crossCheck=True).match(da, db)
    if len(matches) < 20:
        return None
    src = np.array([ka[m.queryIdx].pt for m in matches], dtype=np.float32)
    dst = np.array([kb[m.trainIdx].pt for m in matches], dtype=np.float32)
    motion, inliers = cv2.estimateAffinePartial2D(
        src, dst, method=cv2.RANSAC, ransacReprojThreshold=2.0
    )
    if motion is None or inliers is None or int(inliers.sum()) < 15:
        return None
    return motion.astype(np.float64)


def camera_motion(grays: Sequence[np.ndarray]) -> list[Motion | None]:
    """The camera's motion from each sample to the next, in pixels of ``grays`` (uint8 grey
    frames); None for a still camera. A translation from phase correlation (pans, tilts,
    handheld drift) on a 320-px copy with a Hann window; when that does not explain the
    picture, a similarity from ORB matches (zooms, rotations). Either counts only when it
    explains most of the picture (``_explains``); a motion smaller than MIN_SHIFT_PX reads as a
    still camera."""
    out: list[Motion | None] = []
    if len(grays) < 2:
        return out
    h, w = grays[0].shape
    f = min(1.0, 320 / w)
    size = (max(16, round(w * f)), max(16, round(h * f)))
    win = cv2.createHanningWindow(size, cv2.CV_32F)
    small = [cv2.resize(g, size, interpolation=cv2.INTER_AREA).astype(np.float32) for g in grays]
    scale = np.diag([1 / f, 1 / f, 1.0])  # small -> full pixels: M_full = S M_small S^-1
    unscale = np.diag([f, f, 1.0])
    features: dict[int, _Features] = {}  # ORB per frame, computed once, only when needed

    def orb(k: int) -> _Features:
        if k not in features:
            features[k] = _orb(small[k])
        return features[k]

    for k, (a, b) in enumerate(itertools.pairwise(small)):
        (dx, dy), resp = cv2.phaseCorrelate(a, b, win)
        found = None
        still = np.hypot(dx, dy) / f < MIN_SHIFT_PX
        if resp >= 0.05 and not still and _explains(a, b, _translation(dx, dy)):
            found = _translation(dx, dy)
        elif not (still and resp >= 0.9):  # a sharp peak at zero: nothing moved, skip ORB
            sim = _similarity(orb(k), orb(k + 1))
            if (
                sim is not None
                and _displacement(sim, *size) / f >= MIN_SHIFT_PX
                and _explains(a, b, sim)
            ):
                found = sim
        out.append(None if found is None else (scale @ np.vstack([found, [0, 0, 1]]) @ unscale)[:2])
    return out


def camera_shifts(grays: Sequence[np.ndarray]) -> list[tuple[float, float]]:
    """Translation of the frame centre from each sample to the next ((0, 0): still camera)."""
    h, w = grays[0].shape if grays else (0, 0)
    c = np.array([w / 2, h / 2, 1.0])
    out: list[tuple[float, float]] = []
    for m in camera_motion(grays):
        dx, dy = (0.0, 0.0) if m is None else m @ c - c[:2]
        out.append((float(dx), float(dy)))
    return out


# --- static-edge logos --------------------------------------------------------------------


def _ring_sides(
    x: int, y: int, bw: int, bh: int, w: int, h: int
) -> list[tuple[int, int, int, int]]:
    """The strips (x, y, w, h) just outside a box, on each side that lies inside the frame."""
    m = max(8, round(0.5 * max(bw, bh)))
    sides = []
    if y - m >= 0:
        sides.append((x, y - m, bw, m))
    if y + bh + m <= h:
        sides.append((x, y + bh, bw, m))
    if x - m >= 0:
        sides.append((x - m, y, m, bh))
    if x + bw + m <= w:
        sides.append((x + bw, y, m, bh))
    return sides


def _diff(a: np.ndarray, b: np.ndarray, sel: np.ndarray | None = None) -> float:
    d = np.abs(a - b)
    return float(d[sel].mean() if sel is not None else d.mean())


def _pair_vote(
    a: np.ndarray,
    b: np.ndarray,
    sel: np.ndarray,
    box: tuple[int, int, int, int],
    followed: np.ndarray | None,
    locked: bool = False,
) -> str | None:
    """One pair of consecutive samples on one static blob: "pan" or "still" when the pair shows
    the blob staying while the picture around it moves/changes, "corner" for a blob in a
    corner that stays while the rest of the picture stays too (a channel bug or scenery: see
    below), None otherwise. ``followed`` is b warped back along the camera motion (None: the
    camera stood still); ``locked``: the scenery stayed under that motion (_locked_off), so it
    was a subject's, not the camera's."""
    x, y, bw, bh = box
    h, w = a.shape
    cx, cy = (x + bw / 2) / w, (y + bh / 2) / h
    corner = min(cx, 1 - cx) < CORNER_BAND and min(cy, 1 - cy) < CORNER_BAND
    blob_a = a[y : y + bh, x : x + bw]
    in_place = _diff(blob_a, b[y : y + bh, x : x + bw], sel)
    if followed is not None:
        # the camera moved (camera_motion checked that the picture follows it): the blob must
        # match where it was far better than where the camera would have carried it
        fb = followed[y : y + bh, x : x + bw]
        valid = sel & (fb >= 0)
        if valid.sum() < 0.8 * sel.sum():
            return None  # carried out of the frame: no verdict
        moved = _diff(blob_a, fb, valid)
        if in_place + 2.0 > STATIC_MATCH_RATIO * moved:
            return None
        if locked:
            return "corner" if corner else None
        # ... while the picture around it went with the camera. Where that stayed too, the
        # "camera motion" is the subject's: a talking head swaying in front of a locked-off
        # camera filled most of the textured picture and passed for a pan, and the lattice of
        # a tower at the edge of the frame for a logo (its surroundings: 0-1.4 grey levels
        # apart in place, 3-6 where the "camera" would have carried them). A flat surrounding
        # (a sky) matches both ways and does not veto. In a corner, where channels put their
        # bug, such a blob is a "corner" vote: on a locked-off shot a channel bug and the
        # scenery in that corner (a lamp, a shelf, a table edge) both stay put, so the clip
        # alone cannot tell them apart (decision.corner_marks_elsewhere looks at the source's
        # other clips)
        still, carried = [], []
        for sx, sy, sw, sh in _ring_sides(x, y, bw, bh, w, h):
            ra, rf = a[sy : sy + sh, sx : sx + sw], followed[sy : sy + sh, sx : sx + sw]
            ok = rf >= 0
            if ok.mean() >= 0.8:
                still.append(_diff(ra, b[sy : sy + sh, sx : sx + sw], ok))
                carried.append(_diff(ra, rf, ok))
        if still and np.mean(still) + 0.5 <= STATIC_MATCH_RATIO * np.mean(carried):
            return "corner" if corner else None
        return "pan"
    # a still camera: the picture changed on every in-frame side of the blob, the blob did not
    sides = _ring_sides(x, y, bw, bh, w, h)
    if len(sides) < 2:
        return None
    changed = [
        float(
            (
                np.abs(a[sy : sy + sh, sx : sx + sw] - b[sy : sy + sh, sx : sx + sw]) >= RING_CHANGE
            ).mean()
        )
        for sx, sy, sw, sh in sides
    ]
    ring = float(
        np.mean(
            [
                _diff(a[sy : sy + sh, sx : sx + sw], b[sy : sy + sh, sx : sx + sw])
                for sx, sy, sw, sh in sides
            ]
        )
    )
    if min(changed) >= RING_CHANGED_SHARE and in_place <= STATIC_MATCH_RATIO * ring:
        return "still"
    return None


# a motion camera_motion took for the camera's was a subject's when at least this share of the
# picture's textured pixels (the static-edge blobs left out) stayed where they were under it
# (_locked_off). Measured on 3 s clips at 24 fps: a talking head swaying before a locked-off
# camera 0.23-0.28 (the scenery beside her stays), pans over a portrait 0.009-0.011, 0.021-0.024
# with a channel bug over them
LOCKED_STAYED_SHARE = 0.1


def _locked_off(a: np.ndarray, b: np.ndarray, followed: np.ndarray, blobs: np.ndarray) -> bool:
    """The camera stood still under a motion that explains most of the picture: a real pan,
    tilt or zoom carries the whole scene, and only overlays stay; a subject swaying before a
    locked-off camera leaves the scenery beside her where it was."""
    gx, gy = cv2.Sobel(a, cv2.CV_32F, 1, 0), cv2.Sobel(a, cv2.CV_32F, 0, 1)
    textured = (gx * gx + gy * gy > 1600.0) & (followed >= 0) & ~blobs
    n = np.count_nonzero(textured)
    if n == 0:
        return False
    stayed = textured & (cv2.absdiff(a, b) + 1.0 < STATIC_MATCH_RATIO * cv2.absdiff(a, followed))
    return bool(np.count_nonzero(stayed) / n >= LOCKED_STAYED_SHARE)


def static_logos(
    grays: Sequence[np.ndarray], motions: list[Motion | None]
) -> list[tuple[tuple[int, int, int, int], float, bool]]:
    """Static-edge blobs that behave like overlays: (box in pixels, share of pairs voting,
    whether the clip shows it: False for a corner blob that only "corner" votes carry, which
    a channel bug and the scenery of a locked-off shot both give)."""
    n = len(grays)
    h, w = grays[0].shape
    # per pixel, the frames with an edge there (a count and its share, as edges.mean(0) gives
    # it, without a float64 pass over a stack of all the edge maps)
    edge_frames = np.zeros((h, w), np.uint16)
    for g in grays:
        edge_frames += cv2.Canny(g, 80, 160) > 0
    static_px = edge_frames / n >= PERSIST
    blobs = cv2.dilate(static_px.astype(np.uint8), np.ones((5, 5), np.uint8))
    blobs = cv2.morphologyEx(blobs, cv2.MORPH_CLOSE, np.ones((1, 15), np.uint8))
    _, labels, stats, _ = cv2.connectedComponentsWithStats(blobs, connectivity=8)
    boxes = [
        (i, x, y, bw, bh)
        for i, (x, y, bw, bh, area) in enumerate(stats.tolist())
        if i > 0
        and not (area < LOGO_MIN_AREA * h * w or bw > LOGO_MAX_W * w or bh > LOGO_MAX_H * h)
    ]
    if not boxes:
        return []  # no blob of a logo's size: the frames are not compared at all
    stack = np.stack([g.astype(np.float32) for g in grays])
    followed = [None if mo is None else _follow(stack[k + 1], mo) for k, mo in enumerate(motions)]
    locked = [
        f is not None and _locked_off(stack[k], stack[k + 1], f, blobs > 0)
        for k, f in enumerate(followed)
    ]
    found = []
    for i, x, y, bw, bh in boxes:
        sel = (static_px & (labels == i))[y : y + bh, x : x + bw]
        pairs = [
            _pair_vote(stack[k], stack[k + 1], sel, (x, y, bw, bh), followed[k], locked[k])
            for k in range(n - 1)
        ]
        tested = len(pairs)
        votes = sum(v is not None for v in pairs)
        shown = sum(v in ("pan", "still") for v in pairs)
        pan_votes = sum(v == "pan" for v in pairs)
        cx, cy = (x + bw / 2) / w, (y + bh / 2) / h
        outer = min(cx, 1 - cx) < OUTER_BAND or min(cy, 1 - cy) < OUTER_BAND
        # in the logo zone most pairs must vote; in the middle of the picture (where a subject
        # the camera tracks also stays put) three quarters of them, by camera-motion evidence
        need = max(2, int(np.ceil(0.5 * tested)))
        need_mid = max(2, int(np.ceil(0.75 * tested)))
        if (outer and shown >= need) or pan_votes >= need_mid:
            found.append(((x, y, bw, bh), shown / tested, True))
        elif outer and votes >= need:
            found.append(((x, y, bw, bh), votes / tested, False))
    return found


# --- text ---------------------------------------------------------------------------------


def _iou(a: BoxXYWH, b: BoxXYWH) -> float:
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def _ocr_positions(n: int) -> tuple[list[int], list[int]]:
    """(first round, second round) of sample positions read by OCR: a quarter and three
    quarters into the samples first (a subtitle shown for half the clip, or a title at its
    start or end, is on at least one of them, and two frames apart tell static text from text
    the camera moves), then, only when text was seen, the frames between them, up to
    TEXT_FRAMES in all."""
    if n <= 2:
        return list(range(n)), []
    first = sorted({round(0.25 * (n - 1)), round(0.75 * (n - 1))})
    rest = [p for p in np.linspace(0, n - 1, n).round().astype(int).tolist() if p not in first]
    # the ones nearest the middle, between the first two
    rest.sort(key=lambda p: abs(p - (n - 1) / 2))
    return first, sorted(rest[: max(0, TEXT_FRAMES - len(first))])


@dataclass
class _Track:
    boxes: list[tuple[int, tuple[float, float, float, float]]]  # (sample position, box)
    static: bool = False  # stayed at its pixels while the camera moved: an overlay
    moved: bool = False  # moved with the camera: scene text


def _text_tracks(
    lines: dict[int, list[tuple[float, float, float, float]]],
    motions: list[Motion | None],
    size: tuple[int, int],
) -> list[_Track]:
    """Link the boxes of the OCR frames: same place (static) or same place after the camera
    motion between the frames (moved)."""
    w, h = size
    tracks: list[_Track] = []
    for pos in sorted(lines):
        for box in lines[pos]:
            best = None
            for t in tracks:
                p0, b0 = t.boxes[-1]
                # where the camera carried the old box's centre between the two OCR frames (pixels)
                cx0, cy0 = (b0[0] + b0[2] / 2) * w, (b0[1] + b0[3] / 2) * h
                pt = np.array([cx0, cy0])
                for mo in motions[p0:pos]:
                    if mo is not None:
                        pt = mo @ np.array([pt[0], pt[1], 1.0])
                sx, sy = float(pt[0] - cx0), float(pt[1] - cy0)
                carried = (b0[0] + sx / w, b0[1] + sy / h, b0[2], b0[3])
                if max(_iou(b0, box), _iou(carried, box)) < TEXT_MATCH_IOU:
                    continue
                if np.hypot(sx, sy) < TEXT_MIN_SHIFT_PX:
                    # a still camera: the same place says nothing (a sign behind an interview
                    # stays put as well as a caption does)
                    best = (t, "still")
                    break
                best = (t, "moved" if _follows_camera(b0, box, sx / w, sy / h) else "static")
                break
            if best is None:
                tracks.append(_Track([(pos, box)]))
            else:
                t, how = best
                t.boxes.append((pos, box))
                t.static |= how == "static"
                t.moved |= how == "moved"
    return tracks


def _follows_camera(b0: BoxXYWH, b1: BoxXYWH, sx: float, sy: float, border: float = 0.01) -> bool:
    """Whether box b1 is b0 carried by the camera shift (sx, sy) (fractions of the frame) rather
    than b0 standing still. Judged on the box edges across the main direction of motion: both
    must have moved nearer the camera's shift than zero (a detector box's far edge wanders with
    the last glyph, so a centre can move half a glyph without the text moving). An edge at the
    frame border is where the picture cuts the text, not the text's own edge, and is skipped."""
    i, s = (0, sx) if abs(sx) >= abs(sy) else (1, sy)
    edges = []
    for lo, hi in ((b0[i], b1[i]), (b0[i] + b0[i + 2], b1[i] + b1[i + 2])):
        if min(lo, hi) <= border or max(lo, hi) >= 1 - border:
            continue
        edges.append(hi - lo)
    if not edges:  # both edges cut by the frame: the centre is all there is
        edges = [(b1[i] + b1[i + 2] / 2) - (b0[i] + b0[i + 2] / 2)]
    return all(abs(e - s) < abs(e) for e in edges)


def _text_kind(t: _Track) -> str:
    """subtitle | text_logo | text_overlay | scene_text (the rules in the module docstring)."""
    x, y, bw, bh = max((b for _, b in t.boxes), key=lambda b: b[2] * b[3])
    cy = y + bh / 2
    line = bw >= 2 * bh
    band = line and (cy >= 1 - SUBTITLE_BAND or cy <= TOP_BAND)
    if t.moved:
        return "scene_text"
    if t.static:
        if band:
            return "subtitle"
        cx = x + bw / 2
        corner = min(cx, 1 - cx) < OUTER_BAND and min(cy, 1 - cy) < OUTER_BAND
        return "text_logo" if corner else "text_overlay"
    # a still camera or a single sighting: only the subtitle band tells
    return "subtitle" if band else "scene_text"


# --- the clip -----------------------------------------------------------------------------


def measure_overlays(
    grays: Sequence[np.ndarray],
    *,
    images: Sequence[np.ndarray] | None = None,
    indices: Sequence[int] | None = None,
    inner: tuple[int, int, int, int] | None = None,
    reader: TextReader | None = None,
) -> OverlayStats:
    """Overlays on a clip's sampled frames.

    ``grays``: grey frames at QUALITY_WIDTH, ``images`` the same frames in colour (for OCR),
    ``indices`` their frame numbers, ``inner`` the picture inside black bars as (x0, y0, x1, y1)
    pixels of those frames (bars are static edges too), ``reader`` the OCR (None: no text cue).
    """
    if not grays:
        return OverlayStats(0.0, 0.0, False, False, 0.0)
    fh, fw = grays[0].shape
    x0, y0, x1, y1 = inner or (0, 0, fw, fh)
    if x1 - x0 < 32 or y1 - y0 < 32:
        x0, y0, x1, y1 = 0, 0, fw, fh
    pic = [g[y0:y1, x0:x1] for g in grays]
    indices = list(indices) if indices is not None else list(range(len(grays)))
    h, w = pic[0].shape

    def full(box: BoxXYWH) -> BoxXYWH:
        """(x, y, w, h) in fractions of the picture -> fractions of the full frame."""
        bx, by, bw, bh = box
        return ((x0 + bx * w) / fw, (y0 + by * h) / fh, bw * w / fw, bh * h / fh)

    motions = camera_motion(pic)
    change = 0.0
    if len(pic) >= 3:
        change = float((np.stack(pic).astype(np.float32).std(0) > CHANGE_STD).mean())
    scene_changes = change >= MIN_SCENE_CHANGE
    camera = (
        float(np.median([0.0 if mo is None else _displacement(mo, w, h) for mo in motions]) / w)
        if motions
        else 0.0
    )

    logos: list[OverlayEvidence] = []
    corner: list[OverlayEvidence] = []  # static in a corner of a locked-off shot: undecided
    covered = 0.0
    if len(pic) >= 3 and scene_changes:
        for (bx, by, bw, bh), share, shown in static_logos(pic, motions):
            box = full((bx / w, by / h, bw / w, bh / h))
            if shown:
                covered += bw * bh
                logos.append(OverlayEvidence("logo", box, tuple(indices), None, share))
            else:
                corner.append(OverlayEvidence("corner_mark", box, tuple(indices), None, share))

    texts: list[OverlayEvidence] = []
    scene: list[OverlayEvidence] = []
    ocr_at: list[int] = []
    text_frames: set[int] = set()
    if reader is not None and images is not None:
        crops = [im[y0:y1, x0:x1] for im in images]
        first, second = _ocr_positions(len(crops))
        lines: dict[int, list[BoxXYWH]] = {}
        for pos in first:
            lines[pos] = [t.box for t in reader.detect(crops[pos])]
        if any(lines.values()):
            for pos in second:
                lines[pos] = [t.box for t in reader.detect(crops[pos])]
        ocr_at = sorted(lines)
        tracks = _text_tracks(lines, motions, (w, h))
        # burned-in candidates first, then the largest: recognition is capped per clip
        kinds = [(_text_kind(t), t) for t in tracks]
        kinds.sort(
            key=lambda kt: (kt[0] == "scene_text", -max(b[2] * b[3] for _, b in kt[1].boxes))
        )
        for kind, t in kinds[:MAX_READS]:
            pos, box = max(t.boxes, key=lambda pb: pb[1][2] * pb[1][3])
            ((said, score),) = reader.read(crops[pos], [box])
            if not is_text(said, score):
                continue
            ev = OverlayEvidence(
                kind, full(box), tuple(indices[p] for p, _ in t.boxes), said, score
            )
            if kind == "scene_text":
                scene.append(ev)
            else:
                texts.append(ev)
                text_frames.update(p for p, _ in t.boxes)

    # a static-edge blob that is a confirmed text line is reported once, as that text
    text_logos = [e for e in texts if e.kind == "text_logo"]
    texts = [e for e in texts if e.kind != "text_logo"]
    logos = _merge_near([lg for lg in logos if not any(_overlaps(lg.box, t.box) for t in texts)])
    marks = text_logos + [
        lg for lg in logos if not any(_overlaps(lg.box, t.box) for t in text_logos)
    ]
    # a word of a subtitle line read on its own is part of that line, not scene text
    scene = [e for e in scene if not any(_same_line(e.box, t.box) for t in texts)]
    corner = _merge_near(
        [c for c in corner if not any(_overlaps(c.box, e.box) for e in [*texts, *marks])]
    )
    return OverlayStats(
        static_overlay_fraction=covered / float(h * w),
        text_frames_fraction=len(text_frames) / len(ocr_at) if ocr_at else 0.0,
        burned_in_text=bool(texts),
        logo_or_watermark=bool(marks),
        scene_change=change,
        text=texts,
        watermarks=marks,
        scene_text=scene,
        corner_marks=corner,
        camera_shift=camera,
        ocr_frames=[indices[p] for p in ocr_at],
    )


def _same_line(a: BoxXYWH, b: BoxXYWH) -> bool:
    """Boxes on one text line: vertical overlap of most of the lower one, horizontally touching."""
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    gap = max(a[0], b[0]) - min(a[0] + a[2], b[0] + b[2])
    return iy >= 0.5 * min(a[3], b[3]) and gap <= 2 * max(a[3], b[3])


def _merge_near(logos: list[OverlayEvidence], gap: float = 0.02) -> list[OverlayEvidence]:
    """One mark drawn as separate pieces (a ring and a bar under it) is one piece of evidence:
    boxes closer than ``gap`` of the frame are merged."""
    out: list[OverlayEvidence] = []
    for lg in sorted(logos, key=lambda e: -e.box[2] * e.box[3]):
        for i, o in enumerate(out):
            a, b = lg.box, o.box
            if (
                max(a[0], b[0]) - min(a[0] + a[2], b[0] + b[2]) <= gap
                and max(a[1], b[1]) - min(a[1] + a[3], b[1] + b[3]) <= gap
            ):
                x0, y0 = min(a[0], b[0]), min(a[1], b[1])
                x1, y1 = max(a[0] + a[2], b[0] + b[2]), max(a[1] + a[3], b[1] + b[3])
                out[i] = OverlayEvidence(
                    o.kind, (x0, y0, x1 - x0, y1 - y0), o.frames, None, max(o.score, lg.score)
                )
                break
        else:
            out.append(lg)
    return out


def same_place(a: BoxXYWH | Sequence[float], b: BoxXYWH | Sequence[float]) -> bool:
    """Two findings at one place of the frame (intersection over union at least
    TEXT_MATCH_IOU): a channel bug sits at the same pixels in every shot."""
    return _iou((a[0], a[1], a[2], a[3]), (b[0], b[1], b[2], b[3])) >= TEXT_MATCH_IOU


def _overlaps(a: BoxXYWH, b: BoxXYWH) -> bool:
    """Boxes that share most of the smaller one."""
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    return ix * iy >= 0.5 * min(a[2] * a[3], b[2] * b[3])
