"""Join transition videos into one film (ffmpeg) and draw a thumbnail strip of it.

Cut joins concatenate frames exactly (the film has the sum of the transitions' frames).
Crossfades overlap consecutive clips by `crossfade_s` with ffmpeg's xfade filter, so the film
is shorter by that overlap at every join.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np

from loraforge.runtime.errors import InvalidInput, LoraforgeError


def _ffmpeg() -> str:
    import imageio_ffmpeg

    return str(imageio_ffmpeg.get_ffmpeg_exe())


def _run(args: list[str]) -> None:
    proc = subprocess.run(
        [_ffmpeg(), "-hide_banner", "-loglevel", "error", "-y", *args],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if proc.returncode:
        raise LoraforgeError(f"ffmpeg failed: {proc.stderr.strip()[-800:]}")


def count_frames(path: Path) -> int:
    import imageio_ffmpeg

    frames, _ = imageio_ffmpeg.count_frames_and_secs(str(path))
    return int(frames)


def join(
    videos: list[Path], out: Path, *, fps: int, mode: str = "cut", crossfade_s: float = 0.5
) -> Path:
    if not videos:
        raise InvalidInput("nothing to join: the scenario produced no transition video")
    out.parent.mkdir(parents=True, exist_ok=True)
    encode = ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-preset", "veryfast", "-crf", "18", "-an"]
    if len(videos) == 1 or mode == "cut":
        inputs = [a for v in videos for a in ("-i", str(v))]
        streams = "".join(f"[{i}:v]fps={fps},setsar=1[v{i}];" for i in range(len(videos)))
        concat = "".join(f"[v{i}]" for i in range(len(videos)))
        graph = f"{streams}{concat}concat=n={len(videos)}:v=1:a=0[out]"
        _run(
            [*inputs, "-filter_complex", graph, "-map", "[out]", "-r", str(fps), *encode, str(out)]
        )
        return out
    if mode != "crossfade":
        raise InvalidInput(f"unknown join mode {mode!r}; use cut or crossfade")
    durations = [count_frames(v) / fps for v in videos]
    if min(durations) <= crossfade_s:
        raise InvalidInput(
            f"crossfade of {crossfade_s}s is longer than a {min(durations):.2f}s transition; "
            "shorten the crossfade or lengthen the transitions"
        )
    inputs = [a for v in videos for a in ("-i", str(v))]
    parts = [f"[{i}:v]fps={fps},setsar=1,settb=AVTB[s{i}]" for i in range(len(videos))]
    prev, offset = "s0", 0.0
    for i in range(1, len(videos)):
        offset += durations[i - 1] - crossfade_s
        label = f"x{i}"
        parts.append(
            f"[{prev}][s{i}]xfade=transition=fade:duration={crossfade_s}:offset={offset:.6f}[{label}]"
        )
        prev = label
    _run(
        [
            *inputs,
            "-filter_complex",
            ";".join(parts),
            "-map",
            f"[{prev}]",
            "-r",
            str(fps),
            *encode,
            str(out),
        ]
    )
    return out


def thumbnail_strip(video: Path, out: Path, *, count: int = 8, height: int = 96) -> Path:
    """`count` frames evenly spread over the film, side by side, as one PNG."""
    import imageio_ffmpeg
    from PIL import Image

    total = max(count_frames(video), 1)
    wanted = {int(i * (total - 1) / max(count - 1, 1)) for i in range(count)}
    reader = imageio_ffmpeg.read_frames(str(video))
    meta = next(reader)
    w, h = meta["size"]
    tiles = []
    for index, raw in enumerate(reader):
        if index in wanted:
            frame = np.frombuffer(raw, dtype=np.uint8).reshape(h, w, 3)
            tile = Image.fromarray(frame)
            tiles.append(tile.resize((max(1, round(w * height / h)), height)))
    reader.close()
    strip = Image.new("RGB", (sum(t.width for t in tiles), height))
    x = 0
    for tile in tiles:
        strip.paste(tile, (x, 0))
        x += tile.width
    out.parent.mkdir(parents=True, exist_ok=True)
    strip.save(out)
    return out
