"""One low-resolution decode pass over a video.

Shot detection only needs small frames, and scaling inside ffmpeg (multi-threaded, before the
pipe) is much cheaper than decoding full frames into Python and shrinking them there, which is
what PySceneDetect's own OpenCV backend does. The same pass measures what probing can only
estimate: the exact frame count and every frame's timestamp (so VFR sources are handled), via
ffmpeg's ``showinfo`` filter on stderr.
"""

from __future__ import annotations

import re
import subprocess
import threading
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import numpy as np

from loraforge.ingest.models import ProbeResult
from loraforge.ingest.tools import MediaTools
from loraforge.runtime.errors import Cancelled

_SHOWINFO = re.compile(rb"\bn:\s*(\d+)\s+pts:\s*(-?\d+)\s+pts_time:\s*(-?[\d.]+)")
_CROPDETECT = re.compile(rb"Parsed_cropdetect_(\d+).*\bx1:(\d+) x2:(\d+) y1:(\d+) y2:(\d+)")


def analysis_size(probe: ProbeResult, width: int) -> tuple[int, int]:
    """Small size with the display aspect, even dimensions (some scalers require it)."""
    w = min(width, probe.width)
    h = max(2, int(round(w * probe.height / probe.width / 2.0)) * 2)
    return max(2, w // 2 * 2), h


Box = tuple[int, int, int, int]  # cropdetect's x1, x2, y1, y2 (inclusive)
# cropdetect's thresholds, as fractions of the range (so 10-bit sources read the same). Its
# default (luma 24 of 255) finds black bars next to a night scene's dark picture but misses bars
# at a dark grey (a film scan, a lifted black: RGB 16 is luma ~30); 0.13 (luma 33, RGB ~20)
# finds those but takes a night scene's dark rows for bars too. matte.frame_bars keeps, on each
# side, the deepest edge that the frame's flat dark run reaches: a loose edge inside a dark
# picture is not reached (the run stops at the matte's step).
CROP_LIMITS = (24 / 255, 0.13)


class LowResDecode:
    """Iterate BGR frames (OpenCV's channel order, what PySceneDetect detectors expect).

    After iteration: ``pts`` holds each frame's time in seconds, ``frames`` the count,
    ``errors`` the decoder's complaints (empty for a clean file), ``pictures`` each full-size
    frame's picture boxes from ffmpeg's cropdetect at its two thresholds (CROP_LIMITS; each
    x1, x2, y1, y2, or None where the frame is all below it), for matte.py.
    """

    def __init__(
        self,
        path: Path,
        probe: ProbeResult,
        width: int,
        tools: MediaTools,
        cancel_check: Callable[[], bool] | None = None,
    ) -> None:
        self.path = Path(path)
        self.size = analysis_size(probe, width)
        self.tools = tools
        self.cancel_check = cancel_check
        self.pts: list[float] = []
        self.pictures: list[tuple[Box | None, ...]] = []
        self._boxes: list[Box | None] = []  # the current frame's, one per threshold
        self.frames = 0
        self.errors: list[str] = []
        self.returncode: int | None = None

    def __iter__(self) -> Iterator[np.ndarray]:
        w, h = self.size
        args = [
            self.tools.ffmpeg,
            "-nostdin",
            "-hide_banner",
            "-loglevel",
            "info",
            "-i",
            str(self.path),
            "-map",
            "0:v:0",
            "-an",
            "-sn",
            "-dn",
            # area scaling averages pixels like cv2.INTER_AREA; showinfo logs each frame's pts;
            # cropdetect (reset every frame, none skipped) each full-size frame's picture box,
            # once at each of CROP_LIMITS (it passes frames through unchanged)
            "-vf",
            ",".join(f"cropdetect=limit={lim}:round=2:reset=1:skip=0" for lim in CROP_LIMITS)
            + f",scale={w}:{h}:flags=area,showinfo",
            # passthrough: the rawvideo muxer would otherwise duplicate/drop frames to a constant
            # rate, and pipe frames would no longer match showinfo's timestamps.
            "-fps_mode",
            "passthrough",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "bgr24",
            "pipe:1",
        ]
        proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        errors: deque[str] = deque(maxlen=20)
        reader = threading.Thread(target=self._read_stderr, args=(proc.stderr, errors), daemon=True)
        reader.start()
        frame_bytes = w * h * 3
        assert proc.stdout is not None
        drained = False
        try:
            while True:
                buf = proc.stdout.read(frame_bytes)
                if len(buf) < frame_bytes:
                    drained = True
                    break
                self.frames += 1
                if self.cancel_check is not None and self.frames % 32 == 0 and self.cancel_check():
                    raise Cancelled(f"{self.path.name}: ingest cancelled")
                yield np.frombuffer(buf, dtype=np.uint8).reshape(h, w, 3)
        finally:
            if not drained:
                proc.kill()  # consumer stopped early (cancel or error)
            proc.stdout.close()
            self.returncode = proc.wait()
            reader.join(timeout=10)
            self.errors = list(errors)

    def _read_stderr(self, stream: IO[bytes], errors: deque[str]) -> None:
        for line in stream:
            m = _SHOWINFO.search(line)
            if m:
                self.pts.append(float(m.group(3)))
            elif c := _CROPDETECT.search(line):
                k, x1, x2, y1, y2 = (int(v) for v in c.groups())
                if k == 0:
                    self._boxes = []
                self._boxes.append((x1, x2, y1, y2) if x2 >= x1 and y2 >= y1 else None)
                if k == len(CROP_LIMITS) - 1:
                    self.pictures.append(tuple(self._boxes))
            elif (
                b"rror" in line
                or b"nvalid" in line
                or b"runcat" in line
                or b"corrupt" in line
                or b"partial file" in line
            ):
                errors.append(line.decode("utf-8", "replace").strip())
        stream.close()
