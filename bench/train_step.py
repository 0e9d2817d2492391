"""LoRA train-step benchmark: step time, peak memory, FLOP rate (and MFU on a GPU).

    .venv/bin/python bench/train_step.py                         # every tiny preset, CPU
    .venv/bin/python bench/train_step.py --preset tiny-wan2.1-t2v --resolution 64 --frames 9
    ... --preset wan2.1-t2v-1.3b --full --resolution 480p --frames 33    # a real size
    ... --profile 30      # then one step under torch.profiler: time per op category, top 30 ops

Random weights only. Tiny presets (default) build the whole tiny pipeline; ``--full`` builds
the real preset's denoiser at full size from its published architecture config (no weights
needed, nothing downloaded) on the available device (bf16 on CUDA). The step is one
forward + backward + AdamW update of the LoRA (the family's default rank and targets) on
synthetic latents and text embeddings of the right shapes: the same ``family.predict`` the
trainer uses. FLOPs come from ``torch.utils.flop_counter`` over one forward, with the
backward derived per op (see ``train_flops``); MFU is achieved model FLOP/s (no recompute)
and HFU hardware FLOP/s (with the checkpoint recompute) over a dense bf16 matmul measured in
the same run (fp32 matmul on CPU, reported as
"matmul util"). Peak memory: ``torch.cuda.max_memory_allocated`` on a GPU, peak RSS of the
process on CPU.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import platform
import resource
import sys
import time
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import torch

from loraforge.trainer.dataset import parse_resolution
from loraforge.trainer.kernels import attention_backend, compile_blocks
from loraforge.trainer.memory import (
    ActivationOffload,
    checkpoint_last_blocks,
    enable_block_swap,
    fp8_base_weights,
    selective_checkpoint,
    transformer_blocks,
)
from loraforge.trainer.presets import PRESETS, TINY_SEED, get_preset

TINY = [n for n in PRESETS if n.startswith("tiny-")]


def full_denoiser(name: str, device: torch.device, dtype: torch.dtype) -> tuple[Any, Any]:
    """(pipe-like namespace, denoiser) at the real architecture size, random weights.

    Built directly on ``device`` in ``dtype``: random-initialising 14B parameters in fp32 on
    the CPU takes minutes and 56 GB. (The trainer loads real weights on the CPU instead, so
    a model bigger than the card can be fp8-converted and block-swapped before moving.)
    """
    with torch.device(device), _default_dtype(dtype):
        return _full_denoiser(name)


@contextlib.contextmanager
def _default_dtype(dtype: torch.dtype) -> Iterator[None]:
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def _full_denoiser(name: str, num_layers: int | None = None) -> tuple[Any, Any]:
    """``num_layers``: fewer Wan blocks than the real model (to study one block)."""
    from diffusers import (
        FluxPipeline,
        FluxTransformer2DModel,
        UNet2DConditionModel,
        WanTransformer3DModel,
    )

    p = get_preset(name)
    if p.family == "wan":
        big = "14b" in name
        kw: dict[str, Any] = {
            "patch_size": (1, 2, 2),
            "num_attention_heads": 40 if big else 12,
            "attention_head_dim": 128,
            "in_channels": 16,
            "out_channels": 16,
            "text_dim": 4096,
            "freq_dim": 256,
            "ffn_dim": 13824 if big else 8960,
            "num_layers": num_layers or (40 if big else 30),
            "cross_attn_norm": True,
            "qk_norm": "rms_norm_across_heads",
            "eps": 1e-6,
        }
        if p.variant in ("i2v", "flf2v"):
            kw.update(in_channels=36, image_dim=1280)
            if p.variant == "flf2v":
                kw["pos_embed_seq_len"] = 2 * 257
        model = WanTransformer3DModel(**kw)
        return SimpleNamespace(), model
    if p.family == "flux":
        model = FluxTransformer2DModel(guidance_embeds=True)
        return SimpleNamespace(
            _pack_latents=FluxPipeline._pack_latents,
            _prepare_latent_image_ids=FluxPipeline._prepare_latent_image_ids,
        ), model
    if p.family == "sdxl":
        model = UNet2DConditionModel(
            sample_size=128,
            block_out_channels=(320, 640, 1280),
            layers_per_block=2,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            transformer_layers_per_block=(1, 2, 10),
            attention_head_dim=(5, 10, 20),
            cross_attention_dim=2048,
            use_linear_projection=True,
            addition_embed_type="text_time",
            addition_time_embed_dim=256,
            projection_class_embeddings_input_dim=2816,
        )
        return SimpleNamespace(vae_scale_factor=8), model
    model = UNet2DConditionModel(sample_size=64, cross_attention_dim=768, attention_head_dim=8)
    return SimpleNamespace(vae_scale_factor=8), model


def synthetic_batch(
    family: str,
    variant: str,
    model: Any,
    w: int,
    h: int,
    frames: int,
    tiny: bool,
    device: torch.device,
    dtype: torch.dtype,
) -> dict[str, torch.Tensor]:
    c = model.config
    lh, lw = h // 8, w // 8

    def r(*s):
        return torch.randn(*s, device=device, dtype=dtype)

    if family == "wan":
        lt = (frames - 1) // 4 + 1
        b = {
            "latents": r(1, 16, lt, lh, lw),
            "prompt_embeds": r(1, 64 if tiny else 512, c.text_dim),
        }
        if variant in ("i2v", "flf2v"):
            k = 2 if variant == "flf2v" else 1
            tokens = 17 if tiny else 257
            b["condition"] = r(1, c.in_channels - 16, lt, lh, lw)
            b["image_embeds"] = r(1, k * tokens, c.image_dim)
        return b
    if family == "flux":
        return {
            "latents": r(1, c.in_channels // 4, lh, lw),
            "prompt_embeds": r(1, 64 if tiny else 512, c.joint_attention_dim),
            "pooled_prompt_embeds": r(1, c.pooled_projection_dim),
        }
    b = {"latents": r(1, c.in_channels, lh, lw), "prompt_embeds": r(1, 77, c.cross_attention_dim)}
    if family == "sdxl":
        b["pooled_prompt_embeds"] = r(
            1, c.projection_class_embeddings_input_dim - 6 * c.addition_time_embed_dim
        )
    return b


def matmul_peak(device: torch.device, dtype: torch.dtype) -> float:
    n = 8192 if device.type == "cuda" else 1024
    a = torch.randn(n, n, device=device, dtype=dtype)
    bm = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ bm
    _sync(device)
    reps = 20 if device.type == "cuda" else 5
    t = time.perf_counter()
    for _ in range(reps):
        a @ bm
    _sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - t)


def train_flops(forward: Callable[[], Any]) -> tuple[float, float]:
    """(FLOPs of one training step, FLOPs of its forward), counted on the forward alone.

    Counting a whole step under FlopCounterMode ran the H100 out of memory at 81 frames:
    its module tracker keeps tensors alive through the checkpoint recompute. So count the
    forward (no graph kept) and derive the backward per op: the base weights are frozen,
    so a matmul's backward is the input gradient alone (1x its forward); attention's backward
    is 2.5x its forward (flash attention: 5 matmuls against 2). The LoRA weight gradients
    (rank/width, ~2%) are left out, so the step figure is a slight undercount.
    """
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        forward()  # attention kernel does not change the count
    total = counter.get_total_flops()
    attention = sum(
        v for op, v in counter.get_flop_counts().get("Global", {}).items() if "attention" in str(op)
    )
    return 2 * (total - attention) + 3.5 * attention, total


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


# op name fragments -> category, first match wins (kernel names on CUDA, aten ops on CPU)
OP_CATEGORIES = (
    ("attention", ("flash", "fmha", "cudnn", "attention", "sdpa", "scaled_dot_product")),
    (
        "matmul",
        (
            "gemm",
            "xmma",
            "cutlass",
            "aten::mm",
            "aten::addmm",
            "aten::bmm",
            "matmul",
            "aten::linear",
            "nvjet",
        ),
    ),
    ("norm", ("norm", "rms", "welford")),
    ("copy/cast", ("copy", "memcpy", "memset", "to_copy", "cast", "fill")),
    ("optimizer", ("adam", "foreach", "multi_tensor")),
)


def categorize(name: str) -> str:
    low = name.lower()
    for category, fragments in OP_CATEGORIES:
        if any(f in low for f in fragments):
            return category
    return "elementwise/other"


def profile_step(step: Callable[[], None], device: torch.device, top: int) -> str:
    """One step under torch.profiler: self time per op category and the ``top`` ops, as
    markdown (device kernel time on CUDA, CPU op time on CPU)."""
    from torch.profiler import ProfilerActivity, profile

    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        step()
        _sync(device)
    rows = []
    for ev in prof.key_averages():
        if cuda:
            t = getattr(ev, "self_device_time_total", None) or getattr(
                ev, "self_cuda_time_total", 0
            )
        else:
            t = ev.self_cpu_time_total
        if t > 0 and (cuda or ev.key.startswith("aten::")):
            rows.append((ev.key, t / 1e3, ev.count))
    total = sum(t for _, t, _ in rows) or 1.0
    by_cat: dict[str, float] = {}
    for name, t, _ in rows:
        by_cat[categorize(name)] = by_cat.get(categorize(name), 0.0) + t
    out = [
        f"profile of one step ({'device kernels' if cuda else 'CPU aten ops'}, self time)",
        "",
        "| category | ms | share |",
        "|---|---:|---:|",
    ]
    out += [
        f"| {c} | {t:.1f} | {t / total:.1%} |"
        for c, t in sorted(by_cat.items(), key=lambda x: -x[1])
    ]
    out += ["", "| op | category | calls | ms | share |", "|---|---|---:|---:|---:|"]
    for name, t, n in sorted(rows, key=lambda r: -r[1])[:top]:
        out.append(f"| {name[:80]} | {categorize(name)} | {n} | {t:.1f} | {t / total:.1%} |")
    return "\n".join(out)


def bench(
    name: str,
    resolution: str | None,
    frames: int | None,
    full: bool,
    steps: int,
    device: torch.device,
    gradient_checkpointing: bool,
    fp8: bool = False,
    block_swap: int = 0,
    attention: str = "auto",
    checkpoint_blocks: int | None = None,
    compile_: str = "",
    offload: bool = False,
    profile_top: int = 0,
    selective: bool = False,
) -> dict[str, Any]:
    from peft import LoraConfig

    p = get_preset(name)
    fam = p.module
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    if full:
        pipe, model = full_denoiser(name, device, dtype)
        experts = [model]
        if p.variant == "t2v-a14b":  # Wan 2.2 A14B: a low-noise expert of the same shape
            experts.append(full_denoiser(name, device, dtype)[1])
    else:
        pipe = fam.build_tiny(p.variant, TINY_SEED)
        experts = list(fam.denoisers(pipe).values())
        for m in experts:
            m.to(device=device, dtype=dtype)
    # Two experts (Wan 2.2 A14B): both carry a LoRA and stay resident (the trainer trains
    # both in one run), and each step trains one of them on its own timestep range, as
    # Trainer._route does; the timed steps alternate so that both are measured.
    model = experts[0]
    res = resolution or ("64" if p.tiny else p.defaults.resolution)
    w, h = parse_resolution(res, p.stride, p.family)
    f = frames or (9 if p.tiny and p.family == "wan" else p.defaults.frames)
    params = []
    for m in experts:
        m.requires_grad_(False)
        # Same order as Trainer.prepare: adapter, fp32 LoRA, checkpointing, fp8, block swap.
        m.add_adapter(
            LoraConfig(
                r=p.defaults.rank,
                lora_alpha=p.defaults.alpha,
                target_modules=list(p.defaults.target_modules),
            )
        )
        own = [q for q in m.parameters() if q.requires_grad]
        for q in own:
            q.data = q.data.float()
        params += own
        if gradient_checkpointing or block_swap or selective:
            m.enable_gradient_checkpointing(selective_checkpoint if selective else None)
            if checkpoint_blocks is not None:
                checkpoint_last_blocks(m, checkpoint_blocks)
        if fp8:
            fp8_base_weights(m)
        if compile_ == "blocks":
            compile_blocks(m)
        elif compile_ == "model":  # experiment: the whole forward, checkpoint regions included
            m.compile()
        if block_swap:
            enable_block_swap(m, block_swap, device)
        m.train()
    opt = torch.optim.AdamW(params, lr=1e-4)
    batch = synthetic_batch(p.family, p.variant, model, w, h, f, p.tiny, device, dtype)
    flow = p.defaults.objective == "flow"
    # the middle of each expert's sigma range (the whole range for one denoiser)
    sigmas = [0.5] * len(experts)
    if len(experts) > 1:
        from loraforge.trainer.wan import expert_range

        names = ("transformer", "transformer_2")
        sigmas = [sum(expert_range(p.variant, names[i])) / 2 for i in range(len(experts))]
    turn = [0]

    def loss_of_step() -> torch.Tensor:
        i = turn[0] % len(experts)
        x0 = batch["latents"]
        noise = torch.randn_like(x0)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
            if flow:
                s = sigmas[i]
                t = torch.full((1,), s, device=device)
                pred = fam.predict(pipe, experts[i], (1 - s) * x0 + s * noise, t, batch, p.variant)
                target = noise - x0
            else:
                t = torch.full((1,), 500, device=device, dtype=torch.long)
                pred = fam.predict(pipe, experts[i], x0 + noise, t, batch, p.variant)
                target = noise
        return torch.nn.functional.mse_loss(pred.float(), target.float())

    def step() -> None:
        active = experts[turn[0] % len(experts)]
        with attention_backend(attention, device, p.family):
            with ActivationOffload(active, device) if offload else contextlib.nullcontext():
                loss = loss_of_step()
            loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        turn[0] += 1

    for _ in range((3 if compile_ else 1) * len(experts)):  # warm-up (allocations, kernels,
        step()  # compiled variants), each expert
    model_flops, fwd_flops = train_flops(loss_of_step)
    recomputed = 0.0  # selective: matmuls and attention are not recomputed
    if (gradient_checkpointing or block_swap) and not selective:
        n = len(transformer_blocks(model)) or 1
        recomputed = 1.0 if checkpoint_blocks is None else min(checkpoint_blocks, n) / n
    hw_flops = model_flops + recomputed * fwd_flops
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    _sync(device)
    t = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    dt_step = (time.perf_counter() - t) / steps
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB (Linux)
    n_params = sum(q.numel() for m in experts for q in m.parameters())
    profile = profile_step(step, device, profile_top) if profile_top else ""
    saver = "+".join(
        x
        for x, on in (
            (f"sdpa:{attention}", attention != "auto"),
            (f"compile:{compile_}", compile_),
            (
                "ckpt" if checkpoint_blocks is None else f"ckpt{checkpoint_blocks}",
                gradient_checkpointing or block_swap or selective,
            ),
            ("selective", selective),
            ("fp8", fp8),
            (f"swap{block_swap}", block_swap),
            ("offload", offload),
        )
        if on
    )
    return {
        "preset": name,
        "size": f"{w}x{h}",
        "frames": f,
        "params_M": n_params / 1e6,
        "lora_M": sum(q.numel() for q in params) / 1e6,
        "step_s": dt_step,
        "peak_MiB": peak,
        "gflop_step": model_flops / 1e9,
        "achieved_gflops": model_flops / dt_step / 1e9,
        "hw_gflops": hw_flops / dt_step / 1e9,
        "savers": saver or "-",
        "profile": profile,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--preset", action="append", help="preset (repeatable); default: every tiny preset"
    )
    ap.add_argument("--resolution", help="480p, 720p, 512, 1024, WxH (default: 64 for tiny)")
    ap.add_argument("--frames", type=int, help="frames per sample (4k+1) for Wan")
    ap.add_argument("--full", action="store_true", help="real-size architecture, random weights")
    ap.add_argument("--steps", type=int, default=5, help="timed steps (after one warm-up)")
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda")
    ap.add_argument("--gradient-checkpointing", action="store_true", help="recompute activations")
    ap.add_argument("--fp8", action="store_true", help="frozen base Linear weights in scaled fp8")
    ap.add_argument(
        "--block-swap",
        type=int,
        default=0,
        metavar="N",
        help="keep the last N blocks' frozen weights in host memory (CUDA only)",
    )
    ap.add_argument(
        "--checkpoint-blocks",
        type=int,
        metavar="N",
        help="with --gradient-checkpointing: recompute only the last N blocks",
    )
    ap.add_argument(
        "--offload-activations",
        action="store_true",
        help="keep tensors saved for backward (block inputs) in pinned host memory",
    )
    ap.add_argument(
        "--selective",
        action="store_true",
        help="selective checkpointing: keep matmul/attention outputs, recompute the rest",
    )
    ap.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="N",
        help="after timing, profile one step: time per op category and the top N ops",
    )
    ap.add_argument(
        "--compile",
        choices=["blocks", "model"],
        default="",
        help="torch.compile each transformer block's forward, or the whole model",
    )
    ap.add_argument(
        "--attention",
        default="auto",
        choices=["auto", "cudnn", "flash", "efficient", "math"],
        help="SDPA kernel preference on CUDA (auto: cuDNN on Hopper)",
    )
    args = ap.parse_args(argv)
    device = torch.device(
        "cuda"
        if (args.device == "auto" and torch.cuda.is_available())
        else ("cpu" if args.device == "auto" else args.device)
    )
    names = args.preset or TINY
    peak_dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    peak = matmul_peak(device, peak_dtype)
    label = "MFU (bf16 matmul)" if device.type == "cuda" else "matmul util (fp32)"
    print(
        f"# {dt.date.today()} {platform.machine()} {device} torch {torch.__version__} "
        f"threads {torch.get_num_threads()}; dense matmul {peak / 1e9:.1f} GFLOP/s"
    )
    print(
        f"| preset | savers | size | frames | params M | LoRA M | step s | peak MiB | "
        f"GFLOP/step | {label} | HFU |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name in names:
        r = bench(
            name,
            args.resolution,
            args.frames,
            args.full,
            args.steps,
            device,
            args.gradient_checkpointing,
            args.fp8,
            args.block_swap,
            args.attention,
            args.checkpoint_blocks,
            args.compile,
            args.offload_activations,
            args.profile,
            args.selective,
        )
        print(
            f"| {r['preset']} | {r['savers']} | {r['size']} | {r['frames']} | "
            f"{r['params_M']:.2f} | {r['lora_M']:.3f} | {r['step_s']:.3f} | "
            f"{r['peak_MiB']:.0f} | {r['gflop_step']:.2f} | "
            f"{r['achieved_gflops'] * 1e9 / peak:.1%} | {r['hw_gflops'] * 1e9 / peak:.1%} |",
            flush=True,
        )
        if r["profile"]:
            print(f"\n{r['profile']}\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
