from __future__ import annotations

import json
import tomllib
import zipfile
from pathlib import Path

import pytest
import yaml
from captioning_footage import make_clip, photo
from PIL import Image

from loraforge.captioning.errors import ExportRefused
from loraforge.captioning.exports import ExportItem, export, read
from loraforge.captioning.exports.musubi import target_frames
from loraforge.captioning.exports.wan import WanLimits, recommend_epochs, validation_count

TRIGGER = "ohwx_woman"


@pytest.fixture(scope="module")
def items(clips: list[Path]) -> list[ExportItem]:
    return [
        ExportItem(p.stem, p, f"{TRIGGER}, woman, clip {i}, front view")
        for i, p in enumerate(clips)
    ]


def _same(read_back, items) -> None:
    assert sorted(c for _, c in read_back) == sorted(i.caption for i in items)


def test_seed_layout(items, tmp_path: Path) -> None:
    res = export("seed", items, tmp_path / "out", trigger=TRIGGER, lora_type="character")
    root = tmp_path / "out" / "dataset"
    assert (root / "videos" / "clip_001.mp4").is_file()
    assert (root / "captions" / "clip_001.txt").read_text().startswith(TRIGGER)
    meta = json.loads((root / "metadata.json").read_text())
    assert meta["count"] == len(items) and meta["clips"][0]["width"] == 128
    assert meta["clips"][0]["duration_s"] == pytest.approx(2.0, abs=0.01)
    _same(read("seed", tmp_path / "out"), items)
    assert res.report["count"] == len(items)


def test_kohya(items, tmp_path: Path) -> None:
    res = export("kohya", items[:4], tmp_path / "k", trigger=TRIGGER, class_noun="woman")
    cfg = tomllib.loads((tmp_path / "k" / "dataset.toml").read_text())
    sub = cfg["datasets"][0]["subsets"][0]
    assert cfg["general"]["caption_extension"] == ".txt" and cfg["general"]["keep_tokens"] == 1
    assert (
        Path(sub["image_dir"]).name
        == f"50_{TRIGGER} woman"
        == f"{res.report['repeats']}_{TRIGGER} woman"
    )
    got = read("kohya", tmp_path / "k")
    _same(got, items[:4])
    with Image.open(got[0][0]) as im:  # a real decoded middle frame
        assert im.size == (128, 128)


def test_musubi(items, tmp_path: Path) -> None:
    export("musubi", items, tmp_path / "m")
    cfg = tomllib.loads((tmp_path / "m" / "dataset.toml").read_text())
    g, ds = cfg["general"], cfg["datasets"][0]
    assert g["caption_extension"] == ".txt" and g["enable_bucket"] is True and g["batch_size"] == 1
    assert Path(ds["video_directory"]).is_dir() and ds["cache_directory"].endswith("cache/videos")
    assert ds["target_frames"] == [1, 9, 13]  # 16-frame clips: 4k+1 up to 13
    assert all(f % 4 == 1 for f in ds["target_frames"]) and ds["frame_extraction"] == "head"
    _same(read("musubi", tmp_path / "m"), items)
    assert target_frames(200) == [1, 41, 81]


def test_diffusion_pipe(items, tmp_path: Path) -> None:
    export("diffusion-pipe", items, tmp_path / "d", path_root="/data/ds")
    cfg = tomllib.loads((tmp_path / "d" / "dataset.toml").read_text())
    assert cfg["resolutions"] == [512] and cfg["enable_ar_bucket"] is True
    assert cfg["frame_buckets"] == [1, 9, 13]
    assert cfg["directory"] == [{"path": "/data/ds/data", "num_repeats": 5}]
    _same(read("diffusion-pipe", tmp_path / "d"), items)


def test_ai_toolkit(items, tmp_path: Path) -> None:
    export("ai-toolkit", items, tmp_path / "a")
    cfg = yaml.safe_load((tmp_path / "a" / "dataset_config.yaml").read_text())
    assert cfg["datasets"][0]["caption_ext"] == "txt"
    _same(read("ai-toolkit", tmp_path / "a"), items)


