"""The close-up a user brings from a broadcast recording survives ingest and curation: a
1080i transport stream (its clock two hours in) of a scope film, letterboxed 2.39:1 into 16:9,
with subtitles in the bottom bar. Before ingest took transport streams, deinterlaced and cut
mattes away, the file was refused at upload; as an MP4 its clips were refused as `letterbox`
(a quarter of the frame black) and for the burned-in text."""

from __future__ import annotations

import subprocess
from pathlib import Path

import cv2
import numpy as np
import skimage.data

from loraforge.curation.pipeline import MediaItem, curate
from loraforge.curation.policy import CurationPolicy
from loraforge.ingest import IngestOptions, process_source
from loraforge.ingest.tools import MediaTools

W, H, PICTURE = 1280, 720, 536  # 2.39:1 picture, 92 black rows above and below


def _broadcast(path: Path) -> None:
    """50 pictures a second of a slow pan over the astronaut, woven into 25 interlaced frames;
    subtitles in the bottom bar on 40 % of them."""
    face = cv2.resize(cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR), (760, 760))
    cmd = [
        MediaTools.discover().ffmpeg, "-v", "error", "-y",
        "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", f"{W}x{H}", "-r", "50", "-i", "-",
        "-vf", "tinterlace=mode=interleave_top,setfield=tff",
        "-c:v", "libx264", "-preset", "veryfast", "-flags", "+ilme+ildct", "-x264-params", "tff=1",
        "-f", "mpegts", "-output_ts_offset", "7200", str(path),
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE)
    assert proc.stdin is not None
    for i in range(225):  # 4.5 s
        frame = np.zeros((H, W, 3), np.uint8)
        x = 20 + i // 4  # ~12 px a second of the photo
        frame[92 : 92 + PICTURE] = cv2.resize(
            face[20:299, x : x + 666], (W, PICTURE), interpolation=cv2.INTER_AREA
        )
        if 45 <= i < 135:
            cv2.putText(frame, "I never said that.", (470, 690), cv2.FONT_HERSHEY_SIMPLEX, 1.0,
                        (235, 235, 235), 2, cv2.LINE_AA)  # fmt: skip
        proc.stdin.write(frame.tobytes())
    proc.stdin.close()
    assert proc.wait() == 0


def test_a_letterboxed_interlaced_broadcast_close_up_is_kept(tmp_path: Path, backend) -> None:
    src = tmp_path / "recording.ts"
    _broadcast(src)
    res = process_source(src, IngestOptions(), tmp_path / "ingest")
    assert res.format == "ts" and res.clips
    for clip in res.clips:
        assert clip.crop == (W, PICTURE, 0, 92) and (clip.width, clip.height) == (W, PICTURE)
    items = [
        MediaItem(c.path, f"c{i}", "rec", analysis=c.analysis) for i, c in enumerate(res.clips)
    ]
    done = curate(items, CurationPolicy(), backend=backend)
    for c in done.clips:
        m = c.metrics
        assert c.decision.keep, c.decision.reason_codes
        assert m.letterbox_fraction == 0 and not m.burned_in_text and not m.logo_or_watermark
        assert m.face_frames_fraction == 1.0
