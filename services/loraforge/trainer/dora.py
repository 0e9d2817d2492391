"""DoRA in the LoRA file: what ``dora_scale`` holds, and an exact loader for diffusers.

peft trains DoRA as ``W' = m * (W + dW) / ||W + dW||`` with one magnitude ``m`` per output row
(``dW = scaling * B @ A``). The file ComfyUI loads carries ``<module>.dora_scale`` next to the
LoRA pair, but ComfyUI's ``weight_decompose`` divides an output-axis scale by the norm of the
*base* weight, ``W' = d * (W + dW) / ||W||``. So the file stores

    d = m * ||W|| / ||W + dW||      (per output row, shaped [out, 1, ...] like the weight)

which makes ComfyUI reproduce the trained adapter exactly; the metadata key
``loraforge.dora_convention = comfyui-base-norm`` says so, so the file can be rewritten if
ComfyUI ever normalises by the adapted weight (LyCORIS's convention, where d = m).

diffusers drops every ``dora_scale`` key (its SD/SDXL/Flux loaders warn, its Wan converter
fails), so :func:`load_dora_file` converts the file back to peft's own layout (module names of
the diffusers model, ``lora_magnitude_vector`` = m, alpha folded into ``lora_B``) and hands that
to ``load_lora_weights``, which then builds real DoRA layers. Recovering m needs the base
weights, which the pipeline being loaded into has. A DoRA file without that metadata key
(kohya, LyCORIS) holds m itself and is read that way; one with a magnitude per *input*
channel (LyCORIS ``wd_on_output=False``) has no peft equivalent and is refused.

At an adapter weight w other than 1 the two consumers differ: ComfyUI blends the weights,
``W + w (W' - W)``; peft (``set_adapters``, so our previews' strength sweep and the render
service) scales dW inside the decomposition and keeps m. Both give the trained layer at
w = 1; at w = 0 ComfyUI gives the base layer and peft ``m * W / ||W||`` (the learned
magnitude on the base direction).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file

from loraforge.runtime.errors import InvalidInput

DORA_CONVENTION = "comfyui-base-norm"
ToComfy = Callable[[dict[str, torch.Tensor], float], dict[str, torch.Tensor]]


def row_norm(weight: torch.Tensor) -> torch.Tensor:
    """L2 norm of each output row, shaped [out, 1, ...] so it broadcasts against ``weight``."""
    w = weight.float()
    return w.reshape(w.shape[0], -1).norm(dim=1).reshape(w.shape[0], *[1] * (w.dim() - 1))


def delta_weight(
    lora_a: torch.Tensor, lora_b: torch.Tensor, scaling: float, shape: torch.Size
) -> torch.Tensor:
    """``scaling * B @ A`` in the base weight's shape (Linear, or Conv with a 1x1 ``B``)."""
    return (scaling * lora_b.float().flatten(1) @ lora_a.float().flatten(1)).reshape(shape)


