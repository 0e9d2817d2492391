"""Axis-aligned boxes in pixel coordinates of the frame they were found in."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Box:
    x: float
    y: float
    w: float
    h: float

    @property
    def x2(self) -> float:
        return self.x + self.w

    @property
    def y2(self) -> float:
        return self.y + self.h

    @property
    def area(self) -> float:
        return max(0.0, self.w) * max(0.0, self.h)

    @property
    def center(self) -> tuple[float, float]:
        return self.x + self.w / 2, self.y + self.h / 2

    def scaled(self, f: float) -> Box:
        return Box(self.x * f, self.y * f, self.w * f, self.h * f)

    def clipped(self, width: int, height: int) -> tuple[int, int, int, int]:
        """Integer (x0, y0, x1, y1) inside a width x height image, for slicing."""
        x0 = int(max(0, min(width, round(self.x))))
        y0 = int(max(0, min(height, round(self.y))))
        x1 = int(max(x0, min(width, round(self.x2))))
        y1 = int(max(y0, min(height, round(self.y2))))
        return x0, y0, x1, y1


def iou(a: Box, b: Box) -> float:
    ix = max(0.0, min(a.x2, b.x2) - max(a.x, b.x))
    iy = max(0.0, min(a.y2, b.y2) - max(a.y, b.y))
    inter = ix * iy
    union = a.area + b.area - inter
    return inter / union if union > 0 else 0.0


def contains_point(b: Box, x: float, y: float) -> bool:
    return b.x <= x <= b.x2 and b.y <= y <= b.y2
