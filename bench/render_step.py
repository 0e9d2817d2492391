"""Render benchmark: seconds per denoising step and peak GPU memory of Wan video renders, through
render's own code (``loraforge.render.device.plan_memory`` / ``place``, ``wan.generate``).

    .venv/bin/python bench/render_step.py --preset tiny-wan2.1-i2v          # CPU smoke test
    python bench/render_step.py --full                                      # GPU: the 3 rows below
    python bench/render_step.py --full --preset wan2.1-i2v-14b --steps 3 --card-gib 24

``--full`` builds each preset's denoiser at its real size from the published architecture
(``bench/train_step.py``'s builder; random bf16 weights made on the GPU, since initialising
14B parameters on the CPU takes minutes) and the real-size Wan 2.1 VAE (random weights, fp32
as render runs it). The text encoder (UMT5-XXL) and image encoder (CLIP ViT-H) are small
stand-ins producing embeddings of the real shapes (512 x 4096 text tokens, 257 x 1280 image
tokens per image): their cost is one forward per render, not per step. Default rows:
Wan 2.1 T2V 1.3B, I2V 14B and FLF2V 14B at 480x832 x 81 frames, CFG 5 (two transformer
forwards per step, as diffusers runs Wan), scheduler UniPC with flow shift 3 (what the Wan
diffusers checkpoints ship).

Each preset runs twice: ``resident`` (everything on the card) and ``24GB`` (the memory savers
render's ``plan_memory`` chooses for a card with ``--card-gib`` GiB free, planned with the
real text/image encoder sizes, e.g. group offload with stream prefetch for 14B). The
first denoising step is a warm-up (it also carries text/image encoding and the I2V
condition's VAE encode); the table gives the mean of the following steps. Peak memory is
``torch.cuda.max_memory_allocated`` over the denoising loop; the VAE decode of the 81 frames
is timed separately (once per mode, on the first preset) with its own peak. On the CPU
(tiny presets) the figures only show that the path runs.
"""

from __future__ import annotations

import argparse
import gc
import platform
import sys
import time
from typing import Any

import torch

# `python bench/render_step.py` puts bench/ on sys.path (train_step's builder below); the
# package comes from the install (`make install`), as in train_step.py.
from loraforge.render.device import (
    GiB,
    MemoryPlan,
    component_bytes,
    denoiser_device_dtype,
    place,
    plan_memory,
)
from loraforge.trainer import wan
from loraforge.trainer.presets import get_preset, load_pipeline

FULL_DEFAULT = ["wan2.1-t2v-1.3b", "wan2.1-i2v-14b", "wan2.1-flf2v-14b"]
# Parameter counts of the encoders the stand-ins replace (bf16 bytes = 2x): UMT5-XXL encoder
# 5.68B (Wan's text encoder), CLIP ViT-H/14 vision tower 0.63B (Wan I2V/FLF2V image encoder).
REAL_ENCODER_PARAMS = {"text_encoder": 5_680_000_000, "image_encoder": 632_000_000}
PROMPT = "a woman walks along a beach at sunset, waves, handheld camera"
NEGATIVE = "blurry, low quality, static, watermark"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def full_pipeline(name: str, device: torch.device, dtype: torch.dtype) -> Any:
    """The preset's diffusers pipeline at real size with random weights (see the docstring)."""
    from diffusers import (
        AutoencoderKLWan,
        UniPCMultistepScheduler,
        WanImageToVideoPipeline,
        WanPipeline,
    )
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        CLIPVisionModelWithProjection,
        UMT5Config,
        UMT5EncoderModel,
    )

    from loraforge.trainer.tiny_text import (
        TINY_EOS_ID,
        TINY_PAD_ID,
        TINY_VOCAB_SIZE,
        tiny_tokenizer,
    )
    from train_step import full_denoiser

    preset = get_preset(name)
    if preset.family != "wan":
        raise SystemExit(f"{name}: this benchmark renders Wan video presets")
    _, transformer = full_denoiser(name, device, dtype)
    with torch.device(device):
        vae = AutoencoderKLWan().to(torch.float32).eval()  # the Wan 2.1 VAE's own config
        text_encoder = (
            UMT5EncoderModel(
                UMT5Config(
                    vocab_size=TINY_VOCAB_SIZE,
                    d_model=4096,
                    d_kv=64,
                    d_ff=512,
                    num_layers=1,
                    num_heads=8,
                    relative_attention_num_buckets=32,
                    pad_token_id=TINY_PAD_ID,
                    eos_token_id=TINY_EOS_ID,
                    decoder_start_token_id=TINY_PAD_ID,
                )
            )
            .to(dtype)
            .eval()
        )
    scheduler = UniPCMultistepScheduler(
        prediction_type="flow_prediction",
        use_flow_sigmas=True,
        flow_shift=3.0,
        num_train_timesteps=1000,
    )
    common = {
        "tokenizer": tiny_tokenizer(model_max_length=512),
        "text_encoder": text_encoder,
        "vae": vae,
        "scheduler": scheduler,
        "transformer": transformer,
    }
    if preset.variant == "t2v":
        return WanPipeline(**common)
    with torch.device(device):
        image_encoder = (
            CLIPVisionModelWithProjection(
                CLIPVisionConfig(
                    hidden_size=1280,
                    projection_dim=1024,
                    num_hidden_layers=2,
                    num_attention_heads=16,
                    intermediate_size=1280,
                    image_size=224,
                    patch_size=14,
                )
            )
            .to(dtype)
            .eval()
        )
    return WanImageToVideoPipeline(
        **common,
        image_encoder=image_encoder,
        image_processor=CLIPImageProcessor(crop_size=224, size={"shortest_edge": 224}),
    )


