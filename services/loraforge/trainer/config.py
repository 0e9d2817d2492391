"""The run configuration of one training run, its validation, and family defaults.

A run config is a JSON/YAML mapping (``loraforge-train --run-config FILE``) or built in code.

One source of truth for training defaults: a field left unset (``None``) takes the family
default of the preset (:data:`loraforge.trainer.wan.DEFAULTS` etc.), whichever way the run
was started (the trainer service through gRPC, the gateway's API, ``loraforge train``,
``loraforge sweep``, ``loraforge-train``): every path hands unset fields down as unset and
:func:`resolve` alone fills them in. ``loraforge presets --json`` shows each preset's
resolved defaults (:func:`effective_defaults`).

Alpha (stated once, here): the LoRA update is scaled by ``alpha / rank``. Unset, alpha keeps
the family's ratio at the rank in use (``rank x family alpha / family rank``), so choosing
only a rank changes the capacity, not the size of the update (SDXL: rank 64 -> alpha 32).

Length: ``steps`` (optimizer steps) or ``epochs`` (passes over the training samples), never
both; epochs become steps with the training set's size and the batch (seed 004:
``steps = epochs x ceil(N / batch_size)``; here the micro-batches of one epoch, which also
respects buckets, divided by ``grad_accum``), see :func:`steps_per_epoch`.

Validation (seed 004): an explicit validation set (``validation_dataset``), or
``min(floor(N x (1 - validation_split)), max_validation_samples)`` clips split off the
dataset, at least one when the dataset has two or more clips and ``validation_split`` < 1
(one held-out clip is the least that lets checkpoints be compared on data they never saw).
Validation clips are never trained on (every window of a clip goes to the same side).
Every refusal is an :class:`~loraforge.runtime.errors.InvalidInput` saying what to change.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from loraforge.runtime.errors import InvalidInput
from loraforge.trainer.dataset import check_frames, parse_resolution
from loraforge.trainer.preset_table import PRESETS, Preset
from loraforge.trainer.presets import TINY_SEED, get_preset, weights_path


class RunConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    preset: str = Field(description="base model preset, e.g. wan2.1-t2v-14b or tiny-sdxl")
    dataset: Path = Field(description="local dataset folder (videos/ + captions/, or media + .txt)")
    output_dir: Path = Field(description="where checkpoints and the final LoRA are written")
    name: str = Field(
        default="lora", pattern=r"^[A-Za-z0-9._-]{1,100}$", description="file name stem of the LoRA"
    )
    trigger: str = Field(default="", description="trigger word (recorded in the metadata)")
    dataset_id: str = Field(default="", description="dataset id (recorded in the metadata)")
    family: str | None = Field(
        default=None,
        description=(
            "family the dataset/config was prepared for (wan, sdxl, sd1.5, flux); refused when it "
            "differs from the preset's"
        ),
    )
    rank: int | None = Field(default=None, ge=1, le=1024, description="LoRA rank")
    alpha: float | None = Field(default=None, gt=0, description="LoRA alpha (scale alpha/rank)")
    use_dora: bool = Field(
        default=False,
        description=(
            "train DoRA (weight-decomposed LoRA): a magnitude per output row on top of the LoRA "
            "pair; the file carries it as dora_scale (see trainer/dora.py)"
        ),
    )
    target_modules: list[str] | None = Field(default=None, description="module name suffixes")
    learning_rate: float | None = Field(default=None, gt=0, lt=1)
    lr_scheduler: Literal["constant", "cosine", "linear"] | None = None
    warmup_steps: int | None = Field(default=None, ge=0)
    steps: int | None = Field(
        default=None,
        ge=1,
        le=1_000_000,
        description=("optimizer steps (family default if neither steps nor epochs is set)"),
    )
    epochs: int | None = Field(
        default=None,
        ge=1,
        le=100_000,
        description=(
            "passes over the training samples instead of steps: steps = epochs x steps per epoch "
            "(seed 004: epochs x ceil(N / batch_size)); refused together with steps"
        ),
    )
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
    noise_offset: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description=(
            "SD families: add this times a per-channel constant to the training noise, so the "
            "model learns to change an image's overall brightness (kohya's noise offset; ~0.05)"
        ),
    )
    expert: Literal["both", "high", "low"] = Field(
        default="both", description="Wan 2.2 A14B: which expert(s) to train"
    )
    checkpoint_every: int | None = Field(
        default=None,
        ge=0,
        description=(
            "steps between checkpoints; 0: none; unset: about four per run (at most every 250)"
        ),
    )
    keep_checkpoints: int = Field(default=3, ge=1)
    resume: str | None = Field(default=None, description="'latest' or a checkpoint directory")
    eval_every: int | None = Field(
        default=None,
        ge=0,
        description=(
            "steps between validation-loss evaluations; 0: none; unset: at every checkpoint"
        ),
    )
    validation_split: float = Field(
        default=0.9,
        gt=0,
        le=1,
        description=(
            "fraction of the dataset's clips trained on (seed 004's split); the rest, at most "
            "max_validation_samples, is the validation set; 1.0: no validation set"
        ),
    )
    max_validation_samples: int = Field(
        default=5,
        ge=1,
        le=1000,
        description=(
            "most clips split off for validation (seed 004's max_split_val_dataset_sample; 5 is "
            "its documented example)"
        ),
    )
    validation_dataset: Path | None = Field(
        default=None,
        description=(
            "an explicit validation set (same layout as dataset); then nothing is split off"
        ),
    )
    validation_bands: int = Field(
        default=4,
        ge=1,
        le=20,
        description=(
            "timestep bands of the validation loss (fixed noise, one fixed timestep per band)"
        ),
    )
    cache_dir: Path | None = Field(default=None, description="latent / text-embedding cache")
    models_dir: Path | None = Field(default=None, description="overrides LORAFORGE_MODELS__DIR")
    device: str = Field(default="auto", description="auto, cpu, cuda, cuda:1")
    mixed_precision: Literal["bf16", "no"] = "bf16"
    gradient_checkpointing: bool | None = Field(
        default=None,
        description="recompute activations; default: on for real presets on CUDA "
        "(Wan 1.3B at 480x832x33 needs 46 GB without it, 5 GB with), off for tiny ones",
    )
    checkpoint_blocks: int | None = Field(
        default=None,
        ge=0,
        description="recompute only the last N transformer blocks (default: all when "
        "gradient_checkpointing); must cover block_swap",
    )
    selective_checkpointing: bool = Field(
        default=False,
        description=(
            "with gradient checkpointing: keep matmul and attention outputs and recompute only the "
            "elementwise work between them (PyTorch selective activation checkpointing)"
        ),
    )
    compile_blocks: bool = Field(
        default=False, description="torch.compile each transformer block (CUDA; first steps slower)"
    )
    attention: Literal["auto", "cudnn", "flash", "efficient", "math"] = Field(
        default="auto", description="SDPA kernel preference on CUDA (auto: cuDNN on Hopper)"
    )
    optimizer: Literal["adamw", "adamw8bit"] = "adamw8bit"
    weight_decay: float = Field(default=0.01, ge=0)
    max_grad_norm: float = Field(default=1.0, ge=0)
    fp8_base: bool = Field(default=False, description="store frozen base Linear weights in fp8")
    block_swap: int = Field(default=0, ge=0, description="transformer blocks kept on the CPU")
    offload_activations: bool = Field(
        default=False,
        description=(
            "keep the tensors saved for backward (with gradient checkpointing: each block's input) "
            "in pinned host memory (CUDA); with fp8_base + block_swap it should fit Wan 14B at "
            "480x832x81 in 24 GB (counted on the CPU, not yet measured: bench/README)"
        ),
    )

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


def checkpoint_interval(steps: int) -> int:
    """About four checkpoints per run, at most every 250 steps, at least every step."""
    return max(1, min(250, steps // 4))


#: seed 004: total steps >= 800 (below it the hosted service's LoRAs under-train)
MIN_REAL_STEPS = 800


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
    epochs: int | None = None  # as asked (then steps = epochs x steps_per_epoch)
    steps_per_epoch: int | None = None  # known once the dataset is scanned
    batch_size: int
    resolution: str
    frames: int
    objective: str
    timestep_sampling: str
    flow_shift: float
    checkpoint_every: int
    eval_every: int
    warnings: list[str]

    def training_args(self) -> dict[str, Any]:
        args = self.config.model_dump(mode="json")
        args.update(self.model_dump(mode="json", exclude={"config", "warnings"}))
        return args


def resolve(config: RunConfig, steps_per_epoch: int | None = None) -> tuple[Preset, Resolved]:
    """The concrete values of a run config. ``steps_per_epoch`` (optimizer steps in one pass
    over the training samples, :func:`steps_per_epoch`) is needed when the config gives
    ``epochs``; without it ``steps`` is the family default and ``epochs`` is reported as is."""
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
        msg = (
            f"resolution {resolution} is far below {preset.family}'s native "
            f"{native}x{native}: expect soft, off-style results (is this an SD1.5 config?)"
        )
        notes.append(msg)
        warnings.warn(msg, stacklevel=2)
    objective = config.objective or d.objective
    if preset.family in ("wan", "flux") and objective != "flow":
        raise InvalidInput(f"{preset.family} is a flow-matching model; objective must be 'flow'")
    if preset.family in ("sdxl", "sd1.5") and objective == "flow":
        raise InvalidInput(
            f"{preset.family} is a DDPM model; use objective epsilon or v_prediction"
        )
    if config.noise_offset and objective == "flow":
        # Flow matching interpolates to pure noise at t = 1, so the mean-brightness blind spot
        # of DDPM's schedule (the reason for the offset) does not arise; peers apply it to SD.
        raise InvalidInput(
            f"noise_offset applies to SD families (epsilon / v-prediction); "
            f"{preset.family} trains with flow matching: leave it at 0"
        )
    if (config.block_swap or config.checkpoint_blocks is not None) and preset.family in (
        "sdxl",
        "sd1.5",
    ):
        raise InvalidInput(
            f"block_swap and checkpoint_blocks act on transformer blocks (Wan, Flux); "
            f"{preset.family} is a UNet: use gradient_checkpointing alone"
        )
    if config.checkpoint_blocks is not None:
        if config.gradient_checkpointing is False and not config.block_swap:
            raise InvalidInput("checkpoint_blocks needs gradient_checkpointing (it is turned off)")
        if config.checkpoint_blocks < config.block_swap:
            raise InvalidInput(
                f"checkpoint_blocks {config.checkpoint_blocks} < block_swap {config.block_swap}: "
                "a swapped block must be recomputed; raise checkpoint_blocks"
            )
    if config.selective_checkpointing and config.gradient_checkpointing is False:
        raise InvalidInput(
            "selective_checkpointing is a kind of gradient checkpointing, which is "
            "turned off; turn it on or drop selective_checkpointing"
        )
    if config.use_dora and config.fp8_base:
        # peft's DoRA layer renormalises with the base weight it reads every step; the fp8
        # weight holds row-scaled values (the scale is kept beside it), so the norm is wrong.
        raise InvalidInput(
            "use_dora cannot be combined with fp8_base: DoRA normalises by the "
            "full-precision base weight; turn one of them off"
        )
    if preset.variant != "t2v-a14b" and config.expert != "both":
        raise InvalidInput("expert applies only to Wan 2.2 A14B presets (two experts)")
    if config.steps is not None and config.epochs is not None:
        raise InvalidInput(
            f"set steps or epochs, not both (steps={config.steps}, epochs={config.epochs}): "
            "steps counts optimizer steps, epochs passes over the training samples "
            "(steps = epochs x steps per epoch)"
        )
    # tiny presets are tests and demos: 20 steps unless asked
    steps = config.steps or (d.steps if not preset.tiny else 20)
    if config.epochs is not None and steps_per_epoch is not None:
        steps = config.epochs * steps_per_epoch
    if not preset.tiny and steps < MIN_REAL_STEPS:
        if config.epochs is not None and steps_per_epoch:
            need = -(-MIN_REAL_STEPS // steps_per_epoch)
            notes.append(
                f"{config.epochs} epochs x {steps_per_epoch} steps = {steps} steps is "
                f"below the {MIN_REAL_STEPS} the seeds recommend as a minimum: use at "
                f"least {need} epochs"
            )
        else:
            notes.append(
                f"{steps} steps is below the {MIN_REAL_STEPS} the seeds recommend as a minimum"
            )
    rank = config.rank or d.rank
    # unset: the family's alpha/rank ratio at the rank in use (module docstring)
    alpha = float(config.alpha) if config.alpha is not None else float(d.alpha) * rank / d.rank
    checkpoint_every = (
        config.checkpoint_every
        if config.checkpoint_every is not None
        else checkpoint_interval(steps)
    )
    if config.eval_every is not None:
        eval_every = config.eval_every
    else:  # a validation loss at every checkpoint (the checkpoint choice reads it)
        eval_every = checkpoint_every or checkpoint_interval(steps)
    return preset, Resolved(
        config=config,
        rank=rank,
        alpha=alpha,
        target_modules=list(config.target_modules or d.target_modules),
        learning_rate=config.learning_rate or d.learning_rate,
        lr_scheduler=config.lr_scheduler or d.lr_scheduler,
        warmup_steps=config.warmup_steps
        if config.warmup_steps is not None
        else min(d.warmup_steps, steps // 10),
        steps=steps,
        epochs=config.epochs,
        steps_per_epoch=steps_per_epoch,
        batch_size=config.batch_size or d.batch_size,
        resolution=resolution,
        frames=frames,
        objective=objective,
        timestep_sampling=config.timestep_sampling or d.timestep_sampling,
        flow_shift=config.flow_shift if config.flow_shift is not None else d.flow_shift,
        checkpoint_every=checkpoint_every,
        eval_every=eval_every,
        warnings=notes,
    )


def steps_per_epoch(micro_batches: int, grad_accum: int) -> int:
    """Optimizer steps in one pass over the training samples: its micro-batches (seed 004's
    ceil(N / batch_size) when every sample shares one bucket) over ``grad_accum``."""
    return max(1, -(-micro_batches // max(1, grad_accum)))


#: RunConfig fields that say where things are, not how to train (left out of comparisons
#: and of `loraforge presets --json`)
LOCATION_FIELDS = frozenset(
    {
        "dataset",
        "output_dir",
        "cache_dir",
        "models_dir",
        "device",
        "name",
        "trigger",
        "dataset_id",
        "resume",
        "validation_dataset",
    }
)


def effective_defaults(preset_name: str) -> dict[str, Any]:
    """What a run on ``preset_name`` gets when nothing is set: the resolved config of an
    empty run config (``loraforge presets --json``)."""
    _, resolved = resolve(RunConfig(preset=preset_name, dataset=Path("."), output_dir=Path(".")))
    args = resolved.training_args()
    return {k: v for k, v in sorted(args.items()) if k not in LOCATION_FIELDS and k != "preset"}


def list_presets(models_dir: Path | None = None) -> list[dict[str, Any]]:
    """One row per preset for ``loraforge presets``: name, family, where the weights come
    from, whether they are present, and ``defaults``: the resolved training config of a run
    that sets nothing (effective_defaults, the one source of defaults)."""
    rows = []
    for p in PRESETS.values():
        if p.tiny:
            source, present = f"built in code (random weights, seed {TINY_SEED})", True
        else:
            path = weights_path(p, models_dir)
            source = f"{path} (diffusers format; provision from {p.hub_reference})"
            present = (path / "model_index.json").is_file()
        rows.append(
            {
                "name": p.name,
                "family": p.family,
                "variant": p.variant,
                "tiny": p.tiny,
                "description": p.description,
                "weights": source,
                "provisioned": present,
                "stride": p.stride,
                "defaults": effective_defaults(p.name),
            }
        )
    return rows
