"""One source of training defaults, seed 004's validation split (validation clips never reach
a training batch), and epochs converted to steps with the training set's size."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

from loraforge.runtime.errors import InvalidInput
from loraforge.trainer import cli
from loraforge.trainer.config import RunConfig, effective_defaults, list_presets, resolve
from loraforge.trainer.dataset import validation_count
from loraforge.trainer.train import Trainer, plan


def _cfg(dataset: Path, **kw) -> RunConfig:
    return RunConfig(
        preset=kw.pop("preset", "tiny-wan2.1-t2v"),
        dataset=dataset,
        output_dir=kw.pop("output_dir", Path("/nonexistent")),
        **kw,
    )


@pytest.mark.parametrize(
    ("n", "split", "most", "want"),
    [
        (100, 0.9, 5, 5),  # seed 004's example: min(100 x 0.1, 5)
        (40, 0.9, 5, 4),
        (10, 0.9, 5, 1),  # 10 x (1 - 0.9) is 0.999... in floating point
        (3, 0.9, 5, 1),  # below 10 clips: still one held out
        (2, 0.5, 5, 1),
        (1, 0.9, 5, 0),  # nothing to hold out from one clip
        (50, 1.0, 5, 0),  # split 1.0: no validation set
    ],
)
def test_validation_count_follows_seed_004(n: int, split: float, most: int, want: int) -> None:
    assert validation_count(n, split, most) == want


def test_family_defaults_and_the_alpha_rule(one_image: Path) -> None:
    _, sdxl = resolve(_cfg(one_image, preset="sdxl"))
    assert (sdxl.rank, sdxl.alpha, sdxl.steps, sdxl.lr_scheduler) == (32, 16.0, 1500, "cosine")
    _, flux = resolve(_cfg(one_image, preset="flux.1-dev"))
    assert (flux.rank, flux.alpha) == (16, 16.0)
    # only a rank: alpha keeps the family's alpha/rank ratio (SDXL 1/2, Flux 1)
    assert resolve(_cfg(one_image, preset="sdxl", rank=64))[1].alpha == 32.0
    assert resolve(_cfg(one_image, preset="flux.1-dev", rank=64))[1].alpha == 64.0
    assert resolve(_cfg(one_image, preset="sdxl", rank=64, alpha=8))[1].alpha == 8.0
    # `loraforge presets --json` shows exactly what an empty run config resolves to
    rows = {r["name"]: r for r in list_presets()}
    assert rows["sdxl"]["defaults"] == effective_defaults("sdxl")
    assert rows["sdxl"]["defaults"]["alpha"] == 16.0 and rows["sdxl"]["defaults"]["steps"] == 1500
    assert "dataset" not in rows["sdxl"]["defaults"]


def test_validation_clips_never_reach_a_training_batch(two_clips: Path, tmp_path: Path) -> None:
    # slide windows: two samples per clip, so a split by sample would leak a clip's windows
    cfg = _cfg(
        two_clips,
        output_dir=tmp_path,
        steps=4,
        rank=4,
        frames=5,
        frame_sampling="slide",
        slide_stride=4,
        eval_every=2,
    )
    trainer = Trainer(cfg)
    val_media = set(trainer.validation.media)
    assert len(val_media) == 1 and len(trainer.validation.samples) == 2
    assert not val_media & set(trainer.dataset.media)
    assert trainer.validation_summary()["clips"] == [
        str(m.relative_to(two_clips)) for m in val_media
    ]
    trainer.prepare()

    def digest(latents: torch.Tensor) -> str:
        return hashlib.sha256(latents.detach().cpu().float().numpy().tobytes()).hexdigest()

    train_lat = {digest(v["latents"]) for v in trainer.encoded.values()}
    val_lat = {digest(v["latents"]) for v in trainer.val_encoded.values()}
    assert len(val_lat) == 2 and not train_lat & val_lat
    seen: list[tuple[bool, str]] = []  # (gradients on = a training step, sample latents)
    loss_on = trainer.loss_on

    def instrumented(name, batch, noise, t):
        for x in batch["latents"]:
            seen.append((torch.is_grad_enabled(), digest(x)))
        return loss_on(name, batch, noise, t)

    trainer.loss_on = instrumented  # type: ignore[method-assign]
    result = trainer.run()
    trained = {d for grad, d in seen if grad}
    evaluated = {d for grad, d in seen if not grad}
    assert trained and trained <= train_lat and not trained & val_lat
    assert evaluated == val_lat  # the validation loss is computed on validation clips only
    assert set(result.eval_losses) == {0, 2, 4}
    assert set(result.eval_bands[4]) == {"t=0.125", "t=0.375", "t=0.625", "t=0.875"}
    assert result.eval_losses[4] == pytest.approx(sum(result.eval_bands[4].values()) / 4)


def test_an_explicit_validation_set_is_used_as_is_and_may_not_overlap(
    video_dataset: Path, one_clip: Path, tmp_path: Path
) -> None:
    _, _, train, val = plan(_cfg(video_dataset, validation_dataset=one_clip))
    assert len(train.media) == 3 and val.media == [one_clip / "videos" / "clip_000.mp4"]
    with pytest.raises(InvalidInput, match="also in the training dataset"):
        plan(_cfg(video_dataset, validation_dataset=video_dataset))


def test_epochs_become_steps_with_the_training_set_and_batch(
    video_dataset: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # 3 clips x 4 windows; one clip validates: 8 training samples, batch 3 -> ceil(8/3) = 3
    base = {"frames": 5, "frame_sampling": "slide", "slide_stride": 4, "batch_size": 3}
    _, resolved, train, _ = plan(_cfg(video_dataset, epochs=4, **base))
    assert len(train.samples) == 8
    assert (resolved.epochs, resolved.steps_per_epoch, resolved.steps) == (4, 3, 12)
    assert resolved.training_args()["steps"] == 12  # what the run record shows
    _, accum, _, _ = plan(_cfg(video_dataset, epochs=4, grad_accum=2, **base))
    assert accum.steps == 4 * 2  # 3 micro-batches, 2 per optimizer step -> 2 steps an epoch
    with pytest.raises(InvalidInput, match="set steps or epochs, not both"):
        resolve(_cfg(video_dataset, epochs=4, steps=100))
    from loraforge.runtime.params import TrainingParams
    from loraforge.trainer.run.options import refuse_conflicts

    with pytest.raises(InvalidInput, match="set steps or epochs, not both"):  # at StartTraining
        refuse_conflicts(
            TrainingParams(dataset_id="d", base_preset="sdxl", steps=100, extra={"epochs": 4})
        )
    # seed 004's rule on a real preset: below 800 steps names the epochs that reach it
    _, few = resolve(_cfg(video_dataset, preset="wan2.1-t2v-1.3b", epochs=10), steps_per_epoch=3)
    assert few.steps == 30 and any("at least 267 epochs" in w for w in few.warnings)
    # loraforge-train --print-config converts the same way (its default slide stride is the
    # window: 3 windows a clip, 6 training samples, ceil(6 / 3) = 2 steps an epoch)
    assert (
        cli.main(
            [
                "--preset",
                "tiny-wan2.1-t2v",
                "--dataset",
                str(video_dataset),
                "--output",
                "/tmp/x",
                "--epochs",
                "4",
                "--frames",
                "5",
                "--frame-sampling",
                "slide",
                "--batch-size",
                "3",
                "--print-config",
            ]
        )
        == 0
    )
    printed = json.loads(capsys.readouterr().out)
    assert (printed["epochs"], printed["steps_per_epoch"], printed["steps"]) == (4, 2, 8)


def test_i2v_previews_start_from_a_validation_clip(two_clips: Path) -> None:
    """I2V / FLF2V previews are conditioned on the first (last) frame of a clip the LoRA never
    trained on."""
    from types import SimpleNamespace

    import numpy as np

    from loraforge.trainer.checkpoints import CheckpointEvaluator, EvalSettings

    _, _, train, val = plan(_cfg(two_clips, preset="tiny-wan2.1-i2v", frames=5))
    ev = CheckpointEvaluator(SimpleNamespace(dataset=train, validation=val), EvalSettings())
    first, last = np.asarray(ev._still(0)), np.asarray(ev._still(0, last=True))
    px = ((val.load_pixels(0) + 1) * 127.5).round().clamp(0, 255).byte()  # C, F, H, W
    assert np.array_equal(first, px[:, 0].permute(1, 2, 0).numpy())
    assert np.array_equal(last, px[:, -1].permute(1, 2, 0).numpy())
    other = ((train.load_pixels(0) + 1) * 127.5).round().clamp(0, 255).byte()
    assert not np.array_equal(first, other[:, 0].permute(1, 2, 0).numpy())
