"""Where a render pipeline runs: device, dtype and the memory savers, chosen from the card.

Render, the benchmark (bench/render_step.py) and anything else that runs a family's
``generate`` on a real model go through :func:`plan_memory` then :func:`place`; ``generate``
itself never moves models.

- device ``auto``: CUDA when present, else the CPU. dtype ``auto``: bf16 on CUDA (what Wan,
  Flux and SDXL are released and run in), fp32 on the CPU (bf16 matmuls are slow and lossy
  there). The VAE keeps the dtype its family's loader gave it (``load_pretrained`` puts the
  Wan and SDXL VAEs in fp32, as their reference code runs them).
- offload, from the free memory of the card and the size of the models
  (:func:`plan_memory`):
    ``none``  every model resident on the card (fastest);
    ``model`` diffusers' ``enable_model_cpu_offload``: one whole model at a time on the card
              (text encoder, then the denoiser, then the VAE), the others in host memory;
    ``group`` diffusers' group offloading, block level, one block per group, prefetched on a
              side CUDA stream (``use_stream``) so the copy of block i+1 overlaps the compute of
              block i: only a couple of blocks live on the card. What makes Wan 14B (28.6 GB
              of bf16 weights) run on a 24 GB card.
- VAE tiling when the decode would not fit beside what stays resident at decode time. VAE
  slicing (one batch item at a time) is not used: renders decode one video/image at a time.

Estimates, not measurements (bench/render_step.py measures; bench/README.md has the figures):
activations and the VAE decode are estimated from the shapes, see the two ``estimate_``
functions. The budget keeps :data:`RESERVE_FRACTION` of the free memory (at least
:data:`RESERVE_MIN_BYTES`) for the CUDA context's growth, cuBLAS workspaces and allocator
fragmentation.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch

from loraforge.runtime.errors import InvalidInput

log = logging.getLogger(__name__)

GiB = 1024**3
OFFLOAD_MODES = ("auto", "none", "model", "group")
TILING_MODES = ("auto", "on", "off")
DTYPES: dict[str, torch.dtype] = {
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
    "fp16": torch.float16,
    "float16": torch.float16,
    "fp32": torch.float32,
    "float32": torch.float32,
}
# Kept free of the planned models: a 24 GB card (23.3-24 GiB free after the CUDA context)
# keeps about 1.2 GiB, which covers cuBLAS workspaces and allocator fragmentation seen in
# practice with PyTorch's caching allocator.
RESERVE_FRACTION = 0.05
RESERVE_MIN_BYTES = 1 * GiB
# VAE decode peak per output pixel = channels x frames of the widest full-resolution feature
# map x bytes x LIVE: the Wan VAE decodes causally, one latent frame (4 frames) at a time,
# with 96 channels at full resolution; SD/SDXL/Flux VAEs 128 channels, 1 frame. LIVE = 21 is
# measured: the real-size Wan 2.1 VAE in fp32 decoding 480x832x81 peaks at 12.0 GiB on an
# H200 (bench/render_step.py; 832*480*96*4*4 B = 0.61 GB per feature map). The SD-family
# figure uses the same multiplier (not measured).
_DECODE_LIVE_TENSORS = 21
_DECODE_WIDTH = {"wan": (96, 4), "sdxl": (128, 1), "sd1.5": (128, 1), "flux": (128, 1)}
_TEXT_MODULES = ("text_encoder", "text_encoder_2", "image_encoder")


class PlacementError(InvalidInput):
    """A device/dtype/offload setting that cannot work; the message says what to change (the
    job fails at once: a retry on the same worker would fail the same way)."""


def resolve_device(name: str = "auto") -> torch.device:
    name = (name or "auto").strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise PlacementError(
            f"device {name!r} is not a torch device; use auto, cpu, cuda or cuda:N"
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise PlacementError(
            f"device {name!r} asked for but no CUDA device is visible; use auto or cpu"
        )
    return device


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    name = (name or "auto").strip().lower()
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if name not in DTYPES:
        raise PlacementError(f"dtype {name!r}: use auto, bf16, fp16 or fp32")
    return DTYPES[name]


def _modules(pipe: Any) -> dict[str, torch.nn.Module]:
    return {k: v for k, v in pipe.components.items() if isinstance(v, torch.nn.Module)}


def keeps_vae_dtype(family: str) -> bool:
    return family == "wan"


def component_bytes(pipe: Any, dtype: torch.dtype, family: str = "") -> dict[str, int]:
    """Bytes each model takes once placed: every model in ``dtype`` except a Wan VAE, which
    keeps its own (works on meta-device models: only shapes are read)."""
    out = {}
    keep = keeps_vae_dtype(family)
    for name, module in _modules(pipe).items():
        total = 0
        for p in module.parameters():
            size = (
                p.element_size()
                if keep and name == "vae"
                else torch.tensor([], dtype=dtype).element_size()
            )
            total += p.numel() * size
        for b in module.buffers():
            total += b.numel() * b.element_size()
        out[name] = total
    return out


def estimate_activation_bytes(
    pipe: Any, family: str, width: int, height: int, frames: int, dtype: torch.dtype
) -> int:
    """Peak activations of one denoiser forward at inference (no autograd).

    Wan: tokens = latent frames x (H/16) x (W/16); the widest live set in a block is the
    attention input/output (q, k, v, out: 4 x hidden) plus the FFN's hidden layer (ffn_dim,
    with its GELU copy: 2 x ffn_dim); diffusers runs Wan's CFG as two separate forwards, so
    guidance does not double it. Checked on an H200 (bench/render_step.py): 1.3B at
    480x832x81 peaks at 4.7 GiB over 3.2 GiB of weights, as estimated (1.5 GiB).
    Image families (UNet/MMDiT at <= 1024 px): 1 KiB per output pixel per batch item, times 2
    for CFG's batch (2 GiB for SDXL at 1024x1024): a rough allowance, not measured; it is
    small beside the weights (SDXL 6.9 GB, Flux 24 GB in bf16), which decide the plan."""
    size = torch.tensor([], dtype=dtype).element_size()
    if family == "wan":
        cfg = pipe.transformer.config
        hidden = cfg.num_attention_heads * cfg.attention_head_dim
        tokens = ((frames - 1) // 4 + 1) * (height // 16) * (width // 16)
        return int(tokens * (4 * hidden + 2 * cfg.ffn_dim) * size)
    return int(width * height * 1024 * 2)


def estimate_decode_bytes(
    family: str, width: int, height: int, dtype: torch.dtype = torch.float32
) -> int:
    """Peak of one VAE decode (see _DECODE_LIVE_TENSORS); the Wan VAE always runs in fp32."""
    channels, frames = _DECODE_WIDTH.get(family, (128, 1))
    size = 4 if keeps_vae_dtype(family) else torch.tensor([], dtype=dtype).element_size()
    return int(width * height * channels * frames * size * _DECODE_LIVE_TENSORS)


def free_memory(device: torch.device) -> int | None:
    """Free bytes on a CUDA device (None on the CPU: host memory is not planned)."""
    if device.type != "cuda":
        return None
    free, _total = torch.cuda.mem_get_info(device)
    return int(free)


@dataclass(frozen=True)
class MemoryPlan:
    offload: str  # none | model | group
    vae_tiling: bool
    reason: str
    weights_bytes: int = 0
    largest_bytes: int = 0
    activation_bytes: int = 0
    decode_bytes: int = 0
    budget_bytes: int | None = None

    def describe(self) -> str:
        tiling = "VAE tiling" if self.vae_tiling else "no VAE tiling"
        return f"offload {self.offload}, {tiling}: {self.reason}"


def plan_memory(
    pipe: Any,
    family: str,
    device: torch.device,
    dtype: torch.dtype,
    *,
    width: int,
    height: int,
    frames: int = 1,
    free_bytes: int | None = None,
    offload: str = "auto",
    vae_tiling: str = "auto",
    sizes: dict[str, int] | None = None,
) -> MemoryPlan:
    """Choose offload and VAE tiling for rendering ``width x height x frames`` on ``device``.

    ``free_bytes`` defaults to what the card reports now (pass a number to plan for another
    card, as the benchmark does for a 24 GB one). ``offload``/``vae_tiling`` other than
    ``auto`` are kept as given (a user's override), with the estimate still reported.
    ``sizes`` (bytes per component) replaces what the pipeline's models weigh: the benchmark
    plans with the real encoders' sizes while it holds small stand-ins."""
    if offload not in OFFLOAD_MODES:
        raise PlacementError(f"offload {offload!r}: use one of {', '.join(OFFLOAD_MODES)}")
    if vae_tiling not in TILING_MODES:
        raise PlacementError(f"vae_tiling {vae_tiling!r}: use one of {', '.join(TILING_MODES)}")
    sizes = sizes if sizes is not None else component_bytes(pipe, dtype, family)
    weights = sum(sizes.values())
    largest = max(sizes.values(), default=0)
    act = estimate_activation_bytes(pipe, family, width, height, frames, dtype)
    decode = estimate_decode_bytes(family, width, height, dtype)
    vae = sizes.get("vae", 0)
    figures = {
        "weights_bytes": weights,
        "largest_bytes": largest,
        "activation_bytes": act,
        "decode_bytes": decode,
    }
    if device.type != "cuda":
        if offload in ("model", "group"):
            raise PlacementError(
                f"offload {offload!r} moves models between host and an "
                "accelerator; on the CPU use offload none (or auto)"
            )
        return MemoryPlan("none", vae_tiling == "on", "CPU: host memory is not planned", **figures)
    free = free_memory(device) if free_bytes is None else int(free_bytes)
    assert free is not None
    budget = free - max(RESERVE_MIN_BYTES, int(free * RESERVE_FRACTION))

    def gib(n: float) -> str:
        return f"{n / GiB:.1f} GiB"

    if offload != "auto":
        chosen, why = offload, "set in the settings or the scenario"
    elif weights + act + decode <= budget:
        chosen, why = "none", f"all models ({gib(weights)}) + activations fit in {gib(budget)}"
    elif largest + act <= budget:
        chosen, why = (
            "model",
            (
                f"all models ({gib(weights)}) do not fit in {gib(budget)}; the "
                f"largest ({gib(largest)}) with its activations does"
            ),
        )
    else:
        chosen, why = (
            "group",
            (
                f"the largest model ({gib(largest)}) does not fit in "
                f"{gib(budget)} with its activations ({gib(act)})"
            ),
        )
    # What stays on the card while the VAE decodes: everything (none), else the VAE alone
    # (model offload has moved the denoiser out; group offload keeps no block resident).
    resident = weights if chosen == "none" else vae
    tiling = resident + decode > budget if vae_tiling == "auto" else vae_tiling == "on"
    return MemoryPlan(chosen, tiling, why, budget_bytes=budget, **figures)


def cast(module: torch.nn.Module, dtype: torch.dtype) -> None:
    """``module.to(dtype)`` that leaves the model's ``_keep_in_fp32_modules`` in fp32 (Wan's
    rope, time embedder, modulation tables and norms), as ``from_pretrained(torch_dtype=)``
    does: those lose precision in bf16 and cost nothing in fp32."""
    keep = (
        set(getattr(module, "_keep_in_fp32_modules", None) or ())
        if dtype != torch.float32
        else set()
    )
    for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
        if not tensor.is_floating_point():
            continue
        want = torch.float32 if keep & set(name.split(".")) else dtype
        if tensor.dtype != want:
            tensor.data = tensor.data.to(want)


def place(
    pipe: Any, device: torch.device, dtype: torch.dtype, plan: MemoryPlan, family: str
) -> Any:
    """Cast the models to ``dtype`` (a Wan VAE keeps its own) and put them on ``device`` the
    way ``plan`` says. Load LoRAs before this: offload hooks wrap the modules as they are."""
    keep = keeps_vae_dtype(family)
    for name, module in _modules(pipe).items():
        if not (keep and name == "vae"):
            cast(module, dtype)
    if plan.offload == "none":
        pipe.to(device)
    elif plan.offload == "model":
        pipe.enable_model_cpu_offload(device=device)
    elif plan.offload == "group":
        cuda = device.type == "cuda"
        pipe.enable_group_offload(
            onload_device=device,
            offload_device=torch.device("cpu"),
            offload_type="block_level",
            num_blocks_per_group=1,
            use_stream=cuda,
            non_blocking=cuda,
            exclude_modules=["vae"],
        )
    else:
        raise PlacementError(f"unknown offload {plan.offload!r}")
    vae = getattr(pipe, "vae", None)
    if vae is not None:
        if plan.vae_tiling and hasattr(vae, "enable_tiling"):
            vae.enable_tiling()
        elif hasattr(vae, "disable_tiling"):
            vae.disable_tiling()
    log.info("render pipeline on %s in %s: %s", device, dtype, plan.describe())
    return pipe


def denoiser_device_dtype(pipe: Any) -> tuple[torch.device, torch.dtype]:
    """Where most of the denoiser's weights are and their dtype (for checks and the render
    record; a few fp32 modules, see :func:`cast`, do not count)."""
    module = getattr(pipe, "transformer", None) or pipe.unet
    counts: dict[tuple[torch.device, torch.dtype], int] = {}
    for p in module.parameters():
        counts[(p.device, p.dtype)] = counts.get((p.device, p.dtype), 0) + p.numel()
    return max(counts, key=counts.__getitem__)
