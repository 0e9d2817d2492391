"""Ingest benchmark: our probe + shots + cut + keyframes + analysis proxies vs PySceneDetect's
CLI (detect-adaptive + split-video), in the same run.

Run: .venv/bin/python bench/ingest.py [--short | --reel] [--seconds 60] [--keep DIR]

--short (default): several short real-world-like sources where per-job and per-file costs
dominate: a 10 fps street camera (640x480), 720p30 and 720p25 multi-shot files, an SD 24 fps
file, and an SD 25 fps file whose audio track is broken (AAC data labelled AC-3), 10-45 s each,
all built from scikit-image photos (pans, zooms, hard cuts, a fade). Ours is one ingest of all
files (`process_many`, as one job runs them); theirs is one `scenedetect` run per file.
--reel: one --seconds long 720p30 multi-shot reel (the earlier benchmark).

Both use the adaptive detector and x264 veryfast. The outputs differ by design: we encode at
16 fps (Wan's training rate; a slower source keeps its own), trim shot edges and drop shots
under 3 s, and write keyframes and proxies; PySceneDetect keeps the source rate and every scene.
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
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "unit" / "ingest"))

from footage import ShotSpec, make_footage  # noqa: E402

from loraforge.ingest import IngestOptions, process_many, process_source  # noqa: E402
from loraforge.ingest.tools import MediaTools  # noqa: E402

_PHOTOS = [
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "immunohistochemistry",
    "stereo_motorcycle",
    "retina",
]
_MOTIONS = ["pan", "zoom", "still"]


def reel_specs(seconds: float, fps: float) -> list[ShotSpec]:
    # Shot lengths cycle through 2-9 s so planning sees short, normal and long shots.
    lengths = [4.5, 7.0, 2.0, 5.5, 9.0, 3.5, 6.0]
    specs, total, i = [], 0.0, 0
    while total < seconds - 1.0:
        length = min(lengths[i % len(lengths)], seconds - total)
        fade = i == 3  # one fade through black, in the middle
        specs.append(
            ShotSpec(
                _PHOTOS[i % len(_PHOTOS)],
                int(length * fps),
                _MOTIONS[i % len(_MOTIONS)],
                fade_out=12 if fade else 0,
                black_after=8 if fade else 0,
                fade_in=12 if i == 4 else 0,
            )
        )
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
    cmd = [
        str(Path(sys.executable).with_name("scenedetect")),
        "-q",
        "-i",
        str(video),
        "-o",
        str(out),
        "detect-adaptive",
    ]
    cmd += ["list-scenes", "-q"] if detect_only else ["split-video", "-q"]
    t = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        print(
            f"  scenedetect failed on {video.name} (exit {proc.returncode}): "
            f"{proc.stderr.strip()[-200:]}"
        )
        return wall, 0
    return wall, len(list(out.glob("*.mp4"))) if not detect_only else len(
        [line for line in next(out.glob("*.csv")).read_text().splitlines()[2:] if line.strip()]
    )


# name, size, fps, shots (photo, seconds, motion); one source gets a broken audio track
SHORT = [
    ("street10", (640, 480), 10.0, [("coffee", 6.0, "pan"), ("rocket", 6.0, "still")]),
    (
        "interview720",
        (1280, 720),
        30.0,
        [("astronaut", 8.0, "still"), ("chelsea", 5.0, "zoom"), ("astronaut", 7.0, "pan")],
    ),
    (
        "film_sd24",
        (854, 480),
        24.0,
        [
            ("stereo_motorcycle", 9.0, "pan"),
            ("coffee", 2.0, "still"),
            ("astronaut", 12.0, "zoom"),
            ("rocket", 7.0, "pan"),
        ],
    ),
    (
        "broken_audio_sd25",
        (720, 576),
        25.0,
        [("chelsea", 7.0, "pan"), ("immunohistochemistry", 8.0, "zoom")],
    ),
    (
        "reel720_25",
        (1280, 720),
        25.0,
        [
            ("rocket", 4.5, "pan"),
            ("astronaut", 7.0, "zoom"),
            ("coffee", 2.0, "still"),
            ("chelsea", 9.0, "pan"),
            ("stereo_motorcycle", 5.5, "zoom"),
            ("retina", 6.0, "pan"),
            ("astronaut", 6.0, "still"),
        ],
    ),
]


def make_short(folder: Path, ffmpeg: str) -> list[Path]:
    out = []
    x264 = ["-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-pix_fmt", "yuv420p"]
    for name, size, fps, shots in SHORT:
        specs = [
            ShotSpec(
                photo,
                int(sec * fps),
                motion,
                fade_out=12 if i == 1 and len(shots) > 3 else 0,
                black_after=8 if i == 1 and len(shots) > 3 else 0,
            )
            for i, (photo, sec, motion) in enumerate(shots)
        ]
        video = folder / f"{name}.video.mp4"
        make_footage(video, specs, size=size, fps=fps, codec=x264)
        path = folder / (f"{name}.mkv" if "broken_audio" in name else f"{name}.mp4")
        seconds = sum(s.frames + s.black_after for s in specs) / fps
        # every source has a sound track, as camera files do
        subprocess.run(
            [
                ffmpeg,
                "-hide_banner",
                "-loglevel",
                "error",
                "-y",
                "-i",
                str(video),
                "-f",
                "lavfi",
                "-i",
                f"sine=frequency=330:duration={seconds}",
                "-map",
                "0:v",
                "-map",
                "1:a",
                "-c:v",
                "copy",
                "-c:a",
                "aac",
                "-shortest",
                str(path),
            ],
            check=True,
        )
        video.unlink()
        if "broken_audio" in name:
            # the track says AC-3 but holds AAC: every audio packet fails to decode
            data = path.read_bytes()
            assert data.count(b"A_AAC") == 1
            path.write_bytes(data.replace(b"A_AAC", b"A_AC3"))
        out.append(path)
    return out


def short_main(work: Path, tools: MediaTools) -> None:
    t = time.perf_counter()
    paths = make_short(work, tools.ffmpeg)
    probe_s = {
        p.name: subprocess.run(
            [tools.ffmpeg, "-hide_banner", "-i", str(p)], capture_output=True, text=True
        ).stderr
        for p in paths
    }
    footage = 0.0
    for _name, _size, _fps, shots in SHORT:
        footage += sum(sec for _, sec, _ in shots)
    print(
        f"footage: {len(paths)} files, {footage:.0f} s in total, generated in "
        f"{time.perf_counter() - t:.1f} s"
    )
    load0 = os.getloadavg()
    # the decode floor of the same files in the same run: ffmpeg decoding each video once
    t = time.perf_counter()
    for p in paths:
        subprocess.run(
            [
                tools.ffmpeg,
                "-nostdin",
                "-hide_banner",
                "-loglevel",
                "error",
                "-i",
                str(p),
                "-map",
                "0:v:0",
                "-f",
                "null",
                "-",
            ],
            check=True,
        )
    t_decode = time.perf_counter() - t
    t = time.perf_counter()
    outcomes = process_many(paths, IngestOptions(), work / "ours", tools=tools)
    ours = time.perf_counter() - t
    t_theirs, files = 0.0, 0
    for p in paths:
        wall, n = theirs(p, work / f"theirs_{p.stem}", tools.ffmpeg, detect_only=False)
        t_theirs += wall
        files += n
    load1 = os.getloadavg()
    clips = sum(len(o.result.clips) for o in outcomes if o.result)
    errors = [f"{o.source.name}: {o.error}" for o in outcomes if o.error]
    timings: dict[str, float] = {}
    for o in outcomes:
        for k, v in (o.result.timings if o.result else {}).items():
            timings[k] = timings.get(k, 0.0) + v
    print("| tool | total s | x decode speed | output |\n|---|---:|---:|---|")
    print(f"| ffmpeg decode only, per file (floor) | {t_decode:.2f} | 1.00 | nothing |")
    print(
        f"| ours: one ingest of the {len(paths)} files | {ours:.2f} | {t_decode / ours:.2f} | "
        f"{clips} clips "
        f"@<=16 fps + keyframes + proxies; probe {timings.get('probe', 0):.2f} s, detect "
        f"{timings.get('detect', 0):.2f} s, cut {timings.get('cut', 0):.2f} s |"
    )
    print(
        f"| PySceneDetect CLI detect-adaptive split-video, per file | {t_theirs:.2f} | "
        f"{t_decode / t_theirs:.2f} | "
        f"{files} files @source fps |"
    )
    print(f"\nratio ours/theirs (total wall): {ours / t_theirs:.2f}  (target <= 1.0)")
    if errors:
        print("ours, per-file errors: " + "; ".join(errors))
    rates = {o.source.name: o.result.frame_rate for o in outcomes if o.result}
    print(
        "frame rates: "
        + "; ".join(
            f"{k}: source {v['source_fps']:g}, clips {v['clip_fps']}" for k, v in rates.items()
        )
    )
    audio = [line.strip() for line in probe_s[paths[3].name].splitlines() if "Audio" in line]
    print(f"broken-audio source's track as ffmpeg reads it: {audio[:1]}")
    print(
        f"load average (1/5 min) {load0[0]:.2f}/{load0[1]:.2f} before, "
        f"{load1[0]:.2f}/{load1[1]:.2f} after"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--keep", type=Path, default=None, help="keep outputs in this folder")
    ap.add_argument(
        "--reel", action="store_true", help="one long reel instead of the short sources"
    )
    args = ap.parse_args()
    tools = MediaTools.discover()
    work = Path(tempfile.mkdtemp(prefix="bench-ingest-")) if args.keep is None else args.keep
    work.mkdir(parents=True, exist_ok=True)
    print(
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs, "
        f"ffmpeg {Path(tools.ffmpeg).name}"
    )
    if not args.reel:
        try:
            short_main(work, tools)
        finally:
            if args.keep is None:
                shutil.rmtree(work, ignore_errors=True)
        return
    try:
        t = time.perf_counter()
        foot = make_footage(
            work / "reel720.mp4",
            reel_specs(args.seconds, 30.0),
            size=(1280, 720),
            fps=30.0,
            codec=["-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-pix_fmt", "yuv420p"],
        )
        gen = time.perf_counter() - t
        n_frames = len(foot.labels)
        print(
            f"footage: {n_frames / 30:.1f} s, 1280x720@30, {len(foot.specs)} shots, "
            f"{len(foot.hard_cuts)} hard cuts + 1 fade, generated in {gen:.1f} s"
        )

        t = time.perf_counter()
        res = process_source(foot.path, IngestOptions(), work / "ours")
        ours = time.perf_counter() - t
        t_detect_theirs, scenes = theirs(
            foot.path, work / "theirs_detect", tools.ffmpeg, detect_only=True
        )
        t_theirs, files = theirs(foot.path, work / "theirs_split", tools.ffmpeg, detect_only=False)

        ours_detect = res.timings.get("probe", 0) + res.timings.get("detect", 0)
        rows = [
            (
                "ours (probe+shots+cut+keyframes)",
                ours_detect,
                res.timings.get("cut", 0.0),
                ours,
                f"{len(res.shots)} shots, {len(res.clips)} clips @16fps + "
                f"{3 * len(res.clips)} keyframes",
            ),
            (
                "PySceneDetect CLI detect-adaptive split-video",
                t_detect_theirs,
                t_theirs - t_detect_theirs,
                t_theirs,
                f"{scenes} scenes, {files} files @30fps",
            ),
        ]
        header = f"| {'tool':46} | {'detect s':>8} | {'cut s':>7} | {'total s':>7} | output |"
        lines = [
            header,
            "|" + "-" * 48 + "|" + "-" * 10 + "|" + "-" * 9 + "|" + "-" * 9 + "|--------|",
        ]
        for name, d, c, total, note in rows:
            lines.append(f"| {name:46} | {d:8.2f} | {c:7.2f} | {total:7.2f} | {note} |")
        ratio = ours / t_theirs
        print("\n".join(lines))
        print(f"\nratio ours/theirs (total wall): {ratio:.2f}  (target <= 1.0)")
        print("(theirs: detect = a separate detect-only run; cut = split run minus detect run)")
        print(
            f"python {platform.python_version()}, {os.cpu_count()} CPUs, "
            f"ffmpeg {Path(tools.ffmpeg).name}"
        )
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
