"""What every family module's ``generate`` shares: the seeded generator and the per-step hook.

``generate`` (in wan, sdxl, flux, sd15) takes a pipeline that is already where it should
run (``loraforge.render.device.place`` puts it on the device, in the dtype, with the memory
savers); it never moves models itself, so render, the trainer's previews and the benchmark
run the same call on whatever placement they chose.

Guidance vocabulary, the same in every family:

- ``guidance``: true classifier-free guidance (two forwards per step, conditional and
  negative/unconditional, mixed as ``uncond + g * (cond - uncond)``); 1.0 turns it off and
  the negative prompt then has no effect. Wan, SDXL and SD1.5 are trained for it; for Flux
  it is diffusers' ``true_cfg_scale`` and needs a negative prompt.
- ``distilled_guidance``: Flux dev only, the guidance strength fed to the guidance-distilled
  transformer as an embedding (one forward per step; diffusers' ``guidance_scale`` there).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from loraforge.runtime.errors import InvalidInput

StepHook = Callable[[int], None]


def cpu_generator(seed: int) -> torch.Generator:
    """Noise is drawn on the CPU so a seed gives the same image on every device."""
    return torch.Generator("cpu").manual_seed(int(seed))


def step_kwargs(on_step: StepHook | None) -> dict[str, Any]:
    """``callback_on_step_end`` calling ``on_step(step_index)`` after each denoising step
    (progress, cancel by raising, per-step timing in bench/render_step.py)."""
    if on_step is None:
        return {}

    def callback(_pipe: Any, step: int, _timestep: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        on_step(step)
        return kwargs

    return {"callback_on_step_end": callback}


def check_guidance(guidance: float) -> float:
    if not 0.0 <= float(guidance) <= 30.0:
        raise InvalidInput(f"guidance {guidance} is outside 0..30; 1 turns CFG off, 4-7 is usual")
    return float(guidance)