def test_wan_i2v_zip_respects_limits(items, tmp_path: Path) -> None:
    res = export("wan-i2v-zip", items, tmp_path / "w")
    with zipfile.ZipFile(res.path) as zf:
        names = set(zf.namelist())
        lines = [json.loads(x) for x in zf.read("data.jsonl").decode().splitlines()]
        for line in lines:
            assert set(line) == {"prompt", "first_frame_path", "video_path"}
            assert line["first_frame_path"] in names and line["video_path"] in names
            assert "/" not in line["video_path"]  # i2v zips are flat
    assert len(lines) == 12 and res.path.stat().st_size < 1024**3
    assert len(read("wan-i2v-zip", res.path)) == 12
    assert res.report["recommended_n_epochs"] == 134  # 800 / ceil(12 / 2) = 133.3 -> 134


def test_wan_kf2v_zip_with_validation_split(items, tmp_path: Path) -> None:
    more = items + [
        ExportItem(f"x{i}", items[i].media, items[i].caption + f", take {i}") for i in range(4)
    ]
    res = export("wan-kf2v-zip", more, tmp_path / "kf", split=0.9, max_val=5, batch_size=4)
    train, valid = res.files
    assert res.report["validation_samples"] == validation_count(16, 0.9, 5) == 1
    with zipfile.ZipFile(train) as zf:
        names = zf.namelist()
        line = json.loads(zf.read("data.jsonl").decode().splitlines()[0])
    assert line["first_frame_path"].startswith("image/") and line["last_frame_path"].startswith(
        "image/"
    )
    assert line["video_path"].startswith("video/") and line["last_frame_path"] in names
    assert len(read("wan-kf2v-zip", train)) == 15
    val = read("wan-kf2v-zip", valid, validation=True)
    assert len(val) == 1 and val[0][0].startswith("image/")
    assert res.report["recommended_n_epochs"] == 200  # ceil(800 / ceil(15 / 4))


def test_step_and_split_rules() -> None:
    assert recommend_epochs(10, 2) == 160 and recommend_epochs(100, 4) == 32
    assert validation_count(100, 0.9, 5) == 5 and validation_count(30, 0.9, 10) == 3
    assert validation_count(30, None, 10) == 0


@pytest.mark.parametrize(
    "rule", ["min_samples", "max_duration", "video_format", "zip_size", "jsonl_size"]
)
def test_wan_refuses_a_dataset_that_breaks_a_limit(items, tmp_path: Path, rule: str) -> None:
    kw: dict = {}
    data = list(items)
    if rule == "min_samples":
        data = data[:9]
    elif rule == "max_duration":
        data[3] = ExportItem(
            "long", make_clip(photo("rocket"), tmp_path / "long", seconds=6.0), "ohwx_woman, long"
        )
    elif rule == "video_format":
        data[0] = ExportItem(
            "mkv", make_clip(photo("cat"), tmp_path / "c", ext=".mkv"), "ohwx_woman, cat"
        )
    elif rule == "zip_size":
        kw["limits"] = WanLimits(max_zip_bytes=50_000)
    else:
        kw["limits"] = WanLimits(max_jsonl_bytes=500)
    out = tmp_path / "z.zip"
    with pytest.raises(ExportRefused) as err:
        export("wan-i2v-zip", data, out, **kw)
    assert err.value.rule == rule and f"[{rule}]" in str(err.value)
    assert not out.exists() and not list(tmp_path.glob(".z.zip.*"))  # nothing half-written
    if rule == "max_duration":  # wan2.5 allows 10 s: the same dataset passes there
        assert export("wan-i2v-zip", data, tmp_path / "ok.zip", target="wan2.5").path.is_file()


def test_reader_catches_a_broken_zip(items, tmp_path: Path) -> None:
    res = export("wan-i2v-zip", items, tmp_path / "b.zip")
    broken = tmp_path / "broken.zip"
    with zipfile.ZipFile(res.path) as src, zipfile.ZipFile(broken, "w") as dst:
        for n in src.namelist():
            if n != "video_3.mp4":
                dst.writestr(n, src.read(n))
    with pytest.raises(
        ExportRefused, match=r"video_3\.mp4 is named in data\.jsonl but not in the zip"
    ):
        read("wan-i2v-zip", broken)
