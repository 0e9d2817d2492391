"""Render a scenario on local disk: keyframe images with the scenario's LoRAs composed as named
adapters, a video per pair from its first and last frame, and the joined film.

Model code comes from the trainer's per-family modules (`loraforge.trainer.presets`), so a
render loads exactly the pipelines and LoRA layouts training produced; tiny presets run the
same path on CPU. Each stage's pipeline is loaded in the render dtype, gets its LoRAs and
scheduler, then is placed by `loraforge.render.device` (device, dtype, offload, VAE tiling);
the result records where each stage ran. A shot with an `image:` uses that picture as its
keyframe (no image model is loaded when every shot has one), and I2V/FLF2V videos start
(and FLF2V ones end) on exactly their keyframes.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import imageio_ffmpeg
import numpy as np
import torch
from PIL import Image, ImageOps

from loraforge.render.compat import check_compatible
from loraforge.render.device import (
    MemoryPlan,
    denoiser_device_dtype,
    place,
    plan_memory,
    resolve_device,
    resolve_dtype,
)
from loraforge.render.film import join, thumbnail_strip
from loraforge.render.scenario import Scenario, ScenarioLora, Stage
from loraforge.render.schedulers import set_scheduler
from loraforge.runtime.errors import Cancelled, InvalidInput
from loraforge.runtime.settings import Settings
from loraforge.trainer.presets import get_preset, load_pipeline

log = logging.getLogger(__name__)

LoraResolver = Callable[[ScenarioLora], Path]
Progress = Callable[[float, str], None]


@dataclass
class LatestProgress:
    """The last progress a render thread reported, read by the job's loop at every tick."""

    fraction: float = 0.0
    message: str = "starting"

    def update(self, fraction: float, message: str) -> None:
        self.fraction, self.message = fraction, message


@dataclass
class RenderResult:
    keyframes: list[Path] = field(default_factory=list)
    transitions: list[Path] = field(default_factory=list)
    film: Path | None = None
    thumbnails: Path | None = None
    warnings: list[str] = field(default_factory=list)
    # stage -> where its pipeline ran: device, dtype, offload, vae_tiling, reason
    placement: dict[str, dict[str, Any]] = field(default_factory=dict)


def to_pil(image: Any) -> Image.Image:
    """A (C,H,W) or (H,W,C) float tensor/array in [0,1] -> PIL image."""
    arr = image.detach().cpu().float().numpy() if hasattr(image, "detach") else np.asarray(image)
    if arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[-1] not in (1, 3):
        arr = arr.transpose(1, 2, 0)
    arr = (np.clip(arr, 0, 1) * 255).round().astype(np.uint8)
    return Image.fromarray(arr.squeeze())


def write_video(frames: Any, path: Path, fps: int) -> Path:
    """frames: (F,C,H,W) or (F,H,W,C) float in [0,1]."""
    images = [np.asarray(to_pil(f)) for f in frames]
    h, w = images[0].shape[:2]
    writer = imageio_ffmpeg.write_frames(
        str(path),
        (w, h),
        fps=fps,
        macro_block_size=1,
        output_params=["-preset", "veryfast", "-crf", "18"],
    )
    writer.send(None)
    for img in images:
        writer.send(np.ascontiguousarray(img))
    writer.close()
    return path


@dataclass(frozen=True)
class Placement:
    """Where render pipelines run (settings `LORAFORGE_RENDER__*`; a scenario's `memory:`
    block overrides offload and vae_tiling): see loraforge.render.device."""

    device: str = "auto"
    dtype: str = "auto"
    offload: str = "auto"
    vae_tiling: str = "auto"

    @classmethod
    def from_settings(cls, settings: Settings) -> Placement:
        r = settings.render
        return cls(device=r.device, dtype=r.dtype, offload=r.offload, vae_tiling=r.vae_tiling)


def fit_image(image: Image.Image, width: int, height: int) -> Image.Image:
    """An input image as a keyframe of the output size: centre-cropped to the output's aspect
    ratio, then resized (Lanczos). Never stretched: a portrait photo in a landscape film loses
    its top and bottom rather than looking squashed."""
    return ImageOps.fit(image.convert("RGB"), (width, height), method=Image.Resampling.LANCZOS)


def pin_frames(
    frames: torch.Tensor, first: Image.Image | None, last: Image.Image | None
) -> torch.Tensor:
    """Put the keyframes themselves as the first (and last) frame of a decoded video, so the
    film's cuts land on identical pictures (see ScenarioRenderer.render)."""
    out = frames.clone()
    for index, image in ((0, first), (-1, last)):
        if image is None:
            continue
        px = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)
        out[index] = px.to(out)
    return out


