"""The LoRA training loop: one code path for every family and for tiny and real weights.

Objectives
- ``flow`` (Wan, Flux): x_t = (1 - s) x0 + s noise, the model predicts noise - x0 at
  timestep s (Wan gets s * 1000, Flux s). s is drawn uniform or logit-normal
  (sigmoid(N(mean, std))), then shifted: s' = shift s / (1 + (shift - 1) s).
- ``epsilon`` / ``v_prediction`` (SDXL, SD1.5): DDPM forward process of the pipeline's own
  beta schedule, t uniform in [0, 1000); the target is the noise or the velocity.

Memory savers (documented in ``DEFAULTS.reasoning`` per family):
- ``gradient_checkpointing``: diffusers' own recomputation in the denoiser.
- ``fp8_base``: frozen base ``Linear`` weights stored as ``float8_e4m3fn`` with a scale per
  output row (1 byte/param: a 14B Wan holds ~14 GB), up-cast per matmul; the backward keeps
  only the fp8 weight. LoRA weights stay fp32. Works on CPU too (slowly); refused with DoRA.
- ``block_swap=N``: the frozen weights of the last N transformer blocks live in pinned host
  memory and are copied in (prefetched on a side stream) when the block runs, forward and
  recompute; needs gradient checkpointing, which it turns on. A no-op with a warning on CPU.
  See ``memory.py``.
- ``selective_checkpointing``: checkpointed blocks keep their matmul and attention outputs and
  recompute only the elementwise work (PyTorch's selective activation checkpointing).
- ``offload_activations``: the tensors autograd saves in the forward (under checkpointing,
  each block's input) are kept in pinned host memory and copied back for the backward.
  CUDA only (ignored on CPU).
- bf16 autocast on CUDA (``mixed_precision="bf16"``); fp32 on CPU.
- AdamW 8-bit (bitsandbytes) on CUDA when importable, else torch AdamW.

Validation: the clips of the validation set (config.py: an explicit set, or seed 004's split)
are encoded like the training samples but never batched for training. At each evaluation
(``eval_every``) every validation sample is denoised at fixed noise (seed
:data:`VAL_NOISE_SEED`) and one fixed timestep at the centre of each of ``validation_bands``
equal bands of the noise range; the mean is the validation loss, the per-band means say where
it moved (high noise: composition and motion; low noise: detail).

Checkpoints (``<output_dir>/checkpoints/step-NNNNNNNN/``) hold the LoRA tensors, optimizer,
LR scheduler and every RNG state (noise generator, torch, numpy, python); batches are a pure
function of (seed, epoch), so a resumed run replays exactly what the uninterrupted run
would have done. A cancel (``should_cancel`` returning True) stops after the current
optimizer step and writes a checkpoint.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from loraforge.runtime.errors import InvalidInput
from loraforge.trainer import cache as cache_mod
from loraforge.trainer import dora
from loraforge.trainer.config import RunConfig, resolve, steps_per_epoch
from loraforge.trainer.dataset import CaptionedDataset, DatasetConfig, validation_count
from loraforge.trainer.family import config_hash
from loraforge.trainer.kernels import attention_backend, compile_blocks
from loraforge.trainer.memory import (
    ActivationOffload,
    checkpoint_last_blocks,
    enable_block_swap,
    fp8_base_weights,
    selective_checkpoint,
)
from loraforge.trainer.preset_table import Preset
from loraforge.trainer.presets import (
    FAMILY_MODULES,
    TINY_SEED,
    get_preset,
    load_pipeline,
    weights_path,
)
from loraforge.trainer.wan import expert_range

ADAPTER = "default"
STATE_FILE = "training_state.pt"
LORA_FILE = "adapter.safetensors"
#: the validation loss's fixed noise (the same draws at every evaluation of a run)
VAL_NOISE_SEED = 1234


@dataclass
class TrainResult:
    status: str  # "succeeded" | "cancelled"
    step: int
    files: dict[str, Path] = field(default_factory=dict)
    checkpoints: list[Path] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    eval_losses: dict[int, float] = field(default_factory=dict)  # validation loss by step
    eval_bands: dict[int, dict[str, float]] = field(default_factory=dict)  # by timestep band
    seconds: float = 0.0


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class Trainer:
    """Train one LoRA. ``pipeline`` may be passed in (tests reuse a built tiny pipeline)."""

    def __init__(
        self,
        config: RunConfig,
        *,
        pipeline: Any = None,
        cache_store: cache_mod.CacheStore | None = None,
        on_progress: Callable[[int, int, float], None] | None = None,
        should_cancel: Callable[[int], bool] | None = None,
        log: Callable[[str], None] | None = None,
        on_eval: Callable[[int], None] | None = None,
    ):
        self.config = config
        # the dataset scanned and split, the config resolved with its size (epochs -> steps)
        self.preset, self.args, self.dataset, self.validation = plan(config)
        self.family = self.preset.module
        self.variant = self.preset.variant
        self.device = _device(config.device)
        self.on_progress = on_progress
        self.should_cancel = should_cancel
        self.log = log or (lambda msg: None)
        # called with the step after each held-out evaluation (previews are rendered there)
        self.on_eval = on_eval
        if not self.validation.samples:
            warning = (
                f"no validation set: the dataset has {len(self.dataset.media)} clip(s) and "
                f"validation_split={config.validation_split}; checkpoints cannot be compared "
                "on unseen data (add clips, lower validation_split or give validation_dataset)"
            )
            self.args = self.args.model_copy(update={"warnings": [*self.args.warnings, warning]})
        self.cache = cache_store or (
            cache_mod.LocalCacheStore(config.cache_dir)
            if config.cache_dir
            else cache_mod.MemoryCacheStore()
        )
        dtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32
        self.pipe = (
            pipeline
            if pipeline is not None
            else load_pipeline(self.preset, config.models_dir, dtype=dtype)
        )
        self.autocast = self.device.type == "cuda" and config.mixed_precision == "bf16"
        gc = config.gradient_checkpointing
        if gc is None:
            gc = (self.device.type == "cuda" and not self.preset.tiny) or (
                config.checkpoint_blocks is not None
            )
        self.gradient_checkpointing = bool(
            gc or config.block_swap or config.selective_checkpointing
        )
        self.model_id = cache_mod.model_fingerprint(
            self.preset.name,
            config_hash(*self.family.model_configs(self.pipe)),
            None if self.preset.tiny else weights_path(self.preset, config.models_dir),
            TINY_SEED if self.preset.tiny else None,
        )
        self.models: dict[str, torch.nn.Module] = {}
        self.params: dict[str, torch.nn.Parameter] = {}
        self.encoded: dict[int, dict[str, torch.Tensor]] = {}
        self.val_encoded: dict[int, dict[str, torch.Tensor]] = {}
        self.val_losses: dict[int, float] = {}  # validation loss by step, as measured
        self.texts: dict[str, dict[str, torch.Tensor]] = {}
        self._epoch_batches: dict[int, list[list[int]]] = {}
        self._prepared = False
        self._need_encoders: Callable[[], None] = lambda: None

    # ------------------------------------------------------------ setup

    def _selected_denoisers(self) -> dict[str, Any]:
        """Attribute -> the diffusers model trained (a torch module with diffusers' config and
        peft's adapter methods, which Module's typing does not know)."""
        all_models = self.family.denoisers(self.pipe)
        if self.variant == "t2v-a14b" and self.config.expert != "both":
            keep = "transformer" if self.config.expert == "high" else "transformer_2"
            return {keep: all_models[keep]}
        return all_models

    def prepare(self) -> None:
        if self._prepared:
            return
        self._encode_all()
        from peft import LoraConfig

        for comp in self.pipe.components.values():
            if isinstance(comp, torch.nn.Module):
                comp.requires_grad_(False)
        torch.manual_seed(self.config.seed)
        for name, model in self._selected_denoisers().items():
            # The adapter, fp8 and block swap are set up where the weights were loaded (the
            # CPU for real presets), so a 14B model never has to fit on the GPU whole.
            model.add_adapter(
                LoraConfig(
                    r=self.args.rank,
                    lora_alpha=self.args.alpha,
                    target_modules=self.args.target_modules,
                    init_lora_weights=True,
                    use_dora=self.config.use_dora,
                ),
                adapter_name=ADAPTER,
            )
            model.train()
            for pname, p in model.named_parameters():
                if p.requires_grad:
                    p.data = p.data.float()
                    self.params[f"{name}/{pname}"] = p
            if self.gradient_checkpointing:
                model.enable_gradient_checkpointing(
                    selective_checkpoint if self.config.selective_checkpointing else None
                )
                if self.config.checkpoint_blocks is not None:
                    checkpoint_last_blocks(model, self.config.checkpoint_blocks)
            if self.config.fp8_base:
                n = fp8_base_weights(model)
                self.log(f"{name}: {n} Linear weights stored in float8_e4m3fn")
            if self.config.compile_blocks and self.device.type == "cuda":
                compile_blocks(model)
            if self.config.offload_activations and self.device.type != "cuda":
                self.log(
                    f"offload_activations only saves memory on a GPU: ignored on {self.device.type}"
                )
            if self.config.block_swap:
                swapper = enable_block_swap(model, self.config.block_swap, self.device)
                if swapper is not None:
                    self.log(f"{name}: {len(swapper.blocks)} blocks swapped to host memory")
            else:
                model.to(self.device)
            self.models[name] = model
        if not self.params:
            raise InvalidInput(
                f"no module matched target_modules {self.args.target_modules} in {self.preset.name}"
            )
        self._prepared = True

    def _encode_all(self) -> None:
        """Latents and text embeddings for every sample, from the cache or computed once."""
        with self._encoders_on_device():
            self._encode_samples()

    @contextmanager
    def _encoders_on_device(self) -> Iterator[None]:
        """VAE and text encoders on the compute device while encoding, on the CPU after.

        Encoders load on the CPU with the pipeline and go to the GPU only for a cache miss;
        then they go back, so the denoiser has the whole card (a Wan T5 is 11 GB in bf16).
        """
        denoisers = set(self.family.denoisers(self.pipe))
        encoders = [
            m
            for name, m in self.pipe.components.items()
            if isinstance(m, torch.nn.Module) and name not in denoisers
        ]
        moved: list[tuple[torch.nn.Module, torch.device]] = []

        def to_device() -> None:
            if moved or self.device.type == "cpu":
                return
            for m in encoders:
                p = next(iter(m.parameters()), None)
                if p is not None and p.device != self.device:
                    moved.append((m, p.device))
                    m.to(self.device)

        self._need_encoders = to_device
        try:
            yield
        finally:
            self._need_encoders = lambda: None
            for m, home in moved:
                m.to(home)
            if moved and self.device.type == "cuda":
                torch.cuda.empty_cache()

    def _encode_samples(self) -> None:
        self.encoded = self._encode_media(self.dataset)
        self.val_encoded = self._encode_media(self.validation)
        enc_device = self.device
        for caption in sorted({s.caption for s in self.dataset.samples + self.validation.samples}):
            key = cache_mod.text_key(self.model_id, caption)
            got = self.cache.get("text", key)
            if got is None:
                self._need_encoders()
                got = {
                    k: v[0]
                    for k, v in self.family.encode_text(self.pipe, [caption], enc_device).items()
                }
                self.cache.put("text", key, got)
            self.texts[caption] = got

    def _encode_media(self, ds: CaptionedDataset) -> dict[int, dict[str, torch.Tensor]]:
        out = {}
        for i, s in enumerate(ds.samples):
            key = cache_mod.media_key(self.model_id, s.key, self.variant)
            got = self.cache.get("latents", key)
            if got is None:
                self._need_encoders()
                pixels = ds.load_pixels(i).unsqueeze(0)
                got = {
                    k: v[0]
                    for k, v in self.family.encode_media(
                        self.pipe, pixels, self.device, self.variant
                    ).items()
                }
                self.cache.put("latents", key, got)
            out[i] = got
        return out

    def _optimizer(self) -> torch.optim.Optimizer:
        params = list(self.params.values())
        if self.config.optimizer == "adamw8bit" and self.device.type == "cuda":
            try:
                import bitsandbytes as bnb

                return bnb.optim.AdamW8bit(
                    params, lr=self.args.learning_rate, weight_decay=self.config.weight_decay
                )
            except ImportError:
                self.log("bitsandbytes not importable: using torch AdamW")
        return torch.optim.AdamW(
            params, lr=self.args.learning_rate, weight_decay=self.config.weight_decay
        )

    def _scheduler(self, opt: torch.optim.Optimizer) -> Any:
        from diffusers.optimization import get_scheduler

        name = {"constant": "constant_with_warmup"}.get(
            self.args.lr_scheduler, self.args.lr_scheduler
        )
        return get_scheduler(
            name, opt, num_warmup_steps=self.args.warmup_steps, num_training_steps=self.args.steps
        )

    # ------------------------------------------------------------ batches and noise

    def batch_at(self, i: int) -> list[int]:
        """The i-th micro-batch of the run (pure function of seed and i)."""
        n = len(self._batches(0))
        epoch = i // n
        return self._batches(epoch)[i % n]

    def _batches(self, epoch: int) -> list[list[int]]:
        if epoch not in self._epoch_batches:
            self._epoch_batches = {
                epoch: self.dataset.batches(epoch, self.args.batch_size, self.config.seed)
            }
        return self._epoch_batches[epoch]

    def collate(self, indices: list[int]) -> dict[str, torch.Tensor]:
        """A training batch: indices into the training set (never the validation set)."""
        return self._collate(self.encoded, self.dataset, indices)

    def _collate(
        self, encoded: dict[int, dict[str, torch.Tensor]], ds: CaptionedDataset, indices: list[int]
    ) -> dict[str, torch.Tensor]:
        batch: dict[str, list[torch.Tensor]] = {}
        for i in indices:
            for k, v in {**encoded[i], **self.texts[ds.samples[i].caption]}.items():
                batch.setdefault(k, []).append(v)
        return {k: torch.stack(v).to(self.device) for k, v in batch.items()}

    def sample_timesteps(
        self, n: int, gen: torch.Generator, lo: float = 0.0, hi: float = 1.0
    ) -> torch.Tensor:
        a = self.args
        if a.objective == "flow":
            if a.timestep_sampling == "logit_normal":
                s = torch.sigmoid(
                    torch.randn(n, generator=gen) * self.config.logit_std + self.config.logit_mean
                )
            else:
                s = torch.rand(n, generator=gen)
            shift = a.flow_shift
            s = shift * s / (1 + (shift - 1) * s)
            return (lo + (hi - lo) * s).clamp(1e-4, 1.0)
        return torch.randint(0, self._ddpm().config.num_train_timesteps, (n,), generator=gen)

    def _ddpm(self) -> Any:
        if not hasattr(self, "_ddpm_sched"):
            from diffusers import DDPMScheduler

            cfg = dict(self.pipe.scheduler.config)
            self._ddpm_sched = DDPMScheduler(
                num_train_timesteps=cfg.get("num_train_timesteps", 1000),
                beta_start=cfg.get("beta_start", 0.00085),
                beta_end=cfg.get("beta_end", 0.012),
                beta_schedule=cfg.get("beta_schedule", "scaled_linear"),
                prediction_type=self.args.objective,
            )
        return self._ddpm_sched

    def loss_on(
        self, name: str, batch: dict[str, torch.Tensor], noise: torch.Tensor, t: torch.Tensor
    ) -> torch.Tensor:
        x0 = batch["latents"].float()
        model = self.models.get(name) or self.family.denoisers(self.pipe)[name]
        t = t.to(self.device)
        noise = noise.to(self.device)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.autocast):
            if self.args.objective == "flow":
                s = t.view(-1, *([1] * (x0.dim() - 1)))
                noisy = (1 - s) * x0 + s * noise
                pred = self.family.predict(self.pipe, model, noisy, t, batch, self.variant)
                target = noise - x0
            else:
                sched = self._ddpm()
                noisy = sched.add_noise(x0, noise, t)
                pred = self.family.predict(self.pipe, model, noisy, t, batch, self.variant)
                target = (
                    noise if self.args.objective == "epsilon" else sched.get_velocity(x0, noise, t)
                )
        return F.mse_loss(pred.float(), target.float())

    def training_noise(self, shape: torch.Size, gen: torch.Generator) -> torch.Tensor:
        """Gaussian noise; with ``noise_offset`` plus a constant per sample and channel (drawn
        after the noise, from the same generator, so a resumed run draws the same)."""
        noise = torch.randn(shape, generator=gen)
        if self.config.noise_offset:
            offset = torch.randn((*shape[:2], *[1] * (len(shape) - 2)), generator=gen)
            noise = noise + self.config.noise_offset * offset
        return noise

    def _after_eval(self, step: int) -> None:
        """Run ``on_eval`` (preview renders) without touching the training's random streams,
        so a run with previews trains exactly like one without, resumed or not."""
        if self.on_eval is None:
            return
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            np_state, py_state = np.random.get_state(), random.getstate()
            try:
                self.on_eval(step)
            finally:
                np.random.set_state(np_state)
                random.setstate(py_state)
                for model in self.models.values():
                    model.train()

    def _offload(self, name: str) -> Any:
        """The forward pass's saved tensors go to host memory (``offload_activations``, CUDA)."""
        if not self.config.offload_activations or self.device.type != "cuda":
            return contextlib.nullcontext()
        return ActivationOffload(self.models[name], self.device)

    def _route(self, gen: torch.Generator, n: int) -> tuple[str, torch.Tensor]:
        """Which denoiser this micro-batch trains, and its timesteps."""
        names = list(self.models)
        if self.variant == "t2v-a14b":
            name = (
                names[int(torch.randint(0, len(names), (1,), generator=gen))]
                if len(names) > 1
                else names[0]
            )
            lo, hi = expert_range(self.variant, name)
            return name, self.sample_timesteps(n, gen, lo, hi)
        return names[0], self.sample_timesteps(n, gen)

    def validation_timesteps(self) -> list[float]:
        """The centre of each timestep band, as a fraction of the noise range."""
        n = self.config.validation_bands
        return [(k + 0.5) / n for k in range(n)]

    @torch.no_grad()
    def evaluate(self, seed: int = VAL_NOISE_SEED) -> tuple[float, dict[str, float]] | None:
        """Validation loss: every validation sample at fixed noise and one fixed timestep per
        band (module docstring); (mean, mean per band) or None without a validation set."""
        self.prepare()
        if not self.validation.samples:
            return None
        gen = torch.Generator("cpu").manual_seed(seed)
        fracs = self.validation_timesteps()
        per_band: list[list[float]] = [[] for _ in fracs]
        for m in self.models.values():
            m.eval()
        try:
            for name in self.models:
                lo, hi = (0.0, 1.0)
                if self.variant == "t2v-a14b":
                    lo, hi = expert_range(self.variant, name)
                for i in range(len(self.validation.samples)):
                    batch = self._collate(self.val_encoded, self.validation, [i])
                    for k, frac in enumerate(fracs):
                        noise = self.training_noise(batch["latents"].shape, gen)
                        if self.args.objective == "flow":
                            t = torch.tensor([lo + (hi - lo) * frac])
                        else:
                            t = torch.tensor([int(frac * self._ddpm().config.num_train_timesteps)])
                        per_band[k].append(float(self.loss_on(name, batch, noise, t)))
        finally:
            for m in self.models.values():
                m.train()
        bands = {self.band_label(k): sum(v) / len(v) for k, v in enumerate(per_band)}
        return sum(bands.values()) / len(bands), bands

    def validation_summary(self) -> dict[str, Any]:
        """What the validation loss is measured on, for the run record."""
        root = Path(self.config.validation_dataset or self.config.dataset)
        return {
            "source": "validation_dataset"
            if self.config.validation_dataset
            else ("split" if self.validation.samples else "none"),
            "clips": [str(m.relative_to(root)) for m in self.validation.media],
            "samples": len(self.validation.samples),
            "training_clips": len(self.dataset.media),
            "split": self.config.validation_split,
            "max_validation_samples": self.config.max_validation_samples,
            "noise_seed": VAL_NOISE_SEED,
            "bands": [self.band_label(k) for k in range(self.config.validation_bands)],
        }

    def band_label(self, k: int) -> str:
        """``t=0.12`` (flow: the noise fraction) or ``t=125`` (DDPM timestep) of band k."""
        frac = self.validation_timesteps()[k]
        if self.args.objective == "flow":
            return f"t={frac:.3f}"
        return f"t={int(frac * self._ddpm().config.num_train_timesteps)}"

    def _validate(self, result: TrainResult, step: int) -> None:
        got = self.evaluate()
        if got is not None:
            result.eval_losses[step], result.eval_bands[step] = got
            self.val_losses[step] = got[0]  # read by on_eval and the service's progress

    # ------------------------------------------------------------ the loop

    def run(self) -> TrainResult:
        start_time = time.monotonic()
        self.prepare()
        opt = self._optimizer()
        sched = self._scheduler(opt)
        gen = torch.Generator("cpu").manual_seed(self.config.seed)
        step = 0
        ckpt_root = Path(self.config.output_dir) / "checkpoints"
        if self.config.resume:
            ckpt = (
                latest_checkpoint(ckpt_root)
                if self.config.resume == "latest"
                else Path(self.config.resume)
            )
            if ckpt is not None:
                step = self._load_checkpoint(ckpt, opt, sched, gen)
                self.log(f"resumed from {ckpt} at step {step}")
            elif self.config.resume != "latest":
                raise InvalidInput(f"checkpoint {self.config.resume} does not exist")
        result = TrainResult(status="succeeded", step=step)
        eval_every, ckpt_every = self.args.eval_every, self.args.checkpoint_every
        if eval_every and step == 0:
            self._validate(result, 0)
        accum = self.config.grad_accum
        while step < self.args.steps:
            opt.zero_grad(set_to_none=True)
            step_loss = 0.0
            for j in range(accum):
                batch = self.collate(self.batch_at(step * accum + j))
                name, t = self._route(gen, batch["latents"].shape[0])
                noise = torch.randn(batch["latents"].shape, generator=gen)
                with attention_backend(self.config.attention, self.device, self.preset.family):
                    with self._offload(name):
                        loss = self.loss_on(name, batch, noise, t) / accum
                    loss.backward()
                step_loss += float(loss.detach())
            if self.config.max_grad_norm:
                torch.nn.utils.clip_grad_norm_(
                    list(self.params.values()), self.config.max_grad_norm
                )
            opt.step()
            sched.step()
            step += 1
            result.losses.append(step_loss)
            if self.on_progress:
                self.on_progress(step, self.args.steps, step_loss)
            if eval_every and step % eval_every == 0:
                self._validate(result, step)
                self._after_eval(step)
            cancelled = bool(self.should_cancel and self.should_cancel(step))
            # the periodic checkpoint (the final step's is the exported LoRA itself), and
            # the step a cancel stopped at, for the resume
            periodic = bool(ckpt_every) and step % ckpt_every == 0 and step < self.args.steps
            if periodic or cancelled:
                result.checkpoints.append(self._save_checkpoint(ckpt_root, step, opt, sched, gen))
            if cancelled:
                result.status = "cancelled"
                break
        result.step = step
        if result.status == "succeeded":
            if eval_every and step % eval_every:  # the final step is always evaluated
                self._validate(result, step)
                self._after_eval(step)
            result.files = self.export()
        result.seconds = time.monotonic() - start_time
        return result

    # ------------------------------------------------------------ checkpoints

    def lora_state(self) -> dict[str, torch.Tensor]:
        return {k: p.detach().cpu().clone() for k, p in self.params.items()}

    def _save_checkpoint(
        self, root: Path, step: int, opt: Any, sched: Any, gen: torch.Generator
    ) -> Path:
        root.mkdir(parents=True, exist_ok=True)
        final = root / f"step-{step:08d}"
        tmp = root / f".tmp-step-{step:08d}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        # the same step as a LoRA in the family's file layout (what `export` writes), so any
        # checkpoint can be promoted to the library and loaded like best/last without the
        # base model (library/store.py reads `<name>[.<expert>].safetensors` beside it);
        # written first so the resume file below always wins a name clash
        self.export(tmp, extra_metadata={"loraforge.checkpoint_step": str(step)})
        save_file(
            self.lora_state(),
            str(tmp / LORA_FILE),
            metadata={"step": str(step), "preset": self.preset.name},
        )
        torch.save(
            {
                "step": step,
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
                "noise_rng": gen.get_state(),
                "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
                "numpy_rng": np.random.get_state(),
                "python_rng": random.getstate(),
                "config": self.config.model_dump(mode="json"),
            },
            tmp / STATE_FILE,
        )
        (tmp / "run_config.json").write_text(json.dumps(self.args.training_args(), indent=2))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        kept = sorted(p for p in root.glob("step-*") if p.is_dir())
        for old in kept[: -self.config.keep_checkpoints]:
            shutil.rmtree(old, ignore_errors=True)
        self.log(f"checkpoint {final}")
        return final

    def _load_checkpoint(self, path: Path, opt: Any, sched: Any, gen: torch.Generator) -> int:
        if not (path / STATE_FILE).is_file():
            raise InvalidInput(f"{path} is not a loraforge checkpoint (no {STATE_FILE})")
        tensors = load_file(str(path / LORA_FILE))
        missing = set(self.params) - set(tensors)
        if missing:
            raise InvalidInput(
                f"checkpoint {path} does not match this run (missing {sorted(missing)[:3]}); "
                "resume with the same preset, rank and target modules"
            )
        with torch.no_grad():
            for k, p in self.params.items():
                p.copy_(tensors[k].to(p.device, p.dtype))
        state = torch.load(path / STATE_FILE, map_location="cpu", weights_only=False)
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        gen.set_state(state["noise_rng"])
        torch.set_rng_state(state["torch_rng"])
        if state.get("cuda_rng") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        np.random.set_state(state["numpy_rng"])
        random.setstate(state["python_rng"])
        return int(state["step"])

    # ------------------------------------------------------------ output

    def metadata(self) -> dict[str, str]:
        a = self.args
        return {
            "format": "pt",
            "loraforge.version": "1",
            "loraforge.trigger": self.config.trigger,
            "loraforge.base_preset": self.preset.name,
            "loraforge.family": self.preset.family,
            "loraforge.rank": str(a.rank),
            "loraforge.alpha": str(a.alpha),
            "loraforge.steps": str(a.steps),
            "loraforge.dataset_id": self.config.dataset_id,
            "loraforge.dataset_hash": self.dataset.content_hash,
            "loraforge.training_args": json.dumps(a.training_args(), sort_keys=True),
            **({"loraforge.dora_convention": dora.DORA_CONVENTION} if self.config.use_dora else {}),
            # kohya-style keys that UIs (ComfyUI-Manager, A1111) display
            "ss_network_dim": str(a.rank),
            "ss_network_alpha": str(a.alpha),
            "ss_base_model_version": self.preset.name,
        }

    def export(
        self, output_dir: Path | None = None, extra_metadata: dict[str, str] | None = None
    ) -> dict[str, Path]:
        """Write the LoRA file(s) in the family's ComfyUI layout, atomically (the current
        LoRA parameters; ``extra_metadata`` is added to the file header)."""
        from peft.utils import get_peft_model_state_dict

        out_dir = Path(output_dir or self.config.output_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        names = self.family.output_files(self.variant, self.config.name)
        files: dict[str, Path] = {}
        for attr, model in self.models.items():
            peft_sd = {
                k: v.detach().float().cpu()
                for k, v in get_peft_model_state_dict(model, adapter_name=ADAPTER).items()
            }
            if self.config.use_dora:
                peft_sd = dora.comfy_magnitudes(model, peft_sd, self.args.alpha / self.args.rank)
            sd = self.family.to_comfy(peft_sd, self.args.alpha)
            meta = {**self.metadata(), **(extra_metadata or {})}
            if self.variant == "t2v-a14b":
                meta["loraforge.expert"] = "high_noise" if attr == "transformer" else "low_noise"
            path = out_dir / names[attr]
            tmp = path.with_suffix(".safetensors.tmp")
            save_file(sd, str(tmp), metadata=meta)
            os.replace(tmp, path)
            files[attr] = path
        return files


def plan(config: RunConfig) -> tuple[Preset, Any, CaptionedDataset, CaptionedDataset]:
    """(preset, resolved config, training set, validation set) of a run config: the dataset
    scanned and split, then resolved again with its size (epochs -> steps)."""
    _, first = resolve(config)
    train, val = plan_datasets(config, first)
    per_epoch = steps_per_epoch(
        len(train.batches(0, first.batch_size, config.seed)), config.grad_accum
    )
    preset, resolved = resolve(config, per_epoch)
    return preset, resolved, train, val


def plan_datasets(config: RunConfig, args: Any) -> tuple[CaptionedDataset, CaptionedDataset]:
    """(training set, validation set) of a run config (config.py's validation rule)."""
    preset = get_preset(config.preset)

    def scan(path: Path) -> CaptionedDataset:
        return CaptionedDataset.scan(
            DatasetConfig(
                path=path,
                resolution=args.resolution,
                frames=args.frames,
                frame_sampling=config.frame_sampling,
                slide_stride=config.slide_stride,
                target_fps=config.target_fps,
                repeats=config.repeats,
                bucketing=config.bucketing,
            ),
            preset.family,
            preset.stride,
        )

    full = scan(config.dataset)
    if config.validation_dataset is not None:
        val = scan(config.validation_dataset)
        overlap = {s.content_hash for s in full.samples} & {s.content_hash for s in val.samples}
        if overlap:
            raise InvalidInput(
                f"validation_dataset {config.validation_dataset} holds {len(overlap)} file(s) "
                f"that are also in the training dataset {config.dataset}: a validation set must "
                "be data the LoRA never trains on; remove them from one of the two"
            )
        # validation samples are only denoised, never repeated
        return full, CaptionedDataset(val.config, val.family, val.stride, val.samples)
    n_val = validation_count(
        len(full.media), config.validation_split, config.max_validation_samples
    )
    return full.split_validation(n_val, config.seed)


def latest_checkpoint(root: Path) -> Path | None:
    found = sorted(p for p in Path(root).glob("step-*") if (p / STATE_FILE).is_file())
    return found[-1] if found else None


def train(config: RunConfig | dict[str, Any], **kwargs: Any) -> TrainResult:
    cfg = config if isinstance(config, RunConfig) else RunConfig.parse(config)
    return Trainer(cfg, **kwargs).run()


def describe_defaults() -> dict[str, dict[str, Any]]:
    return {fam: mod.DEFAULTS.as_dict() for fam, mod in FAMILY_MODULES.items()}


def preset_for(config: RunConfig) -> Preset:
    return resolve(config)[0]
