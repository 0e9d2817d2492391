"""Tiny LoRAs learn; saved files load with diffusers' load_lora_weights and reproduce the
trained model exactly; keys follow ComfyUI naming; resume reproduces the uninterrupted run.

All on CPU with tiny presets (random weights, seed 0) and synthetic data: a checkered
square moving diagonally, captioned with the trigger ``s86b5p``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors import safe_open

from loraforge.runtime.errors import InvalidInput
from loraforge.trainer.config import RunConfig
from loraforge.trainer.presets import load_pipeline
from loraforge.trainer.train import Trainer, latest_checkpoint

PROMPT = "s86b5p, checkered square moving diagonally, dark blue background"


def _generate(trainer: Trainer, pipe: Any) -> torch.Tensor:
    fam, v = trainer.family, trainer.variant
    w, h = trainer.dataset.samples[0].bucket
    kw: dict[str, Any] = {"variant": v}
    if v in ("i2v", "flf2v"):
        from PIL import Image

        kw["image"] = kw["last_image"] = Image.new("RGB", (w, h), (10, 20, 200))
    return fam.generate(pipe, PROMPT, 0, w, h, trainer.args.frames, 2, **kw)


def reload_and_compare(trainer: Trainer, files: dict[str, Path]) -> tuple[Any, torch.Tensor]:
    """Load the exported file(s) into a fresh pipeline through the family's loader and check
    it renders what the trained model renders; returns (fresh pipeline, its base render)."""
    for m in trainer.models.values():
        m.eval()
    with_lora = _generate(trainer, trainer.pipe)
    fresh = load_pipeline(trainer.preset.name)
    base = _generate(trainer, fresh)
    trainer.family.load_lora_into_pipeline(fresh, files, "t")
    loaded = _generate(trainer, fresh)
    assert torch.allclose(loaded, with_lora, atol=1e-5)
    assert (loaded - base).abs().max() > 1e-3  # the LoRA changes the output
    return fresh, base


def _train_and_check(
    preset: str, dataset: Path, out: Path, steps: int, lr: float, min_drop: float
) -> tuple[Trainer, Any]:
    cfg = RunConfig(
        preset=preset,
        dataset=dataset,
        output_dir=out,
        steps=steps,
        learning_rate=lr,
        rank=8,
        alpha=8,
        eval_every=steps,
        trigger="s86b5p",
        dataset_id="synthetic-square",
    )
    trainer = Trainer(cfg)
    result = trainer.run()
    before, after = result.eval_losses[0], result.eval_losses[steps]
    # held-out denoising loss (fixed noise, fixed timesteps) falls clearly
    assert after < (1 - min_drop) * before, (before, after)

    # the file loads with diffusers and reproduces the trained model's output exactly
    reload_and_compare(trainer, result.files)
    return trainer, result


def _keys_and_meta(path: Path) -> tuple[list[str], dict[str, str]]:
    with safe_open(str(path), "pt") as f:
        return list(f.keys()), f.metadata()


def test_tiny_wan_learns_and_exports_comfy_keys(video_dataset: Path, tmp_path: Path) -> None:
    trainer, result = _train_and_check("tiny-wan2.1-t2v", video_dataset, tmp_path, 40, 5e-3, 0.15)
    keys, meta = _keys_and_meta(result.files["transformer"])
    # ComfyUI WAN21: diffusion_model.<original Wan module>.lora_A/.lora_B/.alpha, where
    # diffusers -> Wan: attn1.to_{q,k,v,out.0} -> self_attn.{q,k,v,o};
    # attn2.* -> cross_attn.*; ffn.net.0.proj -> ffn.0; ffn.net.2 -> ffn.2
    expected = set()
    for b in range(2):
        for attn in ("self_attn", "cross_attn"):
            for p in "qkvo":
                expected.add(f"diffusion_model.blocks.{b}.{attn}.{p}")
        expected |= {f"diffusion_model.blocks.{b}.ffn.0", f"diffusion_model.blocks.{b}.ffn.2"}
    modules = {k.rsplit(".", 2)[0] if ".lora_" in k else k.rsplit(".", 1)[0] for k in keys}
    assert modules == expected
    assert {k.split(".")[-2] + "." + k.split(".")[-1] for k in keys} == {
        "lora_A.weight",
        "lora_B.weight",
        "q.alpha",
        "k.alpha",
        "v.alpha",
        "o.alpha",
        "0.alpha",
        "2.alpha",
    }
    assert meta["loraforge.trigger"] == "s86b5p"
    assert meta["loraforge.base_preset"] == "tiny-wan2.1-t2v"
    assert meta["loraforge.rank"] == "8" and meta["loraforge.alpha"] == "8.0"
    assert meta["loraforge.steps"] == "40"
    assert meta["loraforge.dataset_id"] == "synthetic-square"
    assert meta["loraforge.dataset_hash"] == trainer.dataset.content_hash
    assert json.loads(meta["loraforge.training_args"])["learning_rate"] == 5e-3


def test_tiny_sdxl_learns_and_exports_kohya_keys(image_dataset: Path, tmp_path: Path) -> None:
    _, result = _train_and_check("tiny-sdxl", image_dataset, tmp_path, 30, 2e-2, 0.05)
    keys, _ = _keys_and_meta(result.files["unet"])
    # kohya / ComfyUI: lora_unet_<diffusers UNet module with '.' -> '_'>.lora_down/.lora_up/.alpha
    assert (
        "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight"
        in keys
    )
    assert (
        "lora_unet_up_blocks_0_attentions_0_transformer_blocks_0_attn2_to_out_0.lora_up.weight"
        in keys
    )
    assert "lora_unet_mid_block_attentions_0_transformer_blocks_0_attn2_to_k.alpha" in keys
    assert all(
        k.startswith("lora_unet_")
        and k.endswith((".lora_down.weight", ".lora_up.weight", ".alpha"))
        for k in keys
    )


def test_tiny_flux_learns_and_exports_diffusers_keys(image_dataset: Path, tmp_path: Path) -> None:
    _, result = _train_and_check("tiny-flux", image_dataset, tmp_path, 30, 5e-3, 0.15)
    keys, _ = _keys_and_meta(result.files["transformer"])
    # ComfyUI Flux: transformer.<diffusers module>.lora_A/.lora_B (+ .alpha)
    assert "transformer.transformer_blocks.0.attn.to_q.lora_A.weight" in keys
    assert "transformer.single_transformer_blocks.0.proj_mlp.lora_B.weight" in keys
    assert "transformer.transformer_blocks.0.ff_context.net.2.alpha" in keys
    assert all(k.startswith("transformer.") for k in keys)


@pytest.mark.parametrize(
    "preset", ["tiny-sd1.5", "tiny-wan2.2-t2v", "tiny-wan2.1-i2v", "tiny-wan2.1-flf2v"]
)
def test_other_presets_train_and_load(
    preset: str, one_clip: Path, one_image: Path, tmp_path: Path
) -> None:
    dataset = one_clip if "wan" in preset else one_image
    cfg = RunConfig(
        preset=preset,
        dataset=dataset,
        output_dir=tmp_path,
        steps=3,
        learning_rate=5e-2,
        rank=4,
        alpha=2,
    )
    trainer = Trainer(cfg)
    result = trainer.run()
    if preset == "tiny-wan2.2-t2v":
        assert sorted(p.name for p in result.files.values()) == [
            "lora.high_noise.safetensors",
            "lora.low_noise.safetensors",
        ]
    reload_and_compare(trainer, result.files)


def test_resume_reproduces_uninterrupted_run(one_clip: Path, tmp_path: Path) -> None:
    """Stop (cancel) right after the step-3 checkpoint, resume from latest, finish at 6.
    Tolerance: bit-identical on CPU (checked with atol 0); the run is deterministic given
    the seed because batches, noise and timesteps come from saved generators."""

    def cfg(out: Path, **kw: Any) -> RunConfig:
        return RunConfig(
            preset="tiny-wan2.1-t2v",
            dataset=one_clip,
            output_dir=out,
            steps=6,
            learning_rate=1e-2,
            rank=4,
            checkpoint_every=3,
            keep_checkpoints=1,
            seed=7,
            lr_scheduler="cosine",
            warmup_steps=2,
            grad_accum=2,
            **kw,
        )

    straight = Trainer(cfg(tmp_path / "a"))
    straight.run()
    ref = straight.lora_state()

    first = Trainer(cfg(tmp_path / "b"), should_cancel=lambda step: step >= 3)
    partial = first.run()
    assert partial.status == "cancelled" and partial.step == 3
    assert latest_checkpoint(tmp_path / "b" / "checkpoints").name == "step-00000003"
    assert not partial.files  # nothing exported for a cancelled run
    resumed = Trainer(
        cfg(tmp_path / "b", resume="latest"), pipeline=load_pipeline("tiny-wan2.1-t2v")
    )
    done = resumed.run()
    assert done.status == "succeeded" and done.step == 6
    got = resumed.lora_state()
    assert got.keys() == ref.keys()
    for k in ref:
        assert torch.allclose(got[k], ref[k], atol=0, rtol=0), k


def test_keep_last_k_checkpoints(one_image: Path, tmp_path: Path) -> None:
    cfg = RunConfig(
        preset="tiny-sd1.5",
        dataset=one_image,
        output_dir=tmp_path,
        steps=5,
        rank=2,
        checkpoint_every=1,
        keep_checkpoints=2,
    )
    Trainer(cfg).run()
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["step-00000003", "step-00000004"]  # step 5 is the final export


def test_fp8_base_runs_on_cpu(one_image: Path, tmp_path: Path) -> None:
    fp8 = Trainer(
        RunConfig(
            preset="tiny-flux",
            dataset=one_image,
            output_dir=tmp_path / "f",
            steps=2,
            rank=2,
            fp8_base=True,
        )
    )
    fp8.prepare()
    base = fp8.models["transformer"].transformer_blocks[0].attn.to_q.base_layer
    assert base.weight.dtype == torch.float8_e4m3fn
    assert fp8.run().status == "succeeded"


def test_offload_activations_is_accepted_and_said_to_be_ignored_on_cpu(
    one_clip: Path, tmp_path: Path
) -> None:
    logs: list[str] = []
    trainer = Trainer(
        RunConfig(
            preset="tiny-wan2.1-t2v",
            dataset=one_clip,
            output_dir=tmp_path,
            steps=1,
            rank=2,
            offload_activations=True,
        ),
        log=logs.append,
    )
    assert trainer.run().status == "succeeded"
    assert any("offload_activations only saves memory on a GPU" in m for m in logs)


def test_noise_offset_shifts_each_channel_by_a_constant(one_image: Path, tmp_path: Path) -> None:
    def trainer(offset: float) -> Trainer:
        return Trainer(
            RunConfig(
                preset="tiny-sd1.5",
                dataset=one_image,
                output_dir=tmp_path,
                steps=1,
                rank=2,
                noise_offset=offset,
            )
        )

    shape = torch.Size((2, 4, 8, 8))
    plain = trainer(0.0).training_noise(shape, torch.Generator().manual_seed(3))
    offset = trainer(0.1).training_noise(shape, torch.Generator().manual_seed(3))
    diff = offset - plain  # the same Gaussian draw first, then the offset
    assert torch.allclose(diff, diff[..., :1, :1].expand_as(diff))
    assert diff.abs().amax() > 0 and diff[0, 0, 0, 0] != diff[0, 1, 0, 0]
    assert trainer(0.1).run().status == "succeeded"


def test_noise_offset_is_refused_for_flow_matching(one_image: Path, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="noise_offset applies to SD families"):
        Trainer(
            RunConfig(
                preset="tiny-flux",
                dataset=one_image,
                output_dir=tmp_path,
                steps=1,
                rank=2,
                noise_offset=0.05,
            )
        )


def test_selective_checkpointing_trains_like_no_checkpointing(
    one_clip: Path, tmp_path: Path
) -> None:
    def run(**kw: Any) -> dict[str, torch.Tensor]:
        trainer = Trainer(
            RunConfig(
                preset="tiny-wan2.1-t2v",
                dataset=one_clip,
                steps=3,
                rank=4,
                learning_rate=1e-2,
                seed=3,
                output_dir=tmp_path / str(kw),
                **kw,
            )
        )
        assert trainer.run().status == "succeeded"
        return trainer.lora_state()

    plain, selective = run(), run(selective_checkpointing=True)
    for k, v in plain.items():
        torch.testing.assert_close(selective[k], v, rtol=1e-5, atol=1e-6)
    with pytest.raises(InvalidInput, match="selective_checkpointing is a kind of gradient"):
        Trainer(
            RunConfig(
                preset="tiny-wan2.1-t2v",
                dataset=one_clip,
                output_dir=tmp_path / "x",
                selective_checkpointing=True,
                gradient_checkpointing=False,
            )
        )
