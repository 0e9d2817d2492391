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
_CROPDETECT = re.compile(rb"Parsed_cropdetect.*\bx1:(\d+) x2:(\d+) y1:(\d+) y2:(\d+)")


def analysis_size(probe: ProbeResult, width: int) -> tuple[int, int]:
    """Small size with the display aspect, even dimensions (some scalers require it)."""
    w = min(width, probe.width)
    h = max(2, int(round(w * probe.height / probe.width / 2.0)) * 2)
    return max(2, w // 2 * 2), h


class LowResDecode:
    """Iterate BGR frames (OpenCV's channel order, what PySceneDetect detectors expect).

    After iteration: ``pts`` holds each frame's time in seconds, ``frames`` the count,
    ``errors`` the decoder's complaints (empty for a clean file), ``pictures`` each full-size
    frame's picture box from ffmpeg's cropdetect (x1, x2, y1, y2; None for a black frame), for
    matte.py.
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
        self.pictures: list[tuple[int, int, int, int] | None] = []
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
            # cropdetect (reset every frame, none skipped) each full-size frame's picture box
            "-vf",
            f"cropdetect=round=2:reset=1:skip=0,scale={w}:{h}:flags=area,showinfo",
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
                x1, x2, y1, y2 = (int(v) for v in c.groups())
                self.pictures.append((x1, x2, y1, y2) if x2 >= x1 and y2 >= y1 else None)
            elif (
                b"rror" in line
                or b"nvalid" in line
                or b"runcat" in line
                or b"corrupt" in line
                or b"partial file" in line
            ):
                errors.append(line.decode("utf-8", "replace").strip())
        stream.close()