def comfy_scale(magnitude: torch.Tensor, base: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """peft's magnitude -> the ``dora_scale`` ComfyUI applies as trained."""
    m = magnitude.float().reshape(base.shape[0], *[1] * (base.dim() - 1))
    return m * row_norm(base) / row_norm(base.float() + delta).clamp_min(1e-12)


def magnitude_from_comfy(
    dora_scale: torch.Tensor, base: torch.Tensor, delta: torch.Tensor
) -> torch.Tensor:
    """Inverse of :func:`comfy_scale`, shaped as peft's ``lora_magnitude_vector`` for the layer
    ([out] for Linear, [1, out, 1, ...] for Conv)."""
    d = dora_scale.float().reshape(base.shape[0], *[1] * (base.dim() - 1))
    m = (d * row_norm(base.float() + delta) / row_norm(base).clamp_min(1e-12)).flatten()
    return m if base.dim() == 2 else m.reshape(1, -1, *[1] * (base.dim() - 2))


def base_weight(module: torch.nn.Module) -> torch.Tensor:
    """The frozen weight of a (peft-wrapped) layer in fp32, undoing the fp8 storage of
    :mod:`loraforge.trainer.memory` (which keeps a per-row scale next to the weight)."""
    get_base_layer: Any = getattr(module, "get_base_layer", None)  # peft wrapper, else None
    base: Any = get_base_layer() if get_base_layer is not None else module
    w = base.weight.detach()
    scale = getattr(base, "fp8_scale", None)
    return w.float() * scale.float().to(w.device) if scale is not None else w.float()


def comfy_magnitudes(
    model: torch.nn.Module, peft_sd: dict[str, torch.Tensor], scaling: float
) -> dict[str, torch.Tensor]:
    """``peft_sd`` with each ``lora_magnitude_vector`` replaced by its ComfyUI ``dora_scale``
    value (the family's key mapper renames it); LoRA pairs pass through."""
    out = dict(peft_sd)
    for key, m in peft_sd.items():
        if not key.endswith(".lora_magnitude_vector"):
            continue
        module = key[: -len(".lora_magnitude_vector")]
        w = base_weight(model.get_submodule(module)).cpu()
        delta = delta_weight(
            peft_sd[f"{module}.lora_A.weight"], peft_sd[f"{module}.lora_B.weight"], scaling, w.shape
        )
        out[key] = comfy_scale(m, w, delta)
    return out


def has_dora(path: Path) -> bool:
    from safetensors import SafetensorError

    try:
        with safe_open(str(path), "pt") as f:
            return any(k.endswith(".dora_scale") for k in f.keys())  # noqa: SIM118 (not a dict)
    except (OSError, SafetensorError) as exc:
        raise InvalidInput(
            f"{path.name} is not a readable .safetensors LoRA ({exc}); "
            "export it again or pick another file"
        ) from None


def _file_prefixes(denoiser: torch.nn.Module, to_comfy: ToComfy) -> dict[str, str]:
    """File module prefix (the family's ComfyUI naming) -> module name in ``denoiser``,
    built by running the family's own exporter on every weight-bearing layer."""
    probe = torch.zeros(1, 1)
    found: dict[str, str] = {}
    for name, module in denoiser.named_modules():
        if ".lora_" in name or name.endswith(".base_layer"):
            continue  # peft's own submodules (a LoRA loaded earlier); the wrapper stands for them
        weight = getattr(
            module.get_base_layer() if hasattr(module, "get_base_layer") else module, "weight", None
        )
        if not isinstance(weight, torch.Tensor) or weight.dim() < 2:
            continue
        for key in to_comfy({f"{name}.lora_A.weight": probe}, 1.0):
            for suffix in (".lora_A.weight", ".lora_down.weight"):
                if key.endswith(suffix):
                    found[key[: -len(suffix)]] = name
    return found


def _pair(sd: Mapping[str, torch.Tensor], prefix: str) -> tuple[torch.Tensor, torch.Tensor]:
    for down, up in (("lora_A.weight", "lora_B.weight"), ("lora_down.weight", "lora_up.weight")):
        if f"{prefix}.{down}" in sd and f"{prefix}.{up}" in sd:
            return sd[f"{prefix}.{down}"], sd[f"{prefix}.{up}"]
    raise InvalidInput(f"DoRA file: {prefix}.dora_scale has no LoRA pair next to it")


def to_peft_layout(
    sd: Mapping[str, torch.Tensor],
    denoiser: torch.nn.Module,
    to_comfy: ToComfy,
    component: str,
    convention: str = DORA_CONVENTION,
) -> dict[str, torch.Tensor]:
    """A ComfyUI-layout DoRA file -> diffusers/peft keys ``<component>.<module>.lora_A.weight``,
    ``lora_B.weight`` (alpha / rank folded in) and ``lora_magnitude_vector``.

    ``convention``: ours (``comfyui-base-norm``), or ``lycoris`` for files other trainers
    wrote (kohya / LyCORIS store the magnitude itself as ``dora_scale``)."""
    modules = _file_prefixes(denoiser, to_comfy)
    prefixes = {
        k.rsplit(".", 2)[0] for k in sd if k.endswith((".lora_A.weight", ".lora_down.weight"))
    }
    unknown = sorted(p for p in prefixes if p not in modules)
    if unknown:
        raise InvalidInput(
            f"DoRA file names {len(unknown)} layers this model does not have (first: "
            f"{unknown[0]}); it was trained for a different base model, or names its layers in "
            "a way loraforge does not map (ComfyUI may still load it)"
        )
    out: dict[str, torch.Tensor] = {}
    for prefix in sorted(prefixes):
        name = modules[prefix]
        lora_a, lora_b = _pair(sd, prefix)
        rank = lora_a.shape[0]
        alpha = float(sd[f"{prefix}.alpha"]) if f"{prefix}.alpha" in sd else float(rank)
        scaling = alpha / rank
        key = f"{component}.{name}"
        out[f"{key}.lora_A.weight"] = lora_a
        out[f"{key}.lora_B.weight"] = lora_b * scaling
        if f"{prefix}.dora_scale" in sd:
            w = base_weight(denoiser.get_submodule(name)).cpu()
            if (lora_b.shape[0], lora_a.flatten(1).shape[1]) != (w.shape[0], w[0].numel()):
                raise InvalidInput(
                    f"DoRA file: layer {prefix} is {lora_b.shape[0]}x{lora_a.flatten(1).shape[1]} "
                    f"but {tuple(w.shape)} in this model; it was trained for a different base model"
                )
            scale = sd[f"{prefix}.dora_scale"]
            if scale.shape[0] != w.shape[0] or scale.numel() != w.shape[0]:
                raise InvalidInput(
                    f"DoRA file: {prefix}.dora_scale has shape {tuple(scale.shape)}, a magnitude "
                    "per input channel (LyCORIS wd_on_output=False); diffusers' DoRA keeps one "
                    "per output row, so only ComfyUI can apply this file"
                )
            if convention == DORA_CONVENTION:
                delta = delta_weight(lora_a, lora_b, scaling, w.shape)
                magnitude = magnitude_from_comfy(scale, w, delta)
            else:
                flat = scale.float().flatten()
                magnitude = flat if w.dim() == 2 else flat.reshape(1, -1, *[1] * (w.dim() - 2))
            out[f"{key}.lora_magnitude_vector"] = magnitude
    return out


def load_dora_file(
    pipe: Any,
    path: Path,
    denoiser_attr: str,
    to_comfy: ToComfy,
    adapter_name: str,
    component: str,
    **load_kwargs: Any,
) -> None:
    """Load one of our DoRA files into ``pipe`` as a peft DoRA adapter named ``adapter_name``."""
    denoiser = getattr(pipe, denoiser_attr)
    with safe_open(str(path), "pt") as f:
        convention = (f.metadata() or {}).get("loraforge.dora_convention", "lycoris")
    peft_sd = to_peft_layout(load_file(str(path)), denoiser, to_comfy, component, convention)
    pipe.load_lora_weights(peft_sd, adapter_name=adapter_name, **load_kwargs)


def load_lora(
    pipe: Any,
    path: Path,
    denoiser_attr: str,
    to_comfy: ToComfy,
    adapter_name: str,
    component: str,
    **load_kwargs: Any,
) -> None:
    """``pipe.load_lora_weights`` for a plain LoRA file, :func:`load_dora_file` for a DoRA one."""
    if has_dora(path):
        load_dora_file(pipe, path, denoiser_attr, to_comfy, adapter_name, component, **load_kwargs)
    else:
        pipe.load_lora_weights(str(path), adapter_name=adapter_name, **load_kwargs)
