"""DoRA: the file's ``dora_scale`` reproduces the trained adapter under ComfyUI's formula, and
our loader gives diffusers the exact adapter (diffusers itself drops ``dora_scale``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from peft import LoraConfig, inject_adapter_in_model
from peft.utils import get_peft_model_state_dict
from safetensors import safe_open

from loraforge.runtime.errors import InvalidInput
from loraforge.trainer import dora, sd15
from loraforge.trainer.config import RunConfig
from loraforge.trainer.family import peft_to_kohya_keys
from loraforge.trainer.presets import load_pipeline
from loraforge.trainer.train import Trainer

from .test_training import reload_and_compare


def comfyui_weight_decompose(
    dora_scale: torch.Tensor, weight: torch.Tensor, lora_diff: torch.Tensor
) -> torch.Tensor:
    """ComfyUI's ``comfy/weight_adapter/base.py::weight_decompose`` at strength 1, the branch
    taken when ``dora_scale.shape[0] == weight.shape[0]`` (output axis): it divides by the
    norm of the *base* weight, not of the adapted one."""
    weight_calc = weight + lora_diff
    norm = weight.reshape(weight.shape[0], -1).norm(dim=1, keepdim=True)
    norm = norm.reshape(weight.shape[0], *[1] * (weight.dim() - 1)) + torch.finfo(weight.dtype).eps
    return weight_calc * (dora_scale / norm)


class TwoLayers(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(12, 20)
        self.conv = torch.nn.Conv2d(3, 6, 3, padding=1)


def _trained_dora(seed: int = 0) -> tuple[torch.nn.Module, dict[str, torch.Tensor], float]:
    torch.manual_seed(seed)
    model = inject_adapter_in_model(
        LoraConfig(r=4, lora_alpha=8, target_modules=["proj", "conv"], use_dora=True), TwoLayers()
    )
    with torch.no_grad():  # stands in for training: move every LoRA parameter, magnitude too
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.2 * (p.abs().mean() + 0.05))
    sd = {k: v.detach().clone() for k, v in get_peft_model_state_dict(model).items()}
    return model, sd, 8 / 4


def test_dora_scale_reproduces_the_trained_layer_under_comfyuis_formula() -> None:
    model, peft_sd, scaling = _trained_dora()
    file = peft_to_kohya_keys(dora.comfy_magnitudes(model, peft_sd, scaling), alpha=8)

    x = torch.randn(5, 12)
    w, b = model.proj.base_layer.weight, model.proj.base_layer.bias
    lora_diff = (file["lora_unet_proj.alpha"] / 4) * (
        file["lora_unet_proj.lora_up.weight"] @ file["lora_unet_proj.lora_down.weight"]
    )
    assert file["lora_unet_proj.dora_scale"].shape == (20, 1)
    comfy = torch.nn.functional.linear(
        x, comfyui_weight_decompose(file["lora_unet_proj.dora_scale"], w, lora_diff), b
    )
    with torch.no_grad():
        trained = model.proj(x)
        plain = model.proj.base_layer(x) + x @ lora_diff.T
    assert torch.allclose(comfy, trained, atol=1e-5)
    assert (plain - trained).abs().max() > 1e-2  # dropping the magnitude would change the layer

    img = torch.randn(2, 3, 8, 8)
    cw = model.conv.base_layer.weight
    conv_diff = dora.delta_weight(
        file["lora_unet_conv.lora_down.weight"],
        file["lora_unet_conv.lora_up.weight"],
        scaling,
        cw.shape,
    )
    assert file["lora_unet_conv.dora_scale"].shape == (6, 1, 1, 1)
    comfy_conv = torch.nn.functional.conv2d(
        img,
        comfyui_weight_decompose(file["lora_unet_conv.dora_scale"], cw, conv_diff),
        model.conv.base_layer.bias,
        padding=1,
    )
    with torch.no_grad():
        assert torch.allclose(comfy_conv, model.conv(img), atol=1e-5)


def test_magnitude_round_trips_through_the_file_convention() -> None:
    model, peft_sd, scaling = _trained_dora(seed=3)
    for name in ("proj", "conv"):
        w = dora.base_weight(model.get_submodule(name))
        delta = dora.delta_weight(
            peft_sd[f"{name}.lora_A.weight"], peft_sd[f"{name}.lora_B.weight"], scaling, w.shape
        )
        m = peft_sd[f"{name}.lora_magnitude_vector"]
        back = dora.magnitude_from_comfy(dora.comfy_scale(m, w, delta), w, delta)
        assert back.shape == m.shape
        assert torch.allclose(back, m, rtol=1e-5)


@pytest.mark.parametrize("preset", ["tiny-wan2.1-t2v", "tiny-wan2.2-t2v", "tiny-sdxl", "tiny-flux"])
def test_dora_run_exports_a_file_our_loader_reproduces(
    preset: str, one_clip: Path, one_image: Path, tmp_path: Path
) -> None:
    cfg = RunConfig(
        preset=preset,
        dataset=one_clip if "wan" in preset else one_image,
        output_dir=tmp_path,
        steps=4,
        learning_rate=5e-2,
        rank=4,
        alpha=8,
        use_dora=True,
    )
    trainer = Trainer(cfg)
    result = trainer.run()
    for path in result.files.values():
        with safe_open(str(path), "pt") as f:
            keys, meta = list(f.keys()), f.metadata()
            scale = next(f.get_tensor(k) for k in keys if k.endswith(".dora_scale"))
        assert meta["loraforge.dora_convention"] == dora.DORA_CONVENTION
        n_pairs = sum(k.endswith((".lora_A.weight", ".lora_down.weight")) for k in keys)
        assert sum(k.endswith(".dora_scale") for k in keys) == n_pairs
        assert scale.dim() == 2 and scale.shape[1] == 1

    fresh, _ = reload_and_compare(trainer, result.files)
    layers = [
        m
        for d in trainer.family.denoisers(fresh).values()
        for m in d.modules()
        if type(m).__name__ == "DoraLinearLayer"
    ]
    assert layers  # diffusers built real DoRA layers, not a plain LoRA


def test_a_dora_file_for_another_model_is_refused(one_image: Path, tmp_path: Path) -> None:
    result = Trainer(
        RunConfig(
            preset="tiny-sdxl",
            dataset=one_image,
            output_dir=tmp_path,
            steps=1,
            rank=2,
            use_dora=True,
        )
    ).run()
    pipe: Any = load_pipeline("tiny-sd1.5")
    with pytest.raises(InvalidInput, match="trained for a different base model"):
        dora.load_lora(pipe, result.files["unet"], "unet", sd15.to_comfy, "d", "unet")


def test_dora_with_fp8_base_is_refused(one_image: Path, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="use_dora cannot be combined with fp8_base"):
        Trainer(
            RunConfig(
                preset="tiny-flux",
                dataset=one_image,
                output_dir=tmp_path,
                steps=2,
                rank=2,
                use_dora=True,
                fp8_base=True,
            )
        )


def test_a_foreign_dora_file_is_read_in_lycoris_convention_or_refused(
    one_image: Path, tmp_path: Path
) -> None:
    """kohya / LyCORIS files store the magnitude itself as dora_scale (no loraforge metadata);
    an input-axis scale (LyCORIS wd_on_output=False) cannot become a peft DoRA layer."""
    from safetensors.torch import load_file, save_file

    trainer = Trainer(
        RunConfig(
            preset="tiny-sd1.5",
            dataset=one_image,
            output_dir=tmp_path,
            steps=2,
            rank=2,
            learning_rate=5e-2,
            use_dora=True,
        )
    )
    ours = load_file(str(trainer.run().files["unet"]))
    pipe = load_pipeline("tiny-sd1.5")
    key = next(k for k in ours if k.endswith(".dora_scale"))
    foreign = dict(ours.items())
    foreign[key] = torch.full_like(ours[key], 0.5)
    save_file(foreign, str(tmp_path / "kohya.safetensors"))  # no loraforge metadata
    dora.load_lora(pipe, tmp_path / "kohya.safetensors", "unet", sd15.to_comfy, "k", "unet")
    name = key.removeprefix("lora_unet_").removesuffix(".dora_scale")
    layer = next(
        m
        for n, m in pipe.unet.named_modules()
        if n.replace(".", "_") == name and hasattr(m, "lora_magnitude_vector")
    )
    assert torch.allclose(
        layer.lora_magnitude_vector["k"].weight, torch.full((layer.out_features,), 0.5)
    )

    foreign[key] = torch.ones(1, layer.in_features)  # one per input channel
    save_file(foreign, str(tmp_path / "input-axis.safetensors"))
    with pytest.raises(InvalidInput, match="per input channel"):
        dora.load_lora(
            load_pipeline("tiny-sd1.5"),
            tmp_path / "input-axis.safetensors",
            "unet",
            sd15.to_comfy,
            "k",
            "unet",
        )


@pytest.mark.parametrize("content", [b"", b"garbage, not safetensors"], ids=["empty", "garbage"])
def test_an_unreadable_lora_file_is_refused_with_the_reason(content: bytes, tmp_path: Path) -> None:
    from loraforge.render.compat import check_compatible

    path = tmp_path / "hero.safetensors"
    path.write_bytes(content)
    for load in (lambda: dora.has_dora(path), lambda: check_compatible("hero", path, "tiny-sdxl")):
        with pytest.raises(InvalidInput, match=r"not a readable \.safetensors LoRA"):
            load()
