"""Named base-model presets: which family module builds them and where their weights live.

Real presets resolve to ``<models dir>/<preset name>`` (settings ``LORAFORGE_MODELS__DIR``;
``/models`` in the Kubernetes Jobs, a read-only PVC) holding the diffusers-format pipeline
(``model_index.json`` and one folder per component), provisioned by the operator. No code
downloads anything: ``hub_reference`` only tells the operator what to put there.

``tiny-*`` presets are the same pipelines built from small configs with random weights
(seeded), with tokenizers built in code (:mod:`loraforge.trainer.tiny_text`). They go through
exactly the same training, caching and export code as real weights.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from loraforge.runtime.errors import InvalidInput, NotFound
from loraforge.runtime.settings import load_settings
from loraforge.trainer import flux, sd15, sdxl, wan
from loraforge.trainer.preset_table import PRESETS, Preset

FAMILY_MODULES: dict[str, ModuleType] = {
    "wan": wan,
    "sdxl": sdxl,
    "flux": flux,
    "sd1.5": sd15,
}

#: Seed of the random weights of every tiny preset (same weights in every process).
TINY_SEED = 0


class PresetNotProvisioned(NotFound):
    """A real preset whose weights are not in the models directory."""


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise InvalidInput(
            f"unknown base preset {name!r}; valid presets: {', '.join(PRESETS)}"
        ) from None


def default_models_dir() -> Path:
    return Path(load_settings().models.dir)


def weights_path(preset: Preset, models_dir: Path | None = None) -> Path:
    return Path(models_dir or default_models_dir()) / preset.name


def check_provisioned(preset: Preset, models_dir: Path | None = None) -> Path:
    path = weights_path(preset, models_dir)
    if not (path / "model_index.json").is_file():
        raise PresetNotProvisioned(
            f"base weights for preset {preset.name!r} are not provisioned: expected a "
            f"diffusers-format pipeline (model_index.json + component folders) at {path}. "
            f"Put the weights of {preset.hub_reference or preset.name} there (or set "
            "LORAFORGE_MODELS__DIR); loraforge never downloads them at run time."
        )
    return path


def load_pipeline(
    preset: Preset | str, models_dir: Path | None = None, dtype: torch.dtype = torch.float32
) -> Any:
    """The family's diffusers pipeline for a preset (tiny: built; real: from local disk)."""
    p = get_preset(preset) if isinstance(preset, str) else preset
    if p.tiny:
        return p.module.build_tiny(p.variant, TINY_SEED)
    return p.module.load_pretrained(check_provisioned(p, models_dir), p.variant, dtype)