def _real_sizes(pipe: Any, dtype: torch.dtype) -> dict[str, int]:
    sizes = component_bytes(pipe, dtype, "wan")
    for name, params in REAL_ENCODER_PARAMS.items():
        if name in sizes:
            sizes[name] = params * torch.tensor([], dtype=dtype).element_size()
    return sizes


def _images(width: int, height: int) -> tuple[Any, Any]:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    first = Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8))
    last = Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8))
    return first, last


def run_steps(
    pipe: Any,
    variant: str,
    device: torch.device,
    width: int,
    height: int,
    frames: int,
    steps: int,
    cfg: float,
) -> tuple[list[float], float, Any]:
    """(seconds of each denoising step, peak GiB over the loop, latents)."""
    stamps: list[float] = []
    peak = [0]

    def on_step(_i: int) -> None:
        _sync(device)
        stamps.append(time.perf_counter())
        if device.type == "cuda":
            peak[0] = max(peak[0], torch.cuda.max_memory_allocated(device))

    first, last = _images(width, height)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    _sync(device)
    t0 = time.perf_counter()
    latents = wan.generate(
        pipe,
        PROMPT,
        0,
        width,
        height,
        frames,
        steps=steps,
        variant=variant,
        image=first,
        last_image=last,
        guidance=cfg,
        negative_prompt=NEGATIVE,
        on_step=on_step,
        output_type="latent",
    )
    times = [b - a for a, b in zip([t0, *stamps[:-1]], stamps, strict=True)]
    return times, peak[0] / GiB, latents


def time_decode(pipe: Any, latents: Any, device: torch.device) -> tuple[float, float]:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    _sync(device)
    t0 = time.perf_counter()
    wan.decode_latents(pipe, latents, output_type="pt")
    _sync(device)
    peak = torch.cuda.max_memory_allocated(device) / GiB if device.type == "cuda" else 0.0
    return time.perf_counter() - t0, peak


