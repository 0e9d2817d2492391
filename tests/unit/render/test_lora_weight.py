"""A scenario's LoRA weight reaches the image: weight 0 renders like no LoRA at all, weight 1
changes the keyframe; a LoRA of another family is refused with the reason, before any render.

The LoRA files are made the way training exports them: a PEFT adapter on the UNet attention
projections (random, non-zero lora_B so the adapter does something), converted to the kohya
layout ComfyUI loads (`family.to_comfy`) and saved with `loraforge.family` metadata.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from loraforge.render.compat import check_compatible
from loraforge.render.executor import ScenarioRenderer
from loraforge.render.scenario import ScenarioLora, parse_scenario
from loraforge.runtime.errors import InvalidInput
from loraforge.trainer.presets import get_preset, load_pipeline

pytestmark = pytest.mark.timeout(180)


def make_lora(
    preset_name: str,
    path: Path,
    *,
    rank: int = 4,
    alpha: float = 4.0,
    scale: float = 0.5,
    seed: int = 0,
    dora: bool = False,
) -> Path:
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    from loraforge.trainer import dora as dora_file

    preset = get_preset(preset_name)
    pipe = load_pipeline(preset)
    denoiser = next(iter(preset.module.denoisers(pipe).values()))
    denoiser.add_adapter(
        LoraConfig(
            r=rank,
            lora_alpha=alpha,
            init_lora_weights=True,
            target_modules=["to_q", "to_k", "to_v", "to_out.0"],
            use_dora=dora,
        )
    )
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in denoiser.named_parameters():
            if "lora_B" in name:  # PEFT initialises B to zero (a no-op adapter): make it act
                param.copy_(torch.randn(param.shape, generator=gen) * scale)
            if "lora_magnitude_vector" in name:  # and moves the magnitude off ||W||
                param.mul_(1.0 + 0.2 * torch.rand(param.shape, generator=gen))
    peft_sd = {k: v.detach().float().cpu() for k, v in get_peft_model_state_dict(denoiser).items()}
    assert peft_sd, "the adapter has no parameters"
    meta = {"loraforge.family": preset.family}
    if dora:
        peft_sd = dora_file.comfy_magnitudes(denoiser, peft_sd, alpha / rank)
        meta["loraforge.dora_convention"] = dora_file.DORA_CONVENTION
    save_file(preset.module.to_comfy(peft_sd, alpha), str(path), metadata=meta)
    return path


@pytest.fixture(scope="module")
def sdxl_lora(tmp_path_factory) -> Path:
    return make_lora("tiny-sdxl", tmp_path_factory.mktemp("lora") / "hero.safetensors")


@pytest.fixture(scope="module")
def sd15_lora(tmp_path_factory) -> Path:
    return make_lora("tiny-sd1.5", tmp_path_factory.mktemp("lora15") / "hero15.safetensors")


def _scenario(weight: float | None, *, lora: bool = True, preset: str = "tiny-sdxl") -> str:
    loras = ""
    if lora:
        loras = (
            "loras:\n  - {name: hero, path: hero.safetensors, type: character"
            + ("" if weight is None else f", weight: {weight}")
            + "}\n"
        )
    return (
        f"name: one\nimage_preset: {preset}\n"
        'shots: [{prompt: "a woman in a red scarf", seed: 3}]\n'
        "output: {width: 64, height: 64}\nsteps: 2\n" + loras
    )


def _render(text: str, lora_path: Path | None, out: Path) -> np.ndarray:
    resolved: list[ScenarioLora] = []

    def resolve(lora: ScenarioLora) -> Path:
        resolved.append(lora)
        assert lora_path is not None
        return lora_path

    scenario = parse_scenario(text)
    result = ScenarioRenderer(resolve).render(scenario, out)
    assert len(result.keyframes) == 1 and result.film is None
    assert len(resolved) == len(scenario.loras)
    return np.asarray(Image.open(result.keyframes[0]), dtype=np.float32)


def test_weight_zero_is_the_base_model_and_weight_one_changes_the_image(sdxl_lora, tmp_path):
    base = _render(_scenario(None, lora=False), None, tmp_path / "base")
    off = _render(_scenario(0.0), sdxl_lora, tmp_path / "w0")
    on = _render(_scenario(1.0), sdxl_lora, tmp_path / "w1")
    # weight 0: the adapter is loaded but scaled to nothing (PNG rounding: within 1 level)
    assert np.abs(off - base).max() <= 1.0
    # weight 1: the same seed and prompt give a visibly different keyframe
    diff = np.abs(on - off)
    assert diff.mean() > 1.0, f"mean pixel change {diff.mean():.3f} at weight 1"
    # the default weight of a character LoRA is 1.0: same as the explicit weight
    default = _render(_scenario(None), sdxl_lora, tmp_path / "default")
    assert np.abs(default - on).max() <= 1.0


def test_sd15_lora_on_an_sdxl_pipeline_is_refused_with_the_reason(sd15_lora, sdxl_lora, tmp_path):
    with pytest.raises(InvalidInput) as err:
        check_compatible("hero", sd15_lora, "tiny-sdxl")
    assert "SD1.5" in str(err.value) and "SDXL" in str(err.value)
    check_compatible("hero", sdxl_lora, "tiny-sdxl")  # the right family passes

    out = tmp_path / "refused"
    with pytest.raises(InvalidInput) as err:
        _render(_scenario(1.0), sd15_lora, out)
    message = str(err.value)
    assert "'hero'" in message and "trained for SD1.5" in message and "SDXL (tiny-sdxl)" in message
    assert not list(out.glob("*.png"))  # refused before any keyframe


@pytest.mark.parametrize("dora", [False, True], ids=["lora", "dora"])
def test_a_flux_lora_or_dora_reaches_the_flux_keyframe(dora, tmp_path):
    path = make_lora("tiny-flux", tmp_path / "hero.safetensors", scale=2.0, dora=dora)
    base = _render(_scenario(None, lora=False, preset="tiny-flux"), None, tmp_path / "base")
    off = _render(_scenario(0.0, preset="tiny-flux"), path, tmp_path / "w0")
    on = _render(_scenario(1.0, preset="tiny-flux"), path, tmp_path / "w1")
    if not dora:  # peft keeps a DoRA's magnitude at weight 0 (see trainer/dora.py)
        assert np.abs(off - base).max() <= 1.0
    assert np.abs(on - base).mean() > 1.0