class ScenarioRenderer:
    def __init__(
        self,
        resolve_lora: LoraResolver,
        *,
        steps: int | None = None,
        progress: Progress = lambda f, m: None,
        cancelled: Callable[[], bool] = lambda: False,
        models_dir: Path | None = None,
        placement: Placement = Placement(),
        resolve_image: Callable[[str], Path] | None = None,
        free_bytes: int | None = None,
    ):
        self._resolve = resolve_lora
        self._resolve_image = resolve_image
        self._steps = steps
        self._progress = progress
        self._cancelled = cancelled
        self._models_dir = models_dir
        self._placement = placement
        self._free_bytes = free_bytes  # plan for this much free memory (tests); None = ask the card
        self.plans: dict[
            str, MemoryPlan
        ] = {}  # stage -> MemoryPlan of the last render (record, tests)
        self.pipelines: dict[str, Any] = {}  # stage -> the placed pipeline, while rendering
        self.placement: dict[str, dict[str, Any]] = {}
        self._at: tuple[int, int, int, str] = (0, 1, 1, "")

    def _check(self) -> None:
        if self._cancelled():
            raise Cancelled("render cancelled")

    def _item(self, index: int, total: int, steps: int, message: str) -> None:
        """Start work item `index` of `total` (a keyframe or a transition) of `steps` steps."""
        self._at = (index, total, steps, message)
        self._progress(index / total, message)

    def _on_step(self, step: int) -> None:
        # a cancel stops between two denoising steps, not after the whole shot; a 14B video
        # step takes seconds, so progress moves with the steps, not only per transition
        self._check()
        index, total, steps, message = self._at
        self._progress((index + (step + 1) / steps) / total, f"{message}, step {step + 1}/{steps}")

    def load_stage(
        self, preset_name: str, stage: Stage, scenario: Scenario, frames: int = 1
    ) -> tuple[Any, ModuleType, str]:
        """The stage's pipeline (diffusers, untyped) with its LoRAs, scheduler and placement,
        the family module that generates with it, and the preset's variant."""
        preset = get_preset(preset_name)
        device = resolve_device(self._placement.device)
        dtype = resolve_dtype(self._placement.dtype, device)
        # real weights load in the render dtype (a 14B Wan in fp32 would need 57 GB of RAM)
        pipe = load_pipeline(preset, self._models_dir, dtype=dtype)
        pipe.set_progress_bar_config(disable=True)  # progress goes to the job, not stderr
        names: list[str] = []
        weights: list[float] = []
        applied: list[dict[str, Any]] = []
        for lora in (lo for lo in scenario.loras if lo.stage is stage):
            path = self._resolve(lora)
            check_compatible(lora.name, path, preset_name)
            # the family's denoiser attribute (unet for SD, transformer for Flux and Wan)
            attr = next(iter(preset.module.output_files(preset.variant, lora.name)))
            preset.module.load_lora_into_pipeline(pipe, {attr: path}, lora.name)
            names.append(lora.name)
            weights.append(lora.effective_weight)
            # render.json says which adapters ran at which weight, and whether that weight is
            # the type's default (scenario.DEFAULT_LORA_WEIGHTS) or the scenario's own
            applied.append(
                {
                    "name": lora.name,
                    "type": lora.type.value,
                    "weight": lora.effective_weight,
                    "weight_from": "type_default" if lora.weight is None else "scenario",
                }
            )
        if names:
            pipe.set_adapters(names, adapter_weights=weights)
        flow = preset.family in ("wan", "flux")
        if stage is Stage.VIDEO:
            set_scheduler(
                pipe, scenario.video_scheduler, flow=flow, shift=scenario.video_flow_shift
            )
        else:
            set_scheduler(pipe, scenario.image_scheduler, flow=flow)
        memory = scenario.memory
        offload = memory.offload if memory.offload != "auto" else self._placement.offload
        tiling = memory.vae_tiling if memory.vae_tiling != "auto" else self._placement.vae_tiling
        plan = plan_memory(
            pipe,
            preset.family,
            device,
            dtype,
            width=scenario.output.width,
            height=scenario.output.height,
            frames=frames,
            free_bytes=self._free_bytes,
            offload=offload,
            vae_tiling=tiling,
        )
        place(pipe, device, dtype, plan, preset.family)
        self.plans[stage.value] = plan
        on, dt = denoiser_device_dtype(pipe)
        self.placement[stage.value] = {
            "preset": preset_name,
            "device": str(device),
            "dtype": str(dtype).removeprefix("torch."),
            "weights_device": str(on),
            "weights_dtype": str(dt).removeprefix("torch."),
            "offload": plan.offload,
            "vae_tiling": plan.vae_tiling,
            "reason": plan.reason,
            "loras": applied,
        }
        self.pipelines[stage.value] = pipe
        return pipe, preset.module, preset.variant

    def _guidance(self, family: ModuleType, scenario: Scenario) -> dict[str, Any]:
        kw: dict[str, Any] = {
            "guidance": family.RENDER_GUIDANCE if scenario.cfg is None else scenario.cfg
        }
        if family.FAMILY == "flux" and scenario.distilled_guidance is not None:
            kw["distilled_guidance"] = scenario.distilled_guidance
        return kw

    def _given_image(self, key: str, w: int, h: int) -> Image.Image:
        if self._resolve_image is None:
            raise InvalidInput("this renderer was given no way to read input images")
        with Image.open(self._resolve_image(key)) as img:
            return fit_image(ImageOps.exif_transpose(img), w, h)

    def render(self, scenario: Scenario, out_dir: Path) -> RenderResult:
        out_dir.mkdir(parents=True, exist_ok=True)
        result = RenderResult(warnings=scenario.warnings())
        steps = self._steps or scenario.steps
        w, h = scenario.output.width, scenario.output.height
        pairs = scenario.pairs()
        total = len(scenario.shots) + len(pairs) + 1

        given = [
            self._given_image(shot.image, w, h) if shot.image else None for shot in scenario.shots
        ]
        images: list[Image.Image] = []  # the keyframes, given or generated
        # A scenario whose every keyframe is the user's own needs no image model at all.
        if any(img is None for img in given):
            pipe, family, variant = self.load_stage(scenario.image_preset, Stage.IMAGE, scenario)
            guidance = self._guidance(family, scenario)
        for i, shot in enumerate(scenario.shots, start=1):
            self._check()
            self._item(i - 1, total, steps, f"keyframe {i}/{len(scenario.shots)}")
            keyframe = given[i - 1]
            if keyframe is None:
                out = family.generate(
                    pipe,
                    shot.prompt,
                    shot.seed,
                    w,
                    h,
                    steps=steps,
                    variant=variant,
                    negative_prompt=shot.negative_prompt,
                    on_step=self._on_step,
                    **guidance,
                )
                keyframe = to_pil(out[0])
            images.append(keyframe)
            path = out_dir / f"keyframe_{i:02d}.png"
            keyframe.save(path)
            result.keyframes.append(path)
        if self.pipelines.pop(Stage.IMAGE.value, None) is not None:
            del pipe  # free the image model before the video model loads
            empty_cache()

        if pairs:
            frames_max = max(scenario.transition_for(p).frames for p in range(len(pairs)))
            vpipe, vfamily, vvariant = self.load_stage(
                scenario.video_preset, Stage.VIDEO, scenario, frames=frames_max
            )
            vguidance = self._guidance(vfamily, scenario)
            for p, (a, b) in enumerate(pairs, start=1):
                self._check()
                self._item(
                    len(scenario.shots) + p - 1, total, steps, f"transition {p}/{len(pairs)}"
                )
                tr = scenario.transition_for(p - 1)
                prompt = tr.prompt or scenario.shots[b].prompt
                last = images[b] if vvariant == "flf2v" else None
                frames = vfamily.generate(
                    vpipe,
                    prompt,
                    scenario.shots[a].seed,
                    w,
                    h,
                    tr.frames,
                    steps=steps,
                    variant=vvariant,
                    image=images[a],
                    last_image=images[b],
                    guidance=vguidance["guidance"],
                    negative_prompt=scenario.shots[b].negative_prompt,
                    on_step=self._on_step,
                    pin_first_frame=vvariant in ("i2v", "flf2v"),
                )
                video = frames[0]
                if vvariant in ("i2v", "flf2v"):
                    # The model is conditioned on the keyframes and reproduces them through
                    # the VAE with a small colour shift; the film cuts from one video to the
                    # next on these frames, so they are the keyframes exactly.
                    video = pin_frames(video, images[a], last)
                path = write_video(video, out_dir / f"transition_{p:02d}.mp4", tr.fps)
                result.transitions.append(path)
            self.pipelines.pop(Stage.VIDEO.value, None)
            del vpipe
            empty_cache()
            self._check()
            self._progress((total - 1) / total, "joining the film")
            result.film = join(
                result.transitions,
                out_dir / f"{scenario.name}.mp4",
                fps=scenario.transition_for(0).fps,
                mode=scenario.join.value,
                crossfade_s=scenario.crossfade_s,
            )
            result.thumbnails = thumbnail_strip(result.film, out_dir / f"{scenario.name}_strip.png")
        result.placement = dict(self.placement)
        self._progress(1.0, "done")
        return result


def empty_cache() -> None:
    """Free what a released pipeline held (host memory, and the card's cached blocks)."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
