"""Ingest benchmark: our probe + shots + cut + keyframes vs PySceneDetect's CLI (detect + split-video).

Run: .venv/bin/python bench/ingest.py [--seconds 60] [--keep DIR]

Generates ~60 s of 720p30 multi-shot footage from scikit-image photos (pans, zooms, hard
cuts, one fade), then times both tools on it in the same run with the same detector
(adaptive) and the same x264 preset (veryfast). Note the outputs differ by design: we encode
at 16 fps (Wan's training rate) and trim shot edges; PySceneDetect keeps the source rate.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "unit" / "ingest"))

from footage import ShotSpec, make_footage
from loraforge.ingest import IngestOptions, process_source
from loraforge.ingest.tools import MediaTools

_PHOTOS = ["astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "stereo_motorcycle", "retina"]
_MOTIONS = ["pan", "zoom", "still"]


def reel_specs(seconds: float, fps: float) -> list[ShotSpec]:
    # Shot lengths cycle through 2-9 s so planning sees short, normal and long shots.
    lengths = [4.5, 7.0, 2.0, 5.5, 9.0, 3.5, 6.0]
    specs, total, i = [], 0.0, 0
    while total < seconds - 1.0:
        length = min(lengths[i % len(lengths)], seconds - total)
        fade = i == 3  # one fade through black, in the middle
        specs.append(ShotSpec(_PHOTOS[i % len(_PHOTOS)], int(length * fps), _MOTIONS[i % len(_MOTIONS)],
                              fade_out=12 if fade else 0, black_after=8 if fade else 0,
                              fade_in=12 if i == 4 else 0))
        total += length + (8 / fps if fade else 0)
        i += 1
    return specs


def theirs(video: Path, out: Path, ffmpeg: str, detect_only: bool) -> tuple[float, int]:
    bindir = out.parent / "bin"
    bindir.mkdir(exist_ok=True)
    link = bindir / "ffmpeg"
    if not link.exists():
        link.symlink_to(ffmpeg)  # split-video calls "ffmpeg" from PATH
    env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}"}
    cmd = [str(Path(sys.executable).with_name("scenedetect")), "-q", "-i", str(video), "-o", str(out),
           "detect-adaptive"]
    cmd += ["list-scenes", "-q"] if detect_only else ["split-video", "-q"]
    t = time.perf_counter()
    subprocess.run(cmd, check=True, env=env)
    wall = time.perf_counter() - t
    return wall, len(list(out.glob("*.mp4"))) if not detect_only else len(
        [line for line in next(out.glob("*.csv")).read_text().splitlines()[2:] if line.strip()])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--keep", type=Path, default=None, help="keep outputs in this folder")
    args = ap.parse_args()
    tools = MediaTools.discover()
    work = Path(tempfile.mkdtemp(prefix="bench-ingest-")) if args.keep is None else args.keep
    work.mkdir(parents=True, exist_ok=True)
    try:
        t = time.perf_counter()
        foot = make_footage(work / "reel720.mp4", reel_specs(args.seconds, 30.0), size=(1280, 720), fps=30.0,
                            codec=["-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-pix_fmt", "yuv420p"])
        gen = time.perf_counter() - t
        n_frames = len(foot.labels)
        print(f"footage: {n_frames / 30:.1f} s, 1280x720@30, {len(foot.specs)} shots, "
              f"{len(foot.hard_cuts)} hard cuts + 1 fade, generated in {gen:.1f} s")

        t = time.perf_counter()
        res = process_source(foot.path, IngestOptions(), work / "ours")
        ours = time.perf_counter() - t
        t_detect_theirs, scenes = theirs(foot.path, work / "theirs_detect", tools.ffmpeg, detect_only=True)
        t_theirs, files = theirs(foot.path, work / "theirs_split", tools.ffmpeg, detect_only=False)

        ours_detect = res.timings.get("probe", 0) + res.timings.get("detect", 0)
        rows = [
            ("ours (probe+shots+cut+keyframes)", ours_detect, res.timings.get("cut", 0.0), ours,
             f"{len(res.shots)} shots, {len(res.clips)} clips @16fps + {3 * len(res.clips)} keyframes"),
            ("PySceneDetect CLI detect-adaptive split-video", t_detect_theirs, t_theirs - t_detect_theirs, t_theirs,
             f"{scenes} scenes, {files} files @30fps"),
        ]
        header = f"| {'tool':46} | {'detect s':>8} | {'cut s':>7} | {'total s':>7} | output |"
        lines = [header, "|" + "-" * 48 + "|" + "-" * 10 + "|" + "-" * 9 + "|" + "-" * 9 + "|--------|"]
        for name, d, c, total, note in rows:
            lines.append(f"| {name:46} | {d:8.2f} | {c:7.2f} | {total:7.2f} | {note} |")
        ratio = ours / t_theirs
        print("\n".join(lines))
        print(f"\nratio ours/theirs (total wall): {ratio:.2f}  (target <= 1.0)")
        print("(theirs: detect = a separate detect-only run; cut = split run minus detect run)")
        print(f"python {platform.python_version()}, {os.cpu_count()} CPUs, ffmpeg {Path(tools.ffmpeg).name}")
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
