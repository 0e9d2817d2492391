"""Video probing: ffprobe when available, otherwise parsing ``ffmpeg -i``.

The fallback exists because the media extra ships only imageio-ffmpeg (no ffprobe). Both paths
return the same ``ProbeResult``; frame counts and the VFR flag are estimates until the decode
pass in ``decode.py`` replaces them with measured values.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from fractions import Fraction
from pathlib import Path
from typing import Any

from loraforge.ingest.errors import AudioOnly, CorruptMedia, VideoTooLarge, VideoTooSmall
from loraforge.ingest.models import ProbeResult
from loraforge.ingest.options import MediaLimits
from loraforge.ingest.tools import MediaTools, run, tail

_PROBE_TIMEOUT = 120.0


def probe(
    path: Path, tools: MediaTools | None = None, limits: MediaLimits | None = None
) -> ProbeResult:
    """Describe the first video stream of ``path``; raise an ``IngestError`` for unusable files."""
    path = Path(path)
    tools = tools or MediaTools.discover()
    raw = _ffprobe(path, tools.ffprobe) if tools.ffprobe else _ffmpeg_info(path, tools.ffmpeg)
    result = _finish(path, raw)
    check_limits(result, limits or MediaLimits())
    return result


def check_limits(p: ProbeResult, limits: MediaLimits) -> None:
    name = p.path.name
    short, long_ = sorted((p.width, p.height))
    if short < limits.min_side:
        raise VideoTooSmall(
            f"{name}: the video is {p.width}x{p.height} px, below the minimum of "
            f"{limits.min_side} px per side; upload the original, higher-resolution video"
        )
    if long_ > limits.max_side or p.width * p.height > limits.max_pixels:
        raise VideoTooLarge(
            f"{name}: the video is {p.width}x{p.height} px, above the limit of "
            f"{limits.max_side} px per side ({limits.max_pixels / 1e6:.1f} MP); "
            f"downscale it (e.g. to 3840x2160) and upload again"
        )
    if p.duration > limits.max_duration_seconds:
        raise VideoTooLarge(
            f"{name}: the video lasts {p.duration / 60:.0f} min, above the limit of "
            f"{limits.max_duration_seconds / 60:.0f} min; cut it into shorter parts"
        )


# --- ffprobe -------------------------------------------------------------------------------


def _ffprobe(path: Path, ffprobe: str) -> dict[str, Any]:
    # ffprobe directly, with a timeout and its stderr in the error: a corrupt upload's message
    # should say what ffprobe saw.
    proc = run(
        [ffprobe, "-v", "error", "-show_format", "-show_streams", "-of", "json", str(path)],
        timeout=_PROBE_TIMEOUT,
    )
    if proc.returncode != 0:
        raise _corrupt(path, tail(proc.stderr))
    try:
        data = json.loads(proc.stdout or b"{}")
    except json.JSONDecodeError as exc:
        raise _corrupt(path, f"unreadable ffprobe output: {exc}") from exc
    fmt = data.get("format", {})
    streams = data.get("streams", [])
    videos = [
        s
        for s in streams
        if s.get("codec_type") == "video" and not s.get("disposition", {}).get("attached_pic")
    ]
    has_audio = any(s.get("codec_type") == "audio" for s in streams)
    if not videos:
        return {"no_video": True, "has_audio": has_audio, "container": fmt.get("format_name", "")}
    v = videos[0]
    rotation = 0.0
    for sd in v.get("side_data_list", []) or []:
        if "rotation" in sd:
            rotation = -float(sd["rotation"])  # display matrix: counter-clockwise degrees
    if not rotation and "rotate" in (v.get("tags") or {}):
        rotation = float(v["tags"]["rotate"])  # legacy tag: clockwise degrees
    avg = _rate(v.get("avg_frame_rate"))
    real = _rate(v.get("r_frame_rate"))
    duration = _float(v.get("duration")) or _float(fmt.get("duration"))
    nb_frames = _int(v.get("nb_frames"))
    vfr = bool(avg and real and abs(real - avg) / avg > 0.01)
    if not vfr:
        # Matroska/WebM report the nominal rate for both fields, so look at real timestamps.
        vfr = _packets_vary(path, ffprobe, int(v.get("index", 0)))
        if vfr and duration and nb_frames:
            avg = nb_frames / duration
    return {
        "container": fmt.get("format_name", ""),
        "codec": v.get("codec_name", "unknown"),
        "coded_width": int(v.get("width") or 0),
        "coded_height": int(v.get("height") or 0),
        "sar": _ratio(v.get("sample_aspect_ratio")),
        "rotation": rotation,
        "fps": avg or real,
        # r_frame_rate (the timebase-friendly rate) differs from the average when frame
        # durations vary; the packet scan covers containers where it does not.
        "vfr": vfr,
        "duration": duration,
        "frame_count": nb_frames,
        "bitrate": _int(fmt.get("bit_rate")),
        "has_audio": has_audio,
        "pix_fmt": v.get("pix_fmt"),
        "color_transfer": _transfer(v.get("color_transfer")),
        "source": "ffprobe",
    }


_VFR_SCAN_PACKETS = 600


def _packets_vary(path: Path, ffprobe: str, stream: int) -> bool:
    """Whether frame durations vary over the first packets (demux only, no decoding: ~0.1 s)."""
    proc = run(
        [
            ffprobe,
            "-v",
            "error",
            "-select_streams",
            str(stream),
            "-read_intervals",
            f"%+#{_VFR_SCAN_PACKETS}",
            "-show_entries",
            "packet=pts_time",
            "-of",
            "csv=p=0",
            str(path),
        ],
        timeout=_PROBE_TIMEOUT,
    )
    times = sorted(
        t
        for t in (_float(x.strip().strip(",")) for x in proc.stdout.decode().split())
        if t is not None
    )
    return durations_vary(times)


def durations_vary(times: list[float]) -> bool:
    """True when frame-to-frame gaps differ by more than half a typical frame: real VFR, not
    the +-1 tick jitter that millisecond timebases (Matroska) put on constant-rate video."""
    if len(times) < 4:
        return False
    gaps = sorted(b - a for a, b in itertools.pairwise(times))
    median = gaps[len(gaps) // 2]
    # Ignore the extreme 1% on each side: a single dropped or duplicated frame is not VFR.
    trim = len(gaps) // 100
    core = gaps[trim : len(gaps) - trim] if trim else gaps
    return median > 0 and (core[-1] - core[0]) > 0.5 * median


# --- ffmpeg -i fallback ----------------------------------------------------------------------

_INPUT = re.compile(r"^Input #0, (?P<fmt>.+?), from ", re.MULTILINE)
_DURATION = re.compile(
    r"Duration: (?P<d>N/A|\d+:\d+:\d+(?:\.\d+)?)(?:, start: [-\d.]+)?, bitrate: (?P<b>N/A|\d+) kb/s"
)
_STREAM = re.compile(
    r"^\s*Stream #0:\d+(?:\[[^\]]*\])?(?:\([^)]*\))?: "
    r"(?P<type>Video|Audio|Data|Subtitle|Attachment): (?P<rest>.*)$",
    re.MULTILINE,
)
_SIZE = re.compile(r"(?:^|[ ,])(?P<w>\d{1,6})x(?P<h>\d{1,6})(?:[ ,]|$)")
_SAR = re.compile(r"\[SAR (?P<n>\d+):(?P<d>\d+) DAR")
_FPS = re.compile(r"(?P<v>[\d.]+)(?P<k>k?) fps")
_TBR = re.compile(r"(?P<v>[\d.]+)(?P<k>k?) tbr")
_ROT_MATRIX = re.compile(
    r"(?:displaymatrix|display matrix): rotation of (?P<r>-?[\d.]+) degrees", re.IGNORECASE
)
_COLOUR = re.compile(
    r"\((?:tv|pc), (?:(?P<csp>[\w-]+)/(?P<pri>[\w-]+)/(?P<trc>[\w-]+)|(?P<all>[\w-]+))[,)]"
)
_ROT_TAG = re.compile(r"^\s*rotate\s*:\s*(?P<r>-?\d+)", re.MULTILINE)


def _ffmpeg_info(path: Path, ffmpeg: str) -> dict[str, Any]:
    # ffmpeg exits 1 here ("At least one output file must be specified"); only stderr matters.
    proc = run([ffmpeg, "-hide_banner", "-nostdin", "-i", str(path)], timeout=_PROBE_TIMEOUT)
    text = proc.stderr.decode("utf-8", "replace")
    head = _INPUT.search(text)
    if not head:
        lines = [
            line
            for line in text.splitlines()
            if str(path) in line or "Error" in line or "error" in line
        ]
        raise _corrupt(path, " | ".join(lines[-3:]) or tail(proc.stderr))
    streams = list(_STREAM.finditer(text))
    videos = [m for m in streams if m["type"] == "Video" and "attached pic" not in m["rest"]]
    has_audio = any(m["type"] == "Audio" for m in streams)
    if not videos:
        return {"no_video": True, "has_audio": has_audio, "container": head["fmt"]}
    v = videos[0]
    rest = v["rest"]
    # The codec is the first word; the pixel format sits in the second comma field.
    codec = rest.split(",")[0].split()[0]
    fields = _split_top(rest)
    pix_fmt = fields[1].split("(")[0].strip() if len(fields) > 1 else None
    # "yuv420p10le(tv, bt2020nc/bt2020/arib-std-b67, progressive)": matrix/primaries/transfer
    # (one name when all three are the same, "bt709")
    colour = _COLOUR.search(fields[1]) if len(fields) > 1 else None
    size = _SIZE.search(rest)
    sar = _SAR.search(rest)
    fps = _FPS.search(rest)
    tbr = _TBR.search(rest)
    # Side data and metadata of this stream sit between its line and the next stream line.
    nxt = next((m.start() for m in streams if m.start() > v.start()), len(text))
    block = text[v.end() : nxt]
    rot = 0.0
    if m := _ROT_MATRIX.search(block):
        rot = -float(m["r"])
    elif m := _ROT_TAG.search(block):
        rot = float(m["r"])
    dur = _DURATION.search(text)
    duration = _hms(dur["d"]) if dur and dur["d"] != "N/A" else None
    avg = _kfloat(fps) if fps else None
    real = _kfloat(tbr) if tbr else None
    return {
        "container": head["fmt"],
        "codec": codec,
        "coded_width": int(size["w"]) if size else 0,
        "coded_height": int(size["h"]) if size else 0,
        "sar": float(Fraction(int(sar["n"]), int(sar["d"])))
        if sar and int(sar["d"]) and int(sar["n"])
        else 1.0,
        "rotation": rot,
        "fps": avg or real,
        "vfr": bool(avg and real and abs(real - avg) / avg > 0.01),
        "duration": duration,
        "frame_count": None,
        "bitrate": int(dur["b"]) * 1000 if dur and dur["b"] != "N/A" else None,
        "has_audio": has_audio,
        "pix_fmt": pix_fmt,
        "color_transfer": _transfer(colour["trc"] or colour["all"]) if colour else None,
        "source": "ffmpeg",
    }


def _transfer(name: str | None) -> str | None:
    return None if not name or name in ("unknown", "reserved", "progressive") else name


def _split_top(s: str) -> list[str]:
    """Split on commas outside parentheses/brackets ("yuv420p(tv, bt709)" stays one field)."""
    out: list[str] = []
    cur: list[str] = []
    depth = 0
    for ch in s:
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        if ch == "," and depth == 0:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur))
    return [f.strip() for f in out]


# --- shared ---------------------------------------------------------------------------------


def _finish(path: Path, raw: dict[str, Any]) -> ProbeResult:
    name = path.name
    if raw.get("no_video"):
        if raw["has_audio"]:
            raise AudioOnly(
                f"{name}: the file has an audio track but no video; upload the video itself"
            )
        raise CorruptMedia(
            f"{name}: the file has no video stream ({raw['container']}); upload a video file"
        )
    cw, ch = raw["coded_width"], raw["coded_height"]
    if cw <= 0 or ch <= 0:
        raise CorruptMedia(
            f"{name}: the video stream has no picture size (damaged header); "
            f"re-export the video and upload it again"
        )
    rotation = int(round(raw["rotation"] / 90.0)) * 90 % 360
    sar = raw["sar"] or 1.0
    # Display size: pixel aspect first (it applies to stored pixels), then rotation.
    dw, dh = (round(cw * sar) if sar != 1.0 else cw), ch
    if rotation in (90, 270):
        dw, dh = dh, dw
    fps = raw["fps"]
    if not fps or not math.isfinite(fps) or fps <= 0 or fps > 1000:
        raise CorruptMedia(
            f"{name}: the video has no usable frame rate; re-export it with a constant frame rate"
        )
    duration = raw["duration"]
    frame_count = raw["frame_count"]
    if not duration and frame_count:
        duration = frame_count / fps
    if not duration or duration <= 0:
        raise CorruptMedia(
            f"{name}: the video reports no duration (damaged or still being written); "
            f"upload the complete file again"
        )
    exact = frame_count is not None and frame_count > 0
    if not exact:
        frame_count = max(1, int(round(duration * fps)))
    return ProbeResult(
        path=path,
        container=raw["container"],
        codec=raw["codec"],
        width=int(dw),
        height=int(dh),
        coded_width=cw,
        coded_height=ch,
        rotation=rotation,
        fps=float(fps),
        variable_frame_rate=bool(raw["vfr"]),
        duration=float(duration),
        frame_count=int(frame_count),
        frame_count_exact=exact,
        bitrate=raw["bitrate"],
        has_audio=bool(raw["has_audio"]),
        pixel_format=raw.get("pix_fmt"),
        color_transfer=raw.get("color_transfer"),
        sample_aspect_ratio=float(sar),
        source=raw["source"],
    )


def _corrupt(path: Path, detail: str) -> CorruptMedia:
    low = detail.lower()
    if "moov atom not found" in low:
        why = "the file is truncated or incomplete (its index, the moov atom, is missing)"
    elif "invalid data" in low or "end of file" in low or "truncat" in low:
        why = "the file is damaged or truncated"
    else:
        why = "the file cannot be read as a video"
    return CorruptMedia(
        f"{path.name}: {why} [{detail.strip()[:300]}]; upload the complete original file again"
    )


def _rate(value: str | None) -> float | None:
    if not value or value in ("0/0", "N/A"):
        return None
    try:
        r = Fraction(value)
    except (ValueError, ZeroDivisionError):
        return None
    return float(r) if r > 0 else None


def _ratio(value: str | None) -> float:
    if not value or value in ("0:1", "N/A"):
        return 1.0
    try:
        n, d = value.split(":")
        return float(Fraction(int(n), int(d))) if int(d) and int(n) else 1.0
    except (ValueError, ZeroDivisionError):
        return 1.0


def _float(value: Any) -> float | None:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _kfloat(m: re.Match[str]) -> float:
    return float(m["v"]) * (1000.0 if m["k"] else 1.0)


def _hms(s: str) -> float:
    h, m, sec = s.split(":")
    return int(h) * 3600 + int(m) * 60 + float(sec)
