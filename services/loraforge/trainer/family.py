"""What every model family module (wan, sdxl, sd15, flux) provides, and small shared helpers.

There is deliberately no generic model layer: each family module spells out how its
diffusers pipeline is built (tiny config or local weights), how text and pixels become
conditioning and latents, how the denoiser is called, which modules get LoRA, and how
LoRA keys are named in the file ComfyUI loads. The trainer calls these functions by name.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from loraforge.runtime.errors import InvalidInput


@dataclass(frozen=True)
class FamilyDefaults:
    """Training defaults of a family; every value can be overridden in the run config."""

    rank: int
    alpha: int
    learning_rate: float
    lr_scheduler: str
    warmup_steps: int
    objective: str  # "flow" (rectified flow / flow matching), "epsilon" or "v_prediction"
    timestep_sampling: str  # "uniform" | "logit_normal" (flow) ; "uniform" (DDPM)
    flow_shift: float
    resolution: str
    frames: int
    batch_size: int
    steps: int
    target_modules: tuple[str, ...]
    reasoning: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def config_hash(*configs: Any) -> str:
    """A short stable hash of model configs (FrozenDict / dict / str), for cache keys."""
    h = hashlib.sha256()
    for cfg in configs:
        if cfg is None:
            h.update(b"none")
            continue
        if isinstance(cfg, str):
            data: Any = cfg
        elif hasattr(cfg, "to_dict"):  # transformers PretrainedConfig
            data = cfg.to_dict()
        else:  # diffusers FrozenDict
            data = dict(cfg)
        h.update(json.dumps(data, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def kohya_name(module_path: str) -> str:
    """``down_blocks.1.attentions.0`` -> ``down_blocks_1_attentions_0`` (kohya / ComfyUI)."""
    return module_path.replace(".", "_")


def split_peft_key(key: str) -> tuple[str, str]:
    """``blocks.0.attn1.to_q.lora_A.weight`` -> (``blocks.0.attn1.to_q``, ``lora_A``)."""
    for part in ("lora_A", "lora_B", "lora_magnitude_vector"):
        marker = f".{part}"
        if marker in key:
            return key.split(marker)[0], part
    raise InvalidInput(f"unexpected LoRA parameter name {key!r}")


def _dora_scale_shape(value: torch.Tensor) -> torch.Tensor:
    """ComfyUI divides ``dora_scale`` by a [out, 1, ...] norm: a flat vector would broadcast
    to [out, out] (see :mod:`loraforge.trainer.dora` for what the value holds)."""
    return (value if value.dim() > 1 else value.reshape(-1, 1)).contiguous()


def peft_to_diffusion_model_keys(
    peft_sd: dict[str, torch.Tensor],
    alpha: float,
    rename: dict[str, str] | None = None,
    prefix: str = "diffusion_model.",
) -> dict[str, torch.Tensor]:
    """PEFT ``<module>.lora_A.weight`` -> ``<prefix><renamed module>.lora_A.weight`` + ``.alpha``.

    ``rename`` maps substrings of diffusers module names to the original checkpoint's names.
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in peft_sd.items():
        module, part = split_peft_key(key)
        name = module
        for src, dst in (rename or {}).items():
            name = name.replace(src, dst)
        if part == "lora_magnitude_vector":
            out[f"{prefix}{name}.dora_scale"] = _dora_scale_shape(value)
            continue
        out[f"{prefix}{name}.{part}.weight"] = value.contiguous()
        if part == "lora_A":
            out[f"{prefix}{name}.alpha"] = torch.tensor(float(alpha))
    return out


def peft_to_kohya_keys(
    peft_sd: dict[str, torch.Tensor], alpha: float, prefix: str = "lora_unet_"
) -> dict[str, torch.Tensor]:
    """PEFT names -> kohya ``lora_unet_<module_with_underscores>.lora_down.weight`` / ``.alpha``."""
    out: dict[str, torch.Tensor] = {}
    for key, value in peft_sd.items():
        module, part = split_peft_key(key)
        name = prefix + kohya_name(module)
        if part == "lora_magnitude_vector":
            out[f"{name}.dora_scale"] = _dora_scale_shape(value)
        elif part == "lora_A":
            out[f"{name}.lora_down.weight"] = value.contiguous()
            out[f"{name}.alpha"] = torch.tensor(float(alpha))
        else:
            out[f"{name}.lora_up.weight"] = value.contiguous()
    return out


def to_pil_list(pixels: torch.Tensor) -> list[Any]:
    """(B, C, H, W) in [-1, 1] -> list of PIL images."""
    from PIL import Image

    arr = ((pixels.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return [Image.fromarray(a.permute(1, 2, 0).cpu().numpy()) for a in arr]


def seeded(seed: int) -> torch.Generator:
    return torch.Generator("cpu").manual_seed(seed)
