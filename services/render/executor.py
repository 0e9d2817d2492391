"""Render a scenario on local disk: keyframe images with the scenario's LoRAs composed as named
adapters, a video per pair from its first and last frame, and the joined film.

Model code comes from the trainer's per-family modules (`loraforge.trainer.presets`), so a
render loads exactly the pipelines and LoRA layouts training produced; tiny presets run the
same path on CPU.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from loraforge.render.compat import check_compatible
from loraforge.render.film import join, thumbnail_strip
from loraforge.render.scenario import Scenario, ScenarioLora, Stage
from loraforge.runtime.errors import Cancelled

log = logging.getLogger(__name__)

LoraResolver = Callable[[ScenarioLora], Path]
Progress = Callable[[float, str], None]


@dataclass
class RenderResult:
    keyframes: list[Path] = field(default_factory=list)
    transitions: list[Path] = field(default_factory=list)
    film: Path | None = None
    thumbnails: Path | None = None
    warnings: list[str] = field(default_factory=list)


def _pil(image: Any) -> Any:
    """A (C,H,W) or (H,W,C) float tensor/array in [0,1] -> PIL image."""
    from PIL import Image

    arr = image.detach().cpu().float().numpy() if hasattr(image, "detach") else np.asarray(image)
    if arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[-1] not in (1, 3):
        arr = arr.transpose(1, 2, 0)
    arr = (np.clip(arr, 0, 1) * 255).round().astype(np.uint8)
    return Image.fromarray(arr.squeeze())


def _write_video(frames: Any, path: Path, fps: int) -> Path:
    """frames: (F,C,H,W) or (F,H,W,C) float in [0,1]."""
    import imageio_ffmpeg

    images = [np.asarray(_pil(f)) for f in frames]
    h, w = images[0].shape[:2]
    writer = imageio_ffmpeg.write_frames(str(path), (w, h), fps=fps, macro_block_size=1,
                                         output_params=["-preset", "veryfast", "-crf", "18"])
    writer.send(None)
    for img in images:
        writer.send(np.ascontiguousarray(img))
    writer.close()
    return path


class ScenarioRenderer:
    def __init__(self, resolve_lora: LoraResolver, *, steps: int | None = None,
                 progress: Progress = lambda f, m: None, cancelled: Callable[[], bool] = lambda: False,
                 models_dir: Path | None = None):
        self._resolve = resolve_lora
        self._steps = steps
        self._progress = progress
        self._cancelled = cancelled
        self._models_dir = models_dir

    def _check(self) -> None:
        if self._cancelled():
            raise Cancelled("render cancelled")

    def _pipeline(self, preset_name: str, stage: Stage, scenario: Scenario) -> tuple[Any, Any, str]:
        from loraforge.trainer.presets import get_preset, load_pipeline

        preset = get_preset(preset_name)
        pipe = load_pipeline(preset, self._models_dir)
        pipe.set_progress_bar_config(disable=True)  # progress goes to the job, not stderr
        names, weights = [], []
        for lora in (lo for lo in scenario.loras if lo.stage is stage):
            path = self._resolve(lora)
            check_compatible(lora.name, path, preset_name)
            # the family's denoiser attribute (unet for SD, transformer for Flux and Wan)
            attr = next(iter(preset.module.output_files(preset.variant, lora.name)))
            preset.module.load_lora_into_pipeline(pipe, {attr: path}, lora.name)
            names.append(lora.name)
            weights.append(lora.effective_weight)
        if names:
            pipe.set_adapters(names, adapter_weights=weights)
        return pipe, preset.module, preset.variant

    def render(self, scenario: Scenario, out_dir: Path) -> RenderResult:
        out_dir.mkdir(parents=True, exist_ok=True)
        result = RenderResult(warnings=scenario.warnings())
        steps = self._steps or scenario.steps
        w, h = scenario.output.width, scenario.output.height
        pairs = scenario.pairs()
        total = len(scenario.shots) + len(pairs) + 1

        pipe, family, variant = self._pipeline(scenario.image_preset, Stage.IMAGE, scenario)
        images = []
        for i, shot in enumerate(scenario.shots, start=1):
            self._check()
            self._progress((i - 1) / total, f"keyframe {i}/{len(scenario.shots)}")
            out = family.generate(pipe, shot.prompt, shot.seed, w, h, steps=steps, variant=variant)
            image = _pil(out[0])
            path = out_dir / f"keyframe_{i:02d}.png"
            image.save(path)
            images.append(image)
            result.keyframes.append(path)
        del pipe

        if pairs:
            vpipe, vfamily, vvariant = self._pipeline(scenario.video_preset, Stage.VIDEO, scenario)
            for p, (a, b) in enumerate(pairs, start=1):
                self._check()
                self._progress((len(scenario.shots) + p - 1) / total, f"transition {p}/{len(pairs)}")
                tr = scenario.transition_for(p - 1)
                prompt = tr.prompt or scenario.shots[b].prompt
                frames = vfamily.generate(vpipe, prompt, scenario.shots[a].seed, w, h, tr.frames,
                                          steps=steps, variant=vvariant, image=images[a],
                                          last_image=images[b])
                path = _write_video(frames[0], out_dir / f"transition_{p:02d}.mp4", tr.fps)
                result.transitions.append(path)
            self._check()
            self._progress((total - 1) / total, "joining the film")
            result.film = join(result.transitions, out_dir / f"{scenario.name}.mp4",
                               fps=scenario.transition_for(0).fps, mode=scenario.join.value,
                               crossfade_s=scenario.crossfade_s)
            result.thumbnails = thumbnail_strip(result.film, out_dir / f"{scenario.name}_strip.png")
        self._progress(1.0, "done")
        return result
