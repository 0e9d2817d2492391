"""The family modules' `generate` honours guidance and the negative prompt (true CFG for Wan
and the SD families, distilled + true CFG for Flux) on tiny random pipelines.

Guidance 1 vs 5 must give a different image (the unconditional branch now runs), and at
guidance 5 the negative prompt must matter; at guidance 1 it must not (CFG is off, which is
what previews rely on for speed)."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from loraforge.runtime.errors import InvalidInput
from loraforge.trainer.presets import get_preset, load_pipeline

pytestmark = pytest.mark.timeout(120)

PROMPT = "a red fox running through snow"
NEGATIVE = "blurry, low quality, watermark"


def _render(name: str, **kw):
    preset = get_preset(name)
    pipe = load_pipeline(preset)
    pipe.set_progress_bar_config(disable=True)
    extra = {}
    size = 64 if preset.family in ("sdxl", "sd1.5") else 32
    if preset.is_video:
        extra["frames"] = 5
        if preset.variant in ("i2v", "flf2v"):
            extra["image"] = Image.new("RGB", (size, size), (200, 40, 40))
            extra["last_image"] = Image.new("RGB", (size, size), (40, 40, 200))
    return preset.module.generate(
        pipe, PROMPT, 3, size, size, steps=2, variant=preset.variant, **extra, **kw
    )


# SDXL through the renderer: test_render_device; Wan I2V: test_gpu_render and the executor
@pytest.mark.parametrize("name", ["tiny-sd1.5", "tiny-wan2.2-t2v"])
def test_guidance_and_negative_prompt_change_the_output(name):
    base = _render(name, guidance=1.0)
    cfg = _render(name, guidance=5.0)
    neg = _render(name, guidance=5.0, negative_prompt=NEGATIVE)
    off = _render(name, guidance=1.0, negative_prompt=NEGATIVE)
    assert (base - cfg).abs().max() > 1e-3, "guidance 5 rendered like guidance 1"
    assert (cfg - neg).abs().max() > 1e-3, "the negative prompt had no effect at guidance 5"
    assert torch.equal(base, off), "CFG off must ignore the negative prompt"


def test_flux_distilled_and_true_cfg():
    base = _render("tiny-flux")
    assert (base - _render("tiny-flux", distilled_guidance=1.0)).abs().max() > 1e-4
    true_cfg = _render("tiny-flux", guidance=4.0, negative_prompt=NEGATIVE)
    assert (base - true_cfg).abs().max() > 1e-4
    with pytest.raises(InvalidInput, match="negative prompt"):
        _render("tiny-flux", guidance=4.0)


def test_on_step_sees_every_step():
    seen: list[int] = []
    _render("tiny-sd1.5", on_step=seen.append)
    assert seen == [0, 1]


def test_scenario_schedulers_sample_each_family():
    from loraforge.render.scenario import FLOW_SCHEDULERS, IMAGE_SCHEDULERS
    from loraforge.render.schedulers import set_scheduler

    sd = load_pipeline(get_preset("tiny-sd1.5"))
    sd.set_progress_bar_config(disable=True)
    outputs = {}
    for name in IMAGE_SCHEDULERS:
        set_scheduler(sd, name, flow=False)
        outputs[name] = get_preset("tiny-sd1.5").module.generate(sd, PROMPT, 1, 64, 64, steps=2)
        assert torch.isfinite(outputs[name]).all(), name
    assert type(sd.scheduler).__name__ == "UniPCMultistepScheduler"
    assert (outputs["euler"] - outputs["ddim"]).abs().max() > 1e-4  # the sampler changed
    wan_preset = get_preset("tiny-wan2.1-t2v")
    wan = load_pipeline(wan_preset)
    wan.set_progress_bar_config(disable=True)
    for name in FLOW_SCHEDULERS:
        set_scheduler(wan, name, flow=True, shift=5.0)
        cfg = wan.scheduler.config
        assert (cfg.get("flow_shift") or cfg.get("shift")) == 5.0, name
        out = wan_preset.module.generate(wan, PROMPT, 1, 32, 32, 5, steps=2)
        assert torch.isfinite(out).all(), name
