"""Which model family a LoRA file belongs to, so a mismatch is refused before any render.

Our own files say it in their metadata (`loraforge.family`); foreign files (kohya, ComfyUI,
diffusers exports) are recognised by their key names and, for SD1.5 vs SDXL, by the width of
the cross-attention key projection (768 for SD1.5's CLIP-L, 2048 for SDXL's two encoders).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from loraforge.runtime.errors import InvalidInput

FAMILY_NAMES = {"wan": "Wan", "sdxl": "SDXL", "flux": "Flux", "sd1.5": "SD1.5"}

_CROSS_ATTN_K = re.compile(r"(attn2[._]to_k|attn2\.to_k).*(lora_down|lora_A)\.weight$")


def preset_family(preset: str) -> str:
    name = preset.removeprefix("tiny-")
    if name.startswith("wan"):
        return "wan"
    if name.startswith("flux"):
        return "flux"
    if name.startswith("sd1.5"):
        return "sd1.5"
    if name.startswith("sdxl"):
        return "sdxl"
    raise InvalidInput(f"unknown preset {preset!r}")


def lora_family(path: Path) -> str | None:
    """The family a LoRA file was trained for, or None when nothing tells."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
            if meta.get("loraforge.family"):
                return str(meta["loraforge.family"])
            keys = list(fh.keys())
            family = _family_from_keys(keys)
            if family in {"sd", None}:
                for key in keys:
                    if _CROSS_ATTN_K.search(key):
                        width = fh.get_slice(key).get_shape()[1]
                        return {768: "sd1.5", 2048: "sdxl"}.get(width)
                if family == "sd":
                    return _sd_from_metadata(meta)
            return family
    except (OSError, ValueError, json.JSONDecodeError, SafetensorError) as exc:
        raise InvalidInput(f"{path.name} is not a readable .safetensors LoRA ({exc})") from None


def _family_from_keys(keys: list[str]) -> str | None:
    joined = "\n".join(keys[:4000])
    if re.search(r"(^|\.)blocks\.\d+\.(self_attn|cross_attn|ffn)\.", joined):
        return "wan"
    if (
        "double_blocks" in joined
        or "single_transformer_blocks" in joined
        or "single_blocks" in joined
    ):
        return "flux"
    if "lora_te2_" in joined or "text_encoder_2" in joined or "input_blocks_" in joined:
        return "sdxl"
    if "lora_unet_" in joined or "unet." in joined:
        return "sd"
    return None


def _sd_from_metadata(meta: dict[str, str]) -> str | None:
    version = (
        meta.get("ss_base_model_version") or meta.get("modelspec.architecture") or ""
    ).lower()
    if "xl" in version:
        return "sdxl"
    if "v1" in version or "sd1" in version or "1.5" in version:
        return "sd1.5"
    return None


def check_compatible(lora_name: str, path: Path, preset: str) -> None:
    """Refuse a LoRA of another family than the pipeline it is loaded into."""
    want = preset_family(preset)
    have = lora_family(path)
    if have is not None and have != want:
        trained, target = FAMILY_NAMES.get(have, have), FAMILY_NAMES[want]
        raise InvalidInput(
            f"LoRA {lora_name!r} was trained for {trained} but the pipeline is {target} "
            f"({preset}); an {trained} LoRA does not load into {target}: use a LoRA trained on "
            f"{target} or change the preset"
        )
