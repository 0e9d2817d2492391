"""Seed 004 zip rules that refuse before any media is decoded: each names the rule, the
data.jsonl line and what to fix."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from loraforge.library.finetunes import inspect_zip
from loraforge.runtime.errors import InvalidInput


def _zip(tmp: Path, lines: list, files: dict[str, bytes] | None = None, jsonl: bool = True) -> Path:
    path = tmp / "ds.zip"
    with zipfile.ZipFile(path, "w") as zf:
        if jsonl:
            zf.writestr(
                "data.jsonl", "\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines)
            )
        for name, data in (files or {}).items():
            zf.writestr(name, data)
    return path


def _jpg() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 50, 50)).save(buf, "JPEG")
    return buf.getvalue()


LINE = {
    "prompt": "a cat. 然后她开始了s86b5p变身。",
    "first_frame_path": "image/1_first.jpg",
    "last_frame_path": "image/1_last.jpg",
    "video_path": "video/1.mp4",
}
FILES = {"image/1_first.jpg": _jpg(), "image/1_last.jpg": _jpg(), "video/1.mp4": b"x"}


@pytest.mark.parametrize(
    ("lines", "files", "jsonl", "reason"),
    [
        ([], {}, False, "data.jsonl must be at the zip's root"),
        (["{not json"], FILES, True, "line 1 is not JSON"),
        ([[1, 2]], FILES, True, "line 1 must be a JSON object"),
        ([{**LINE, "video": "v.mp4"}], FILES, True, "unknown field(s) video; the fields are"),
        (
            [{k: v for k, v in LINE.items() if k != "video_path"}],
            FILES,
            True,
            "line 1 lacks video_path "
            "(a kf2v sample needs prompt, first_frame_path, last_frame_path",
        ),
        ([{**LINE, "prompt": " "}], FILES, True, "prompt is empty"),
        (
            [{**LINE, "first_frame_path": "../etc/passwd"}],
            FILES,
            True,
            "first_frame_path '../etc/passwd' is not a file in the zip",
        ),
        (
            [{**LINE, "last_frame_path": "image/missing.jpg"}],
            FILES,
            True,
            "is not a file in the zip",
        ),
        (
            [{**LINE, "first_frame_path": "video/1.mp4"}],
            FILES,
            True,
            "first_frame_path video/1.mp4 is not a readable image",
        ),
        ([{**LINE, "video_path": "image/1_first.jpg"}], FILES, True, "is not MP4 or MOV"),
    ],
)
def test_refusals_before_decoding(tmp_path, lines, files, jsonl, reason) -> None:
    with pytest.raises(InvalidInput) as e:
        inspect_zip(_zip(tmp_path, lines, files, jsonl), "wan-kf2v-training-dataset.zip")
    assert reason in str(e.value) and "nothing was stored" in str(e.value)
    assert str(e.value).startswith("wan-kf2v-training-dataset.zip: ")


def test_not_a_zip(tmp_path) -> None:
    path = tmp_path / "x.zip"
    path.write_bytes(b"PK not really")
    with pytest.raises(InvalidInput, match="not a zip archive"):
        inspect_zip(path)