def _free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def bench_preset(
    name: str,
    args: argparse.Namespace,
    device: torch.device,
    dtype: torch.dtype,
    decode: bool,
    out: Any,
) -> None:
    preset = get_preset(name)
    tiny = preset.tiny
    w, h, f = (
        args.width or (32 if tiny else 832),
        args.height or (32 if tiny else 480),
        args.frames or (9 if tiny else 81),
    )
    t_build = time.perf_counter()
    pipe = load_pipeline(preset) if tiny else full_pipeline(name, device, dtype)
    pipe.set_progress_bar_config(disable=True)
    build_s = time.perf_counter() - t_build
    sizes = _real_sizes(pipe, dtype) if not tiny else None
    modes: list[tuple[str, MemoryPlan]] = [
        ("resident", MemoryPlan("none", False, "everything on the card"))
    ]
    if device.type == "cuda":
        card = int(args.card_gib * GiB)
        plan = plan_memory(
            pipe, "wan", device, dtype, width=w, height=h, frames=f, free_bytes=card, sizes=sizes
        )
        modes.append((f"{args.card_gib:g}GB", plan))
    forwards = 2 if args.cfg > 1 else 1
    for mode, plan in modes:
        if mode != "resident":
            pipe.to("cpu")  # group/model offload start from host memory, as a real load does
            _free(device)
        t_place = time.perf_counter()
        place(pipe, device, dtype, plan, "wan")
        _sync(device)
        place_s = time.perf_counter() - t_place
        on, dt = denoiser_device_dtype(pipe)
        try:
            times, peak, latents = run_steps(
                pipe, preset.variant, device, w, h, f, args.steps, args.cfg
            )
        except torch.OutOfMemoryError as exc:
            print(
                f"| {name} | {mode} | {plan.offload} | {w}x{h}x{f} | OOM | | | | | "
                f"{str(exc)[:60]} |",
                file=out,
                flush=True,
            )
            _free(device)
            continue
        timed = times[1:] or times
        per_step = sum(timed) / len(timed)
        dec = ""
        if decode:
            dec_s, dec_peak = time_decode(pipe, latents, device)
            dec = f"{dec_s:.1f} s / {dec_peak:.1f} GiB" + (" (tiled)" if plan.vae_tiling else "")
        notes = (
            f"build {build_s:.0f}s, place {place_s:.0f}s, first step {times[0]:.1f}s; "
            f"weights {on.type}/{str(dt).removeprefix('torch.')}"
        )
        print(
            f"| {name} | {mode} | {plan.offload}{' +tiling' if plan.vae_tiling else ''} | "
            f"{w}x{h}x{f} | {per_step:.2f} | {per_step / forwards:.2f} | {peak:.1f} | "
            f"{len(timed)} | {dec} | {notes} |",
            file=out,
            flush=True,
        )
        del latents
        _free(device)
    del pipe
    _free(device)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--preset",
        action="append",
        help="Wan preset (repeatable); default tiny-wan2.1-i2v, or the three real rows with --full",
    )
    ap.add_argument("--full", action="store_true", help="real-size architecture, random weights")
    ap.add_argument("--width", type=int)
    ap.add_argument("--height", type=int)
    ap.add_argument("--frames", type=int, help="4k+1 (default 81, tiny 9)")
    ap.add_argument(
        "--steps",
        type=int,
        help="denoising steps, the first a warm-up (default 3; 2 with --full, so the "
        "three default rows fit in 4 minutes on an H200)",
    )
    ap.add_argument(
        "--cfg", type=float, default=5.0, help="true CFG scale (>1: two forwards a step)"
    )
    ap.add_argument(
        "--card-gib",
        type=float,
        default=24.0,
        help="free memory of the card to plan the memory savers for (GiB)",
    )
    ap.add_argument("--no-decode", action="store_true", help="skip the VAE decode timing")
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda")
    args = ap.parse_args(argv)
    device = torch.device(
        "cuda"
        if args.device == "auto" and torch.cuda.is_available()
        else ("cpu" if args.device == "auto" else args.device)
    )
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    args.steps = args.steps or (2 if args.full else 3)
    names = args.preset or (FULL_DEFAULT if args.full else ["tiny-wan2.1-i2v"])
    for name in names:
        if get_preset(name).tiny == args.full:
            raise SystemExit(f"{name}: use tiny presets without --full and real ones with --full")
    gpu = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or "cpu"
    )
    out = sys.stdout
    print(
        f"render step, {gpu}, torch {torch.__version__}, {str(dtype).removeprefix('torch.')}, "
        f"CFG {args.cfg:g}, {args.steps} steps (first = warm-up); text/image encoders are "
        "stand-ins of the real output shapes"
        + ("" if args.full else " (tiny presets: smoke test)"),
        file=out,
    )
    print(
        "\n| preset | mode | offload | WxHxF | s/step | s/forward | peak GiB | timed steps | "
        "VAE decode | notes |",
        file=out,
    )
    print("|---|---|---|---|---|---|---|---|---|---|", file=out, flush=True)
    for i, name in enumerate(names):
        bench_preset(name, args, device, dtype, decode=not args.no_decode and i == 0, out=out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
