"""The preset table without the family modules (no torch): which presets exist, their family,
variant and whether they are tiny. The gateway reads it to check a hosted fine-tune request
(library/finetunes.py); everything that trains or renders goes through `presets.py`, which
re-exports `Preset` and `PRESETS` from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any


@dataclass(frozen=True)
class Preset:
    name: str
    family: str
    variant: str
    tiny: bool
    description: str
    hub_reference: str = ""  # where an operator gets the diffusers weights (never fetched here)

    @property
    def module(self) -> ModuleType:
        from loraforge.trainer.presets import FAMILY_MODULES  # torch: only when training

        return FAMILY_MODULES[self.family]

    @property
    def stride(self) -> int:
        return int(self.module.STRIDE)

    @property
    def is_video(self) -> bool:
        return self.family == "wan"

    @property
    def defaults(self) -> Any:
        return self.module.DEFAULTS


_REAL = [
    Preset(
        "wan2.1-t2v-1.3b",
        "wan",
        "t2v",
        False,
        "Wan 2.1 text-to-video 1.3B",
        "Wan-AI/Wan2.1-T2V-1.3B-Diffusers",
    ),
    Preset(
        "wan2.1-t2v-14b",
        "wan",
        "t2v",
        False,
        "Wan 2.1 text-to-video 14B",
        "Wan-AI/Wan2.1-T2V-14B-Diffusers",
    ),
    Preset(
        "wan2.1-i2v-14b",
        "wan",
        "i2v",
        False,
        "Wan 2.1 image-to-video 14B (480p)",
        "Wan-AI/Wan2.1-I2V-14B-480P-Diffusers",
    ),
    Preset(
        "wan2.1-flf2v-14b",
        "wan",
        "flf2v",
        False,
        "Wan 2.1 first-last-frame-to-video 14B",
        "Wan-AI/Wan2.1-FLF2V-14B-720P-diffusers",
    ),
    Preset(
        "wan2.2-t2v-a14b",
        "wan",
        "t2v-a14b",
        False,
        "Wan 2.2 text-to-video A14B (high-noise + low-noise experts)",
        "Wan-AI/Wan2.2-T2V-A14B-Diffusers",
    ),
    Preset(
        "sdxl",
        "sdxl",
        "base",
        False,
        "Stable Diffusion XL 1.0 base",
        "stabilityai/stable-diffusion-xl-base-1.0",
    ),
    Preset("flux.1-dev", "flux", "dev", False, "FLUX.1 [dev]", "black-forest-labs/FLUX.1-dev"),
    Preset(
        "sd1.5",
        "sd1.5",
        "base",
        False,
        "Stable Diffusion 1.5",
        "stable-diffusion-v1-5/stable-diffusion-v1-5",
    ),
]
_TINY = [
    Preset("tiny-wan2.1-t2v", "wan", "t2v", True, "tiny random Wan 2.1 T2V (tests, demo)"),
    Preset("tiny-wan2.1-i2v", "wan", "i2v", True, "tiny random Wan 2.1 I2V"),
    Preset("tiny-wan2.1-flf2v", "wan", "flf2v", True, "tiny random Wan 2.1 FLF2V"),
    Preset("tiny-wan2.2-t2v", "wan", "t2v-a14b", True, "tiny random Wan 2.2 T2V, two experts"),
    Preset("tiny-sdxl", "sdxl", "base", True, "tiny random SDXL"),
    Preset("tiny-flux", "flux", "dev", True, "tiny random FLUX.1-dev"),
    Preset("tiny-sd1.5", "sd1.5", "base", True, "tiny random SD 1.5"),
]
PRESETS: dict[str, Preset] = {p.name: p for p in _REAL + _TINY}
