"""Frame sampling, buckets, repeats, mixed media; the latent / text cache is reused."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from loraforge.trainer.cache import LocalCacheStore
from loraforge.trainer.config import RunConfig
from loraforge.trainer.dataset import CaptionedDataset, DatasetConfig, make_buckets
from loraforge.trainer.synthetic import write_image_dataset
from loraforge.trainer.train import Trainer


def test_frame_sampling_modes(video_dataset: Path) -> None:
    def scan(mode: str, **kw: object) -> CaptionedDataset:
        return CaptionedDataset.scan(
            DatasetConfig(video_dataset, "32", frames=5, frame_sampling=mode, **kw), "wan", 16
        )

    head = scan("head")
    assert next(s.frame_indices for s in head.samples) == (0, 1, 2, 3, 4)
    uniform = scan("uniform")
    assert uniform.samples[0].frame_indices == (0, 4, 8, 12, 16)  # 17 frames, spread evenly
    slide = scan("slide", slide_stride=4)
    assert len(slide.samples) == 3 * 4  # windows at 0, 4, 8, 12 in each of 3 clips
    assert slide.samples[1].frame_indices == (4, 5, 6, 7, 8)
    fps8 = scan("head", target_fps=8.0)  # 16 fps source: every second frame
    assert fps8.samples[0].frame_indices == (0, 2, 4, 6, 8)
    px = head.load_pixels(0)
    assert px.shape == (3, 5, 32, 32) and float(px.min()) >= -1.0 and float(px.max()) <= 1.0


def test_short_clips_skipped_with_reason(video_dataset: Path) -> None:
    import pytest

    with pytest.raises(Exception, match="shorter than frames=21"):
        CaptionedDataset.scan(DatasetConfig(video_dataset, "32", frames=21), "wan", 16)


def test_buckets_and_mixed_media(tmp_path: Path, video_dataset: Path) -> None:
    buckets = make_buckets((832, 480), 16)
    assert (832, 480) in buckets and all(w % 16 == 0 and h % 16 == 0 for w, h in buckets)
    assert all(w * h <= 832 * 480 for w, h in buckets)
    root = tmp_path / "mixed"
    shutil.copytree(video_dataset, root)
    write_image_dataset(root / "images", images=2, size=(96, 48))  # wide images
    ds = CaptionedDataset.scan(DatasetConfig(root, "64", frames=5, repeats=3), "wan", 16)
    kinds = sorted({s.kind for s in ds.samples})
    assert kinds == ["image", "video"]
    wide = next(s for s in ds.samples if s.kind == "image")
    assert wide.bucket[0] > wide.bucket[1]  # 2:1 image -> landscape bucket
    assert len(ds) == 3 * len(ds.samples)
    for batch in ds.batches(epoch=0, batch_size=2, seed=1):
        assert len({(ds.samples[i].bucket, ds.samples[i].frames) for i in batch}) == 1
    assert ds.batches(0, 2, 1) == ds.batches(0, 2, 1) != ds.batches(1, 2, 1)


def test_cache_reused_across_runs(tmp_path: Path, one_clip: Path) -> None:
    cfg = RunConfig(
        preset="tiny-wan2.1-t2v",
        dataset=one_clip,
        output_dir=tmp_path / "o",
        cache_dir=tmp_path / "cache",
        steps=1,
        frames=5,
    )
    store = LocalCacheStore(tmp_path / "cache")
    first = Trainer(cfg, cache_store=store)
    first.prepare()
    assert (store.hits, store.misses) == (0, 2)  # one latent entry, one caption entry
    again = LocalCacheStore(tmp_path / "cache")
    second = Trainer(cfg, cache_store=again, pipeline=first.pipe)
    second._encode_all()
    assert (again.hits, again.misses) == (2, 0)
    assert torch.equal(second.encoded[0]["latents"], first.encoded[0]["latents"])
    other = LocalCacheStore(tmp_path / "cache")
    Trainer(
        cfg.model_copy(update={"frames": 9}), cache_store=other, pipeline=first.pipe
    )._encode_all()
    assert (other.hits, other.misses) == (1, 1)  # caption reused, 9-frame latents are new


def test_a_sideways_phone_photo_is_trained_upright(tmp_path: Path) -> None:
    """A portrait shot stored landscape with EXIF orientation 6 (rotate 90 degrees clockwise
    to view) gets a portrait bucket and upright pixels, like the same photo stored upright."""
    import numpy as np
    from PIL import Image
    from skimage import data

    upright = Image.fromarray(data.astronaut()).crop((0, 0, 320, 480))  # portrait
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # what the camera wrote: landscape
    exif = Image.Exif()
    exif[0x0112] = 6
    for name, image, kw in (("exif", stored, {"exif": exif}), ("plain", upright, {})):
        folder = tmp_path / name / "images"
        folder.mkdir(parents=True)
        image.save(folder / "a.jpg", quality=95, **kw)
        (folder / "a.txt").write_text("s86b5p, an astronaut")
    got = [
        CaptionedDataset.scan(DatasetConfig(tmp_path / n, "512", frames=1), "sdxl", 8)
        for n in ("exif", "plain")
    ]
    assert got[0].samples[0].bucket == got[1].samples[0].bucket
    w, h = got[0].samples[0].bucket
    assert h > w  # portrait
    a, b = (g.load_pixels(0).numpy() for g in got)
    assert np.abs(a - b).mean() < 0.05  # the same picture (JPEG noise aside), not rotated
