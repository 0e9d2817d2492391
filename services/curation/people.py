"""Person (body) detection, so that people who show no face still count.

A clip of "one person" is rejected when a second person stands in frame with their back to the
camera; face detection alone cannot see that. We use the Dalal-Triggs HOG pedestrian detector
(OpenCV's ``HOGDescriptor_getDefaultPeopleDetector``). OpenCV 5 moved ``HOGDescriptor`` out of
the main wheel into contrib, so when ``cv2.HOGDescriptor`` is missing we run the same linear SVM
(weights shipped in ``data/hog_people_svm.json``) on a numpy re-implementation of OpenCV's HOG
descriptor: same gamma, gradient, soft binning, Gaussian block weighting and L2-Hys norm, checked
against the OpenCV descriptor when this module was written.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import cv2
import numpy as np

from loraforge.curation.geometry import Box, iou

_WIN_W, _WIN_H = 64, 128
_CELL = 8
_NBINS = 9
_BLOCKS_X, _BLOCKS_Y = 7, 15


@lru_cache(maxsize=1)
def _svm() -> tuple[np.ndarray, float]:
    raw = json.loads(
        resources.files("loraforge.curation").joinpath("data/hog_people_svm.json").read_text()
    )
    w = np.asarray(raw["weights"], dtype=np.float32)
    # OpenCV lays the descriptor out block-column-major (x outer, y inner), 36 values a block.
    return w[:-1].reshape(_BLOCKS_X, _BLOCKS_Y, 36), float(w[-1])


@lru_cache(maxsize=1)
def _cell_kernels() -> np.ndarray:
    """(2 quadrant-y, 2 quadrant-x, 4 cells, 8, 8) weights of a pixel towards each block cell.

    Product of OpenCV's Gaussian block window (sigma 4, centred at pixel 8) and the bilinear
    spatial interpolation between cell centres; cells are indexed cx * 2 + cy like OpenCV.
    """
    idx = np.arange(16, dtype=np.float64)
    d = idx - 8.0
    gauss = np.exp(-(d[:, None] ** 2 + d[None, :] ** 2) / (2 * 4.0**2))
    pos = (idx + 0.5) / _CELL - 0.5
    lo = np.floor(pos)
    frac = pos - lo
    spatial = np.zeros((2, 16))
    for c in range(2):
        spatial[c] = np.where(lo == c, 1 - frac, 0) + np.where(lo + 1 == c, frac, 0)
    k = np.zeros((4, 16, 16))
    for cx in range(2):
        for cy in range(2):
            k[cx * 2 + cy] = gauss * spatial[cy][:, None] * spatial[cx][None, :]
    out = np.zeros((2, 2, 4, 8, 8))
    for qy in range(2):
        for qx in range(2):
            out[qy, qx] = k[:, qy * 8 : qy * 8 + 8, qx * 8 : qx * 8 + 8]
    return out.astype(np.float32)


def hog_blocks(bgr: np.ndarray) -> np.ndarray:
    """Normalised HOG block histograms on the 8 px grid: (blocks_y, blocks_x, 36)."""
    img = np.sqrt(bgr.astype(np.float32))  # OpenCV's gammaCorrection=True
    if img.ndim == 2:
        img = img[:, :, None]
    pad = cv2.copyMakeBorder(img, 1, 1, 1, 1, cv2.BORDER_REFLECT_101)
    if pad.ndim == 2:
        pad = pad[:, :, None]
    dx = pad[1:-1, 2:] - pad[1:-1, :-2]
    dy = pad[2:, 1:-1] - pad[:-2, 1:-1]
    mag2 = dx * dx + dy * dy
    # per pixel, the channel with the strongest gradient (the first one on a tie, like argmax),
    # picked with element-wise comparisons: argmax/take_along_axis over a 3-long axis is slow
    mag2_best, dx_best, dy_best = mag2[..., 0], dx[..., 0], dy[..., 0]
    for c in range(1, mag2.shape[2]):
        stronger = mag2[..., c] > mag2_best
        mag2_best = np.where(stronger, mag2[..., c], mag2_best)
        dx_best = np.where(stronger, dx[..., c], dx_best)
        dy_best = np.where(stronger, dy[..., c], dy_best)
    dx, dy, mag = dx_best, dy_best, np.sqrt(mag2_best)
    ang = np.arctan2(dy, dx)
    ang = np.where(ang < 0, ang + 2 * np.pi, ang) * (_NBINS / np.pi) - 0.5
    b0 = np.floor(ang)
    frac = ang - b0
    b0 = b0.astype(np.int64) % _NBINS
    b1 = (b0 + 1) % _NBINS
    h, w = mag.shape
    hc, wc = h // _CELL, w // _CELL
    h8, w8 = hc * _CELL, wc * _CELL
    m0 = (mag * (1 - frac))[:h8, :w8]
    m1 = (mag * frac)[:h8, :w8]
    b0, b1 = b0[:h8, :w8], b1[:h8, :w8]
    # b1 is always b0 + 1 (mod 9), never b0, so each pixel writes m0 into bin b0 and m1 into
    # bin b1 of a zeroed (bins, h, w) array: two scatters instead of 18 full-size where() passes
    per_bin = np.zeros((_NBINS, h8 * w8), np.float32)
    pix = np.arange(h8 * w8)
    per_bin[b0.ravel(), pix] = m0.ravel()
    per_bin[b1.ravel(), pix] = m1.ravel()
    per_bin = per_bin.reshape(_NBINS, h8, w8)
    # one matrix product gives, for every cell-sized patch, its weighted contribution to each
    # of the 4 cells of each of the 4 blocks that contain it (quadrant qy, qx)
    patches = per_bin.reshape(_NBINS, hc, _CELL, wc, _CELL).transpose(1, 3, 0, 2, 4)
    kern = _cell_kernels().reshape(16, 64).T  # (64, qy*qx*cells)
    contrib = (patches.reshape(-1, 64) @ kern).reshape(hc, wc, _NBINS, 2, 2, 4)
    by, bx = hc - 1, wc - 1
    blocks = np.zeros((by, bx, 4, _NBINS), np.float32)
    for qy in range(2):
        for qx in range(2):
            blocks += contrib[qy : qy + by, qx : qx + bx, :, qy, qx, :].transpose(0, 1, 3, 2)
    blocks = blocks.reshape(by, bx, 36)
    # L2-Hys exactly as OpenCV normalizeBlockHistogram does it
    s = np.sqrt((blocks * blocks).sum(-1, keepdims=True)) + 36 * 0.1
    blocks = np.minimum(blocks / s, 0.2)
    s = np.sqrt((blocks * blocks).sum(-1, keepdims=True)) + 1e-3
    return blocks / s


def window_scores(bgr: np.ndarray) -> np.ndarray:
    """SVM score of every 64x128 window on the 8 px grid: (rows, cols), >0 means person."""
    blocks = hog_blocks(bgr)
    weights, rho = _svm()
    ny = blocks.shape[0] - _BLOCKS_Y + 1
    nx = blocks.shape[1] - _BLOCKS_X + 1
    if ny <= 0 or nx <= 0:
        return np.zeros((0, 0), np.float32)
    scores = np.full((ny, nx), rho, np.float32)
    for j in range(_BLOCKS_X):
        for i in range(_BLOCKS_Y):
            scores += blocks[i : i + ny, j : j + nx] @ weights[j, i]
    return scores


@dataclass(frozen=True)
class PersonBox:
    box: Box
    score: float


class PeopleDetector:
    """Full-body HOG person detector over an image pyramid.

    ``max_side`` downscales the frame first: pedestrians must be >= 128 px tall at the working
    scale, so a 400 px long side (225 px high for 16:9) finds anyone taller than ~57 % of the
    frame height, which is what a second person standing in the shot looks like, and keeps the
    cost to tens of milliseconds.
    """

    # SVM margin 0.8 rather than OpenCV's 0 + grouping: we sample few frames and cannot rely on
    # many overlapping hits, and a single stray window must not reject a clip
    def __init__(
        self, hit_threshold: float = 0.8, scale_step: float = 1.25, max_side: int = 400
    ) -> None:
        self.hit_threshold = hit_threshold
        self.scale_step = scale_step
        self.max_side = max_side
        self._cv_hog = None
        if hasattr(cv2, "HOGDescriptor"):
            self._cv_hog = cv2.HOGDescriptor()
            self._cv_hog.setSVMDetector(cv2.HOGDescriptor.getDefaultPeopleDetector())

    def detect(self, bgr: np.ndarray) -> list[PersonBox]:
        h, w = bgr.shape[:2]
        f = min(1.0, self.max_side / max(h, w))
        small = cv2.resize(bgr, (round(w * f), round(h * f)), interpolation=cv2.INTER_AREA)
        found: list[PersonBox] = []
        if self._cv_hog is not None:
            rects, weights = self._cv_hog.detectMultiScale(
                small, hitThreshold=self.hit_threshold, winStride=(8, 8), scale=self.scale_step
            )
            for (x, y, rw, rh), s in zip(rects, np.ravel(weights), strict=False):
                found.append(PersonBox(Box(x / f, y / f, rw / f, rh / f), float(s)))
            return _nms(found)
        scale = 1.0
        while True:
            sh, sw = round(small.shape[0] / scale), round(small.shape[1] / scale)
            if sh < _WIN_H or sw < _WIN_W:
                break
            level = cv2.resize(small, (sw, sh), interpolation=cv2.INTER_LINEAR)
            scores = window_scores(level)
            for r, c in zip(*np.nonzero(scores > self.hit_threshold), strict=True):
                k = scale / f
                found.append(
                    PersonBox(
                        Box(c * _CELL * k, r * _CELL * k, _WIN_W * k, _WIN_H * k),
                        float(scores[r, c]),
                    )
                )
            scale *= self.scale_step
        return _nms(found)


def _nms(boxes: list[PersonBox], overlap: float = 0.3) -> list[PersonBox]:
    kept: list[PersonBox] = []
    for b in sorted(boxes, key=lambda p: (-p.score, p.box.x, p.box.y)):
        if all(iou(b.box, k.box) < overlap and not _inside(b.box, k.box) for k in kept):
            kept.append(b)
    return kept


def _inside(a: Box, b: Box) -> bool:
    """A box mostly inside a stronger one is the same person at another pyramid level."""
    ix = max(0.0, min(a.x2, b.x2) - max(a.x, b.x))
    iy = max(0.0, min(a.y2, b.y2) - max(a.y, b.y))
    return ix * iy > 0.6 * min(a.area, b.area)
