"""Render's CUDA-only paths (skipped without a GPU): the pipeline placed on the card in bf16,
model CPU offload and group offload with a prefetch stream rendering what the resident
pipeline renders, VAE tiling, and the planner reading the card's free memory.
Self-contained (no conftest fixtures) so it also runs on a bare GPU machine with
``--noconftest``."""

from __future__ import annotations

import pytest
import torch

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

W, H, F = 64, 48, 9


def _placed(offload: str, tiling: bool = False):
    from loraforge.render.device import MemoryPlan, place
    from loraforge.trainer.presets import load_pipeline

    pipe = load_pipeline("tiny-wan2.1-i2v")
    pipe.set_progress_bar_config(disable=True)
    place(pipe, torch.device("cuda"), torch.bfloat16, MemoryPlan(offload, tiling, "test"), "wan")
    return pipe


def _video(pipe, **kw):
    from PIL import Image

    from loraforge.trainer import wan

    image = Image.new("RGB", (W, H), (180, 60, 40))
    return (
        wan.generate(
            pipe,
            "a red car drives away",
            3,
            W,
            H,
            F,
            steps=3,
            variant="i2v",
            image=image,
            guidance=5.0,
            negative_prompt="blurry",
            **kw,
        )
        .float()
        .cpu()
    )


def test_resident_pipeline_is_on_the_card_in_bf16():
    from loraforge.render.device import denoiser_device_dtype

    pipe = _placed("none")
    device, dtype = denoiser_device_dtype(pipe)
    assert device.type == "cuda" and dtype == torch.bfloat16
    assert next(pipe.vae.parameters()).dtype == torch.float32  # the Wan VAE stays fp32
    out = _video(pipe)
    assert out.shape == (1, F, 3, H, W) and torch.isfinite(out).all()


@pytest.mark.parametrize("offload", ["model", "group"])
def test_offloaded_pipeline_renders_what_the_resident_one_does(offload):
    resident = _video(_placed("none"))
    torch.cuda.empty_cache()
    pipe = _placed(offload)
    out = _video(pipe)
    # same weights, same CPU-drawn noise: only kernel order differs (bf16)
    assert (out - resident).abs().mean() < 2e-2, offload
    # between calls the denoiser's weights wait in host memory
    assert next(pipe.transformer.parameters()).device.type == "cpu"


def test_vae_tiling_decodes_a_frame_larger_than_a_tile():
    from loraforge.trainer import wan

    pipe = _placed("none", tiling=True)
    assert pipe.vae.use_tiling
    pipe.vae.enable_tiling(
        tile_sample_min_height=64,
        tile_sample_min_width=64,
        tile_sample_stride_height=48,
        tile_sample_stride_width=48,
    )
    latents = torch.randn(1, 16, 3, 160 // 8, 160 // 8, device="cuda")
    tiled = wan.decode_latents(pipe, latents)
    pipe.vae.disable_tiling()
    whole = wan.decode_latents(pipe, latents)
    assert tiled.shape == whole.shape == (1, 9, 3, 160, 160)
    assert torch.isfinite(tiled).all()


def test_plan_reads_the_cards_free_memory():
    from loraforge.render.device import plan_memory
    from loraforge.trainer.presets import load_pipeline

    pipe = load_pipeline("tiny-wan2.1-t2v")
    plan = plan_memory(
        pipe, "wan", torch.device("cuda"), torch.bfloat16, width=832, height=480, frames=81
    )
    free, _ = torch.cuda.mem_get_info()
    assert plan.budget_bytes is not None and 0 < plan.budget_bytes < free
    assert plan.offload == "none"  # a tiny model fits any card


@pytest.mark.parametrize("offload", ["auto", "group"])
def test_scenario_renders_on_the_card_where_the_settings_say(tmp_path, offload):
    from pathlib import Path

    # writing the videos needs ffmpeg (the imageio-ffmpeg wheel, 68 MB: a bare GPU machine
    # may lack it, and it is too big to carry with the checkout)
    pytest.importorskip("imageio_ffmpeg")

    from loraforge.render.executor import Placement, ScenarioRenderer
    from loraforge.render.scenario import parse_scenario

    scenario = parse_scenario(f"""
image_preset: tiny-sdxl
video_preset: tiny-wan2.1-flf2v
output: {{width: 64, height: 64}}
steps: 2
memory: {{offload: {offload}}}
transition: {{frames: 5, fps: 8}}
shots:
  - {{prompt: "a red ball", seed: 1, negative_prompt: "blurry"}}
  - {{prompt: "a blue cube", seed: 2}}
""")
    renderer = ScenarioRenderer(lambda lora: Path("/nonexistent"), placement=Placement())
    result = renderer.render(scenario, tmp_path / "out")
    for stage in ("image", "video"):
        where = result.placement[stage]
        assert where["device"].startswith("cuda") and where["dtype"] == "bfloat16", where
        assert where["offload"] == ("none" if offload == "auto" else "group"), where
    assert len(result.transitions) == 1 and result.film is not None
