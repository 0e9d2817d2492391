"""Curation throughput on 720p footage vs the decode floor, in the same run.

    .venv/bin/python bench/curation.py [--clips 4] [--seconds 8]

Builds H.264 720p30 clips from a real photo (skimage's astronaut, panning so that every frame
differs), then times (1) decoding every frame with cv2.VideoCapture alone and (2) the full
curate() call (sampling, faces, people, pose, expression, quality, overlays, motion, identity,
dedup, decision, selection). Reports seconds of footage per wall second for both and the ratio.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import imageio_ffmpeg
import skimage.data

from loraforge.curation.dlib_backend import DlibBackend
from loraforge.curation.pipeline import MediaItem, curate
from loraforge.curation.policy import CurationPolicy

W, H, FPS = 1280, 720, 30


def make_clip(path: Path, seconds: float, seed: int) -> None:
    src = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)
    big = cv2.resize(src, (1600, 1600), interpolation=cv2.INTER_CUBIC)
    proc = subprocess.Popen(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-y", "-f", "rawvideo",
         "-pix_fmt", "bgr24", "-s", f"{W}x{H}", "-r", str(FPS), "-i", "-",
         "-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-pix_fmt", "yuv420p", str(path)],
        stdin=subprocess.PIPE,
    )
    n = int(seconds * FPS)
    for i in range(n):
        x = 40 + seed * 20 + i
        proc.stdin.write(cv2.resize(big[0:900, x : x + 1600], (W, H)).tobytes())
    proc.stdin.close()
    proc.wait()


def decode_all(paths: list[Path]) -> int:
    frames = 0
    for p in paths:
        cap = cv2.VideoCapture(str(p))
        while cap.read()[0]:
            frames += 1
        cap.release()
    return frames


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clips", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=8.0)
    args = ap.parse_args()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as d:
        paths = [Path(d) / f"clip{i}.mp4" for i in range(args.clips)]
        for i, p in enumerate(paths):
            make_clip(p, args.seconds, i)
        footage = args.clips * args.seconds
        backend = DlibBackend()  # model loading is a one-off per worker, not per clip
        decode_all(paths[:1])  # warm the codec and page cache for both measurements
        t = time.perf_counter()
        frames = decode_all(paths)
        t_dec = time.perf_counter() - t
        t = time.perf_counter()
        res = curate([MediaItem(p) for p in paths], CurationPolicy(), backend=backend)
        t_cur = time.perf_counter() - t
    dec_rate, cur_rate = footage / t_dec, footage / t_cur
    rows = [
        ("decode only (floor)", t_dec, dec_rate),
        ("curation (8 frames/clip, 1 embedded)", t_cur, cur_rate),
    ]
    print(f"{args.clips} clips x {args.seconds:g} s of {W}x{H}@{FPS} H.264 = {footage:g} s, "
          f"{frames} frames; cpus={os.cpu_count()}; python {sys.version.split()[0]}; "
          f"load average (1 min) {load_before:.2f} before, {os.getloadavg()[0]:.2f} after")
    print("| stage | wall s | footage s / wall s |")
    print("|---|---:|---:|")
    for name, wall, rate in rows:
        print(f"| {name} | {wall:.2f} | {rate:.1f} |")
    print(f"| ratio curation / decode | | {cur_rate / dec_rate:.2f} |")
    kept = sum(c.decision.keep for c in res.clips)
    print(f"(sanity: {kept}/{len(res.clips)} clips kept, reasons {res.rejection_counts()})")


if __name__ == "__main__":
    main()
