"""The run configuration of one training run, its validation, and family defaults.

A run config is a JSON/YAML mapping (``loraforge-train --run-config FILE``) or built in code.
Fields left unset (``None``) take the family default of the preset
(:data:`loraforge.trainer.wan.DEFAULTS` etc.); :func:`resolve` returns the concrete values.
Every refusal is an :class:`~loraforge.runtime.errors.InvalidInput` saying what to change.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, Literal

import yaml
from loraforge.runtime.errors import InvalidInput
from loraforge.trainer.dataset import check_frames, parse_resolution
from loraforge.trainer.presets import Preset, get_preset
from pydantic import BaseModel, ConfigDict, Field, ValidationError


class RunConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    preset: str = Field(description="base model preset, e.g. wan2.1-t2v-14b or tiny-sdxl")
    dataset: Path = Field(description="local dataset folder (videos/ + captions/, or media + .txt)")
    output_dir: Path = Field(description="where checkpoints and the final LoRA are written")
    name: str = Field(default="lora", pattern=r"^[A-Za-z0-9._-]{1,100}$",
                      description="file name stem of the LoRA")
    trigger: str = Field(default="", description="trigger word (recorded in the metadata)")
    dataset_id: str = Field(default="", description="dataset id (recorded in the metadata)")
    family: str | None = Field(default=None, description=(
        "family the dataset/config was prepared for (wan, sdxl, sd1.5, flux); refused when it "
        "differs from the preset's"))
    rank: int | None = Field(default=None, ge=1, le=1024, description="LoRA rank")
    alpha: float | None = Field(default=None, gt=0, description="LoRA alpha (scale alpha/rank)")
    use_dora: bool = Field(default=False, description=(
        "train DoRA (weight-decomposed LoRA): a magnitude per output row on top of the LoRA "
        "pair; the file carries it as dora_scale (see trainer/dora.py)"))
    target_modules: list[str] | None = Field(default=None, description="module name suffixes")
    learning_rate: float | None = Field(default=None, gt=0, lt=1)
    lr_scheduler: Literal["constant", "cosine", "linear"] | None = None
    warmup_steps: int | None = Field(default=None, ge=0)
    steps: int | None = Field(default=None, ge=1, le=1_000_000, description="optimizer steps")
    batch_size: int | None = Field(default=None, ge=1, le=64)
    grad_accum: int = Field(default=1, ge=1, le=256, description="gradient accumulation steps")
    resolution: str | int | None = Field(default=None, description="480p, 720p, 512, 1024, WxH")
    frames: int | None = Field(default=None, ge=1, le=1025, description="frames per sample (4k+1)")
    frame_sampling: Literal["head", "uniform", "slide"] = "uniform"
    slide_stride: int | None = Field(default=None, ge=1)
    target_fps: float | None = Field(default=None, gt=0)
    repeats: int = Field(default=1, ge=1, le=1000)
    bucketing: bool = True
    seed: int = 0
    objective: Literal["flow", "epsilon", "v_prediction"] | None = None
    timestep_sampling: Literal["uniform", "logit_normal"] | None = None
    flow_shift: float | None = Field(default=None, gt=0)
    logit_mean: float = 0.0
    logit_std: float = Field(default=1.0, gt=0)
    noise_offset: float = Field(default=0.0, ge=0, le=1, description=(
        "SD families: add this times a per-channel constant to the training noise, so the "
        "model learns to change an image's overall brightness (kohya's noise offset; ~0.05)"))
    expert: Literal["both", "high", "low"] = Field(
        default="both", description="Wan 2.2 A14B: which expert(s) to train")
    checkpoint_every: int = Field(default=0, ge=0, description="steps between checkpoints; 0: none")
    keep_checkpoints: int = Field(default=3, ge=1)
    resume: str | None = Field(default=None, description="'latest' or a checkpoint directory")
    eval_every: int = Field(default=0, ge=0, description="steps between held-out loss evaluations")
    cache_dir: Path | None = Field(default=None, description="latent / text-embedding cache")
    models_dir: Path | None = Field(default=None, description="overrides LORAFORGE_MODELS__DIR")
    device: str = Field(default="auto", description="auto, cpu, cuda, cuda:1")
    mixed_precision: Literal["bf16", "no"] = "bf16"
    gradient_checkpointing: bool | None = Field(
        default=None, description="recompute activations; default: on for real presets on CUDA "
        "(Wan 1.3B at 480x832x33 needs 46 GB without it, 5 GB with), off for tiny ones")
    checkpoint_blocks: int | None = Field(
        default=None, ge=0,
        description="recompute only the last N transformer blocks (default: all when "
                    "gradient_checkpointing); must cover block_swap")
    selective_checkpointing: bool = Field(default=False, description=(
        "with gradient checkpointing: keep matmul and attention outputs and recompute only the "
        "elementwise work between them (PyTorch selective activation checkpointing)"))
    compile_blocks: bool = Field(
        default=False, description="torch.compile each transformer block (CUDA; first steps slower)")
    attention: Literal["auto", "cudnn", "flash", "efficient", "math"] = Field(
        default="auto", description="SDPA kernel preference on CUDA (auto: cuDNN on Hopper)")
    optimizer: Literal["adamw", "adamw8bit"] = "adamw8bit"
    weight_decay: float = Field(default=0.01, ge=0)
    max_grad_norm: float = Field(default=1.0, ge=0)
    fp8_base: bool = Field(default=False, description="store frozen base Linear weights in fp8")
    block_swap: int = Field(default=0, ge=0, description="transformer blocks kept on the CPU")
    offload_activations: bool = Field(default=False, description=(
        "keep the tensors saved for backward (with gradient checkpointing: each block's input) "
        "in pinned host memory (CUDA); with fp8_base + block_swap it should fit Wan 14B at "
        "480x832x81 in 24 GB (counted on the CPU, not yet measured: bench/README)"))

    @classmethod
    def parse(cls, values: dict[str, Any]) -> RunConfig:
        try:
            return cls(**values)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'config'}: {e['msg']}"
                for e in exc.errors()
            )
            raise InvalidInput(f"invalid run config: {problems}") from None

    @classmethod
    def from_file(cls, path: Path | str, overrides: dict[str, Any] | None = None) -> RunConfig:
        p = Path(path)
        if not p.is_file():
            raise InvalidInput(f"run config {p} does not exist")
        text = p.read_text(encoding="utf-8")
        data = json.loads(text) if p.suffix == ".json" else yaml.safe_load(text)
        if not isinstance(data, dict):
            raise InvalidInput(f"run config {p} must be a mapping of settings")
        data.update({k: v for k, v in (overrides or {}).items() if v is not None})
        return cls.parse(data)


class Resolved(BaseModel):
    """A run config with every default filled in from the preset's family."""

    model_config = ConfigDict(frozen=True)

    config: RunConfig
    rank: int
    alpha: float
    target_modules: list[str]
    learning_rate: float
    lr_scheduler: str
    warmup_steps: int
    steps: int
    batch_size: int
    resolution: str
    frames: int
    objective: str
    timestep_sampling: str
    flow_shift: float
    warnings: list[str]

    def training_args(self) -> dict[str, Any]:
        args = self.config.model_dump(mode="json")
        args.update(self.model_dump(mode="json", exclude={"config", "warnings"}))
        return args


