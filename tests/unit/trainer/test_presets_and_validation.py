"""Presets registry and bad input refused with the reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from loraforge.runtime.errors import InvalidInput, NotFound
from loraforge.trainer import config, presets
from loraforge.trainer.config import RunConfig, resolve
from loraforge.trainer.dataset import CaptionedDataset, DatasetConfig, parse_resolution
from loraforge.trainer.synthetic import write_image_dataset

REAL = [
    "wan2.1-t2v-1.3b",
    "wan2.1-t2v-14b",
    "wan2.1-i2v-14b",
    "wan2.1-flf2v-14b",
    "wan2.2-t2v-a14b",
    "sdxl",
    "flux.1-dev",
    "sd1.5",
]
TINY = [
    "tiny-wan2.1-t2v",
    "tiny-wan2.1-i2v",
    "tiny-wan2.1-flf2v",
    "tiny-wan2.2-t2v",
    "tiny-sdxl",
    "tiny-flux",
    "tiny-sd1.5",
]


def test_registry_names_and_listing(tmp_path: Path) -> None:
    assert sorted(presets.PRESETS) == sorted(REAL + TINY)
    (tmp_path / "sdxl").mkdir()
    (tmp_path / "sdxl" / "model_index.json").write_text("{}")
    rows = {r["name"]: r for r in config.list_presets(tmp_path)}
    assert rows["sdxl"]["provisioned"] is True
    assert rows["flux.1-dev"]["provisioned"] is False
    assert str(tmp_path / "flux.1-dev") in rows["flux.1-dev"]["weights"]
    assert "built in code" in rows["tiny-flux"]["weights"]


def test_unknown_preset_lists_valid_names() -> None:
    with pytest.raises(InvalidInput) as err:
        presets.get_preset("wan3-t2v")
    assert "unknown base preset 'wan3-t2v'" in str(err.value)
    for name in REAL + TINY:
        assert name in str(err.value)


def test_real_preset_not_provisioned_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(NotFound) as err:
        presets.load_pipeline("wan2.1-t2v-14b", models_dir=tmp_path)
    assert str(tmp_path / "wan2.1-t2v-14b") in str(err.value)
    assert "never downloads" in str(err.value)


def _cfg(dataset: Path, **kw: object) -> RunConfig:
    return RunConfig.parse(
        {"preset": "tiny-wan2.1-t2v", "dataset": str(dataset), "output_dir": "/tmp/unused", **kw}
    )


def test_rank_zero_refused(one_clip: Path) -> None:
    with pytest.raises(InvalidInput, match="rank: Input should be greater than or equal to 1"):
        _cfg(one_clip, rank=0)


def test_frames_not_4k_plus_1_refused(one_clip: Path) -> None:
    with pytest.raises(InvalidInput, match=r"frames=16 is not of the form 4k\+1.*use 13 or 17"):
        resolve(_cfg(one_clip, frames=16))


def test_image_family_refuses_frames(one_image: Path) -> None:
    with pytest.raises(InvalidInput, match="image model; use frames=1"):
        resolve(_cfg(one_image, preset="tiny-sdxl", frames=5))


@pytest.mark.parametrize(
    ("preset", "resolution", "stride"),
    [
        ("tiny-wan2.1-t2v", "40", 16),
        ("tiny-flux", "72", 16),
        ("tiny-sdxl", "96", 64),
        ("tiny-wan2.1-t2v", "840x480", 16),
    ],
)
def test_resolution_not_multiple_of_stride_refused(
    one_clip: Path, preset: str, resolution: str, stride: int
) -> None:
    with pytest.raises(InvalidInput, match=f"not a multiple of {stride}"):
        resolve(_cfg(one_clip, preset=preset, resolution=resolution))


def test_resolution_presets() -> None:
    assert parse_resolution("480p", 16, "wan") == (832, 480)
    assert parse_resolution("720p", 16, "wan") == (1280, 720)
    assert parse_resolution(1024, 64, "sdxl") == (1024, 1024)


def test_dataset_without_captions_refused(tmp_path: Path) -> None:
    root = write_image_dataset(tmp_path / "ds", images=3)
    (root / "img_001.txt").unlink()
    with pytest.raises(InvalidInput, match=r"1 media file\(s\) .* have no caption: img_001.png"):
        CaptionedDataset.scan(DatasetConfig(root, "64"), "sdxl", 64)


def test_empty_dataset_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="no images or videos"):
        CaptionedDataset.scan(DatasetConfig(tmp_path, "64"), "sdxl", 64)


def test_sd15_config_on_sdxl(one_image: Path) -> None:
    # A config that declares it was made for SD1.5 is refused on an SDXL preset ...
    with pytest.raises(InvalidInput, match=r"family 'sd1\.5' but preset 'sdxl' is 'sdxl'"):
        resolve(_cfg(one_image, preset="sdxl", family="sd1.5", resolution=512))
    # ... one that only carries SD1.5 numbers (512 px) gets a warning, not a refusal.
    with pytest.warns(UserWarning, match="far below sdxl's native 1024x1024"):
        _, resolved = resolve(_cfg(one_image, preset="sdxl", resolution=512))
    assert resolved.warnings


def test_flow_family_refuses_ddpm_objective(one_clip: Path) -> None:
    with pytest.raises(InvalidInput, match="flow-matching model"):
        resolve(_cfg(one_clip, objective="epsilon"))


def test_extra_options_are_checked_by_name_and_type_before_a_job_runs() -> None:
    from loraforge.trainer.run.options import validate_extra

    settings, rest = validate_extra({"block_swap": 20, "use_dora": True, "evaluate": False})
    assert rest == {"block_swap": 20, "use_dora": True} and settings.enabled is False
    for extra, says in (
        ({"blok_swap": 2}, "unknown training option"),
        ({"block_swap": "x"}, "block_swap='x'"),
        ({"timestep_sampling": "nope"}, "timestep_sampling='nope'"),
        ({"output_dir": "/tmp"}, "the trainer service sets them"),
    ):
        with pytest.raises(InvalidInput, match=says):
            validate_extra(extra)