def resolve(config: RunConfig) -> tuple[Preset, Resolved]:
    preset = get_preset(config.preset)
    d = preset.defaults
    notes: list[str] = []
    if config.family is not None and config.family != preset.family:
        raise InvalidInput(
            f"the run config is for family {config.family!r} but preset {preset.name!r} is "
            f"{preset.family!r}: LoRAs and dataset settings do not carry across families "
            f"(an SD1.5 LoRA does not load into SDXL); pick a {config.family} preset or remove "
            "'family'"
        )
    resolution = str(config.resolution if config.resolution is not None else d.resolution)
    if preset.tiny and config.resolution is None:
        resolution = "64" if preset.family in ("sdxl", "sd1.5") else "32"
    frames = config.frames if config.frames is not None else d.frames
    if preset.tiny and config.frames is None and preset.family == "wan":
        frames = 5
    check_frames(frames, preset.family)
    w, h = parse_resolution(resolution, preset.stride, preset.family)
    native = getattr(preset.module, "NATIVE_RESOLUTION", None)
    if native and not preset.tiny and w * h < 0.5 * native * native:
        msg = (f"resolution {resolution} is far below {preset.family}'s native "
               f"{native}x{native}: expect soft, off-style results (is this an SD1.5 config?)")
        notes.append(msg)
        warnings.warn(msg, stacklevel=2)
    objective = config.objective or d.objective
    if preset.family in ("wan", "flux") and objective != "flow":
        raise InvalidInput(f"{preset.family} is a flow-matching model; objective must be 'flow'")
    if preset.family in ("sdxl", "sd1.5") and objective == "flow":
        raise InvalidInput(f"{preset.family} is a DDPM model; use objective epsilon or v_prediction")
    if config.noise_offset and objective == "flow":
        # Flow matching interpolates to pure noise at t = 1, so the mean-brightness blind spot
        # of DDPM's schedule (the reason for the offset) does not arise; peers apply it to SD.
        raise InvalidInput(f"noise_offset applies to SD families (epsilon / v-prediction); "
                           f"{preset.family} trains with flow matching: leave it at 0")
    if (config.block_swap or config.checkpoint_blocks is not None) and preset.family in (
            "sdxl", "sd1.5"):
        raise InvalidInput(
            f"block_swap and checkpoint_blocks act on transformer blocks (Wan, Flux); "
            f"{preset.family} is a UNet: use gradient_checkpointing alone")
    if config.checkpoint_blocks is not None:
        if config.gradient_checkpointing is False and not config.block_swap:
            raise InvalidInput("checkpoint_blocks needs gradient_checkpointing (it is turned off)")
        if config.checkpoint_blocks < config.block_swap:
            raise InvalidInput(
                f"checkpoint_blocks {config.checkpoint_blocks} < block_swap {config.block_swap}: "
                "a swapped block must be recomputed; raise checkpoint_blocks")
    if config.selective_checkpointing and config.gradient_checkpointing is False:
        raise InvalidInput("selective_checkpointing is a kind of gradient checkpointing, which is "
                           "turned off; turn it on or drop selective_checkpointing")
    if config.use_dora and config.fp8_base:
        # peft's DoRA layer renormalises with the base weight it reads every step; the fp8
        # weight holds row-scaled values (the scale is kept beside it), so the norm is wrong.
        raise InvalidInput("use_dora cannot be combined with fp8_base: DoRA normalises by the "
                           "full-precision base weight; turn one of them off")
    if preset.variant != "t2v-a14b" and config.expert != "both":
        raise InvalidInput("expert applies only to Wan 2.2 A14B presets (two experts)")
    steps = config.steps or (d.steps if not preset.tiny else 20)
    if not preset.tiny and steps < 800:
        notes.append(f"{steps} steps is below the 800 the seeds recommend as a minimum")
    rank = config.rank or d.rank
    return preset, Resolved(
        config=config,
        rank=rank,
        alpha=float(config.alpha if config.alpha is not None else (d.alpha if config.rank is None else rank)),
        target_modules=list(config.target_modules or d.target_modules),
        learning_rate=config.learning_rate or d.learning_rate,
        lr_scheduler=config.lr_scheduler or d.lr_scheduler,
        warmup_steps=config.warmup_steps if config.warmup_steps is not None else min(d.warmup_steps, steps // 10),
        steps=steps,
        batch_size=config.batch_size or d.batch_size,
        resolution=resolution,
        frames=frames,
        objective=objective,
        timestep_sampling=config.timestep_sampling or d.timestep_sampling,
        flow_shift=config.flow_shift if config.flow_shift is not None else d.flow_shift,
        warnings=notes,
    )
