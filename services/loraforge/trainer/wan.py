"""Wan 2.1 / 2.2 video models (diffusers ``WanPipeline`` / ``WanImageToVideoPipeline``).

Variants: ``t2v`` (text-to-video), ``i2v`` (first frame), ``flf2v`` (first + last frame),
``t2v-a14b`` (Wan 2.2: two experts; ``transformer`` = high-noise expert used while
``t >= boundary_ratio * 1000``, ``transformer_2`` = low-noise expert below it).

Stride: the VAE downsamples 8x in space (4x in time) and the transformer patchifies 2x2,
so width and height must be multiples of 16 and frame counts of the form 4k+1.

LoRA file layout (what ComfyUI loads for WAN21/WAN22 models, and what diffusers'
``WanLoraLoaderMixin`` converts with ``_convert_non_diffusers_wan_lora_to_diffusers``):
``diffusion_model.<original Wan module>.lora_A.weight`` / ``.lora_B.weight`` / ``.alpha``,
with the diffusers -> original renames in :data:`COMFY_RENAMES`
(``attn1.to_q`` -> ``self_attn.q``, ``attn2`` -> ``cross_attn``, ``to_out.0`` -> ``o``,
``ffn.net.0.proj`` -> ``ffn.0``, ``ffn.net.2`` -> ``ffn.2``, ``add_k_proj`` -> ``k_img``).
ComfyUI's ``model_lora_keys_unet`` maps every ``diffusion_model.<key>`` weight of the model
to itself ("generic lora format") and reads ``<key>.lora_A.weight`` / ``.lora_B.weight`` /
``.alpha``; ``alpha / rank`` scales the product there and in diffusers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from loraforge.runtime.errors import InvalidInput
from loraforge.trainer import dora
from loraforge.trainer.family import FamilyDefaults, peft_to_diffusion_model_keys, to_pil_list
from loraforge.trainer.inference import StepHook, check_guidance, cpu_generator, step_kwargs
from loraforge.trainer.tiny_text import (
    TINY_EOS_ID,
    TINY_PAD_ID,
    TINY_VOCAB_SIZE,
    tiny_tokenizer,
)

FAMILY = "wan"
STRIDE = 16  # VAE 8x * patch 2
TEMPORAL_STRIDE = 4
VARIANTS = ("t2v", "i2v", "flf2v", "t2v-a14b")
BOUNDARY_RATIO_A14B = 0.875  # Wan 2.2 T2V A14B: expert switch at t = 875

TARGET_MODULES = (
    "attn1.to_q",
    "attn1.to_k",
    "attn1.to_v",
    "attn1.to_out.0",
    "attn2.to_q",
    "attn2.to_k",
    "attn2.to_v",
    "attn2.to_out.0",
    "ffn.net.0.proj",
    "ffn.net.2",
)

# Ordered: longer patterns first so "attn1.to_out.0" wins over "attn1.".
COMFY_RENAMES = {
    "attn1.to_out.0": "self_attn.o",
    "attn2.to_out.0": "cross_attn.o",
    "attn1.to_q": "self_attn.q",
    "attn1.to_k": "self_attn.k",
    "attn1.to_v": "self_attn.v",
    "attn2.to_q": "cross_attn.q",
    "attn2.to_k": "cross_attn.k",
    "attn2.to_v": "cross_attn.v",
    "attn2.add_k_proj": "cross_attn.k_img",
    "attn2.add_v_proj": "cross_attn.v_img",
    "ffn.net.0.proj": "ffn.0",
    "ffn.net.2": "ffn.2",
}

DEFAULTS = FamilyDefaults(
    rank=32,
    alpha=32,
    learning_rate=1e-4,
    lr_scheduler="constant",
    warmup_steps=50,
    objective="flow",
    timestep_sampling="uniform",
    flow_shift=3.0,
    resolution="480p",
    frames=33,
    batch_size=1,
    steps=1000,
    target_modules=TARGET_MODULES,
    reasoning=(
        "rank/alpha 32 and lr 1e-4 are what Wan LoRA trainers (musubi-tuner, diffusion-pipe) "
        "use for characters and effects; the seeds' rank 64-128 / lr 5e-5..1e-4 is for "
        "harder identities (override rank). Uniform timesteps with shift 3.0 puts more steps "
        "at high noise, where motion and identity are formed (musubi-tuner's Wan default). "
        "Measured on an H100 (bench/README.md): 1.3B at 480x832x33 takes 46 GB without "
        "gradient checkpointing (on by default for real presets on CUDA) and 480x832x81 takes "
        "12 GB with it; 14B fits 24 GB at 480x832x33 with fp8_base + block_swap 30 (17.7 GB). "
        "Full recompute stays the default because it fits every card; with room to spare "
        "(1.3B at 480x832x81 on a 64 GB+ card), selective_checkpointing keeps ~1.6 GB per "
        "block (counted, bench/saved_activations.py) and recomputes almost no FLOPs. "
        ">= 800 steps (seed 004)."
    ),
)


# ---------------------------------------------------------------- building the pipeline


def build_tiny(variant: str, seed: int = 0) -> Any:
    """A WanPipeline / WanImageToVideoPipeline with small random-weight models."""
    from diffusers import (
        AutoencoderKLWan,
        FlowMatchEulerDiscreteScheduler,
        WanImageToVideoPipeline,
        WanPipeline,
        WanTransformer3DModel,
    )
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        CLIPVisionModelWithProjection,
        UMT5Config,
        UMT5EncoderModel,
    )

    torch.manual_seed(seed)
    text_encoder = UMT5EncoderModel(
        UMT5Config(
            vocab_size=TINY_VOCAB_SIZE,
            d_model=32,
            d_kv=8,
            d_ff=64,
            num_layers=2,
            num_heads=4,
            relative_attention_num_buckets=8,
            pad_token_id=TINY_PAD_ID,
            eos_token_id=TINY_EOS_ID,
            decoder_start_token_id=TINY_PAD_ID,
        )
    ).eval()
    tokenizer = tiny_tokenizer(model_max_length=64)
    torch.manual_seed(seed + 1)
    vae = AutoencoderKLWan(
        base_dim=3,
        z_dim=16,
        dim_mult=[1, 1, 1, 1],
        num_res_blocks=1,
        temperal_downsample=[False, True, True],
    ).eval()

    def transformer(offset: int, **kw: Any) -> Any:
        torch.manual_seed(seed + offset)
        return WanTransformer3DModel(
            patch_size=(1, 2, 2),
            num_attention_heads=2,
            attention_head_dim=12,
            out_channels=16,
            text_dim=32,
            freq_dim=32,
            ffn_dim=48,
            num_layers=2,
            cross_attn_norm=True,
            qk_norm="rms_norm_across_heads",
            rope_max_seq_len=32,
            **kw,
        )

    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0)
    if variant in ("t2v", "t2v-a14b"):
        two = variant == "t2v-a14b"
        return WanPipeline(
            tokenizer=tokenizer,
            text_encoder=text_encoder,
            vae=vae,
            scheduler=scheduler,
            transformer=transformer(2, in_channels=16),
            transformer_2=transformer(3, in_channels=16) if two else None,
            boundary_ratio=BOUNDARY_RATIO_A14B if two else None,
        )
    torch.manual_seed(seed + 4)
    image_encoder = CLIPVisionModelWithProjection(
        CLIPVisionConfig(
            hidden_size=8,
            projection_dim=8,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=4,
            intermediate_size=16,
            patch_size=1,
        )
    ).eval()
    image_processor = CLIPImageProcessor(crop_size=4, size=4)
    pos = 2 * (4 * 4 + 1) if variant == "flf2v" else None
    return WanImageToVideoPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=vae,
        scheduler=scheduler,
        image_processor=image_processor,
        image_encoder=image_encoder,
        transformer=transformer(2, in_channels=36, image_dim=8, pos_embed_seq_len=pos),
    )


def load_pretrained(path: Path, variant: str, dtype: torch.dtype) -> Any:
    """Diffusers-format weights from a provisioned local directory; never a hub id."""
    from diffusers import WanImageToVideoPipeline, WanPipeline

    cls = WanPipeline if variant in ("t2v", "t2v-a14b") else WanImageToVideoPipeline
    pipe = cls.from_pretrained(str(path), torch_dtype=dtype, local_files_only=True)
    pipe.vae.to(torch.float32)  # the Wan VAE is run in fp32 (as the reference code does)
    return pipe


def denoisers(pipe: Any) -> dict[str, torch.nn.Module]:
    """Modules that get LoRA, by pipeline attribute name."""
    out = {"transformer": pipe.transformer}
    if getattr(pipe, "transformer_2", None) is not None:
        out["transformer_2"] = pipe.transformer_2
    return out


def model_configs(pipe: Any) -> list[Any]:
    cfgs = [pipe.vae.config, pipe.transformer.config, pipe.text_encoder.config]
    if getattr(pipe, "image_encoder", None) is not None:
        cfgs.append(pipe.image_encoder.config)
    return cfgs


def expert_range(variant: str, name: str) -> tuple[float, float]:
    """Range of sigma (t / 1000) an expert is trained on."""
    if variant != "t2v-a14b":
        return (0.0, 1.0)
    return (BOUNDARY_RATIO_A14B, 1.0) if name == "transformer" else (0.0, BOUNDARY_RATIO_A14B)


# ---------------------------------------------------------------- conditioning


def max_sequence_length(pipe: Any) -> int:
    return min(512, int(getattr(pipe.tokenizer, "model_max_length", 512) or 512))


@torch.no_grad()
def encode_text(pipe: Any, captions: list[str], device: torch.device) -> dict[str, torch.Tensor]:
    embeds, _ = pipe.encode_prompt(
        captions,
        do_classifier_free_guidance=False,
        num_videos_per_prompt=1,
        max_sequence_length=max_sequence_length(pipe),
        device=device,
    )
    return {"prompt_embeds": embeds.float().cpu()}


def _normalize(pipe: Any, z: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(pipe.vae.config.latents_mean).view(1, -1, 1, 1, 1).to(z)
    std = torch.tensor(pipe.vae.config.latents_std).view(1, -1, 1, 1, 1).to(z)
    return (z - mean) / std


@torch.no_grad()
def encode_media(
    pipe: Any, pixels: torch.Tensor, device: torch.device, variant: str
) -> dict[str, torch.Tensor]:
    """pixels (B, C, F, H, W) in [-1, 1] -> normalized latents (+ i2v conditioning)."""
    vae_dtype = next(pipe.vae.parameters()).dtype
    x = pixels.to(device, vae_dtype)
    z = _normalize(pipe, pipe.vae.encode(x).latent_dist.mode().float())
    out = {"latents": z.cpu()}
    if variant in ("i2v", "flf2v"):
        b, _, f, h, w = pixels.shape
        conds = []
        for i in range(b):  # prepare_latents repeats one image over the batch
            first = pixels[i : i + 1, :, 0].to(device, torch.float32)
            last = (
                pixels[i : i + 1, :, -1].to(device, torch.float32) if variant == "flf2v" else None
            )
            _, condition = pipe.prepare_latents(
                first,
                1,
                pipe.vae.config.z_dim,
                h,
                w,
                f,
                torch.float32,
                device,
                latents=torch.zeros_like(z[i : i + 1]),
                last_image=last,
            )
            conds.append(condition.float().cpu())
        out["condition"] = torch.cat(conds)
        images = to_pil_list(pixels[:, :, 0])
        if variant == "flf2v":
            pairs = []
            for img, lst in zip(images, to_pil_list(pixels[:, :, -1]), strict=True):
                pairs += [img, lst]
            images = pairs
        embeds = pipe.encode_image(images, device=device).float()
        # (B*k, S, D) -> (B, k*S, D): one row per sample; the transformer's image embedder
        # folds pairs back itself for flf2v.
        out["image_embeds"] = embeds.reshape(b, -1, embeds.shape[-1]).cpu()
    return out


def predict(
    pipe: Any,
    model: torch.nn.Module,
    noisy: torch.Tensor,
    sigmas: torch.Tensor,
    batch: dict[str, torch.Tensor],
    variant: str,
) -> torch.Tensor:
    """Flow-matching velocity prediction for noisy latents at sigma in [0, 1]."""
    x = noisy
    image_embeds = None
    if variant in ("i2v", "flf2v"):
        x = torch.cat([noisy, batch["condition"].to(noisy)], dim=1)
        e = batch["image_embeds"].to(noisy)
        image_embeds = e.reshape(-1, e.shape[1] // (2 if variant == "flf2v" else 1), e.shape[-1])
    return model(
        hidden_states=x,
        timestep=sigmas * 1000.0,
        encoder_hidden_states=batch["prompt_embeds"].to(noisy),
        encoder_hidden_states_image=image_embeds,
        return_dict=False,
    )[0]


# ---------------------------------------------------------------- LoRA file


def to_comfy(peft_sd: dict[str, torch.Tensor], alpha: float) -> dict[str, torch.Tensor]:
    return peft_to_diffusion_model_keys(peft_sd, alpha, COMFY_RENAMES)


def output_files(variant: str, name: str) -> dict[str, str]:
    """Denoiser attribute -> file name. Wan 2.2 A14B: one file per expert (ComfyUI loads
    them on the high-noise and low-noise model separately)."""
    if variant == "t2v-a14b":
        return {
            "transformer": f"{name}.high_noise.safetensors",
            "transformer_2": f"{name}.low_noise.safetensors",
        }
    return {"transformer": f"{name}.safetensors"}


def load_lora_into_pipeline(pipe: Any, files: dict[str, Path], adapter_name: str) -> None:
    for attr, path in files.items():
        # both experts' keys are named `transformer.` in diffusers; the flag picks the model
        dora.load_lora(
            pipe,
            path,
            attr,
            to_comfy,
            adapter_name,
            "transformer",
            load_into_transformer_2=attr == "transformer_2",
        )


#: Guidance of a render when the scenario does not set one: diffusers' and the Wan reference
#: code's default for T2V/I2V/FLF2V (sample_guide_scale 5.0).
RENDER_GUIDANCE = 5.0


def _vae_device(pipe: Any) -> torch.device:
    """Where the VAE runs: with model or group offloading its weights sit on the CPU between
    calls and the hook's onload device is what its inputs must match."""
    try:
        from diffusers.utils.torch_utils import get_module_execution_device
    except ImportError:  # older diffusers
        return torch.device(pipe._execution_device)
    return get_module_execution_device(pipe.vae)


def _latent_stats(pipe: Any, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    z = pipe.vae.config.z_dim
    mean = torch.tensor(pipe.vae.config.latents_mean).view(1, z, 1, 1, 1).to(like)
    std = torch.tensor(pipe.vae.config.latents_std).view(1, z, 1, 1, 1).to(like)
    return mean, std


@torch.no_grad()
def encode_first_frame(pipe: Any, image: Any, width: int, height: int) -> torch.Tensor:
    """The normalized latent of one image as a video's first frame (1, z, 1, h, w). The Wan
    VAE is causal and encodes the first frame alone, so this is exactly latent frame 0 of any
    video starting with ``image``."""
    x = pipe.video_processor.preprocess(image, height=height, width=width)
    device = _vae_device(pipe)
    x = x.to(device, next(pipe.vae.parameters()).dtype).unsqueeze(2)
    z = pipe.vae.encode(x).latent_dist.mode()
    mean, std = _latent_stats(pipe, z)
    return (z - mean) / std


@torch.no_grad()
def decode_latents(pipe: Any, latents: torch.Tensor, output_type: str = "pt") -> Any:
    """Normalized latents (B, z, f, h, w) -> frames, as the pipeline decodes them."""
    vae_dtype = next(pipe.vae.parameters()).dtype
    latents = latents.to(_vae_device(pipe), vae_dtype)
    mean, std = _latent_stats(pipe, latents)
    video = pipe.vae.decode(latents * std + mean, return_dict=False)[0]
    return pipe.video_processor.postprocess_video(video, output_type=output_type)


#: Guidance of a render when the scenario does not set one: diffusers' and the Wan reference
#: code's default for T2V/I2V/FLF2V (sample_guide_scale 5.0).
RENDER_GUIDANCE = 5.0


@torch.no_grad()
def generate(
    pipe: Any,
    prompt: str,
    seed: int,
    width: int,
    height: int,
    frames: int,
    steps: int = 4,
    variant: str = "t2v",
    image: Any = None,
    last_image: Any = None,
    *,
    guidance: float = 1.0,
    negative_prompt: str = "",
    on_step: StepHook | None = None,
    output_type: str = "pt",
    pin_first_frame: bool = False,
) -> Any:
    """(B, F, C, H, W) frames in [0, 1] (or latents with ``output_type="latent"``).

    ``guidance`` > 1 runs true CFG against ``negative_prompt`` (both Wan 2.2 experts use it);
    the default 1.0 is the cheap preview setting (one forward per step). ``image`` (i2v,
    flf2v) is the first frame and ``last_image`` (flf2v) the last, PIL images or tensors;
    the pipeline resizes them to width x height.

    ``pin_first_frame`` (i2v, flf2v): after denoising, latent frame 0 is replaced by the
    image's own encoding, so the video starts on exactly the given picture (up to the VAE
    round trip). The model is trained to reproduce it and mostly does, with a slight colour
    shift; renders pin it so consecutive videos join on the same keyframe. Only the first
    frame can be pinned: the last latent frame also carries the 3 frames before it."""
    if variant in ("i2v", "flf2v") and image is None:
        raise InvalidInput(f"Wan {variant} needs a first-frame image")
    if variant == "flf2v" and last_image is None:
        raise InvalidInput("Wan flf2v needs a last-frame image")
    g = check_guidance(guidance)
    pin = pin_first_frame and variant in ("i2v", "flf2v")
    kwargs: dict[str, Any] = dict(
        prompt=prompt,
        negative_prompt=negative_prompt or None,
        height=height,
        width=width,
        num_frames=frames,
        num_inference_steps=steps,
        guidance_scale=g,
        generator=cpu_generator(seed),
        output_type="latent" if pin else output_type,
        max_sequence_length=max_sequence_length(pipe),
        **step_kwargs(on_step),
    )
    if getattr(pipe, "transformer_2", None) is not None:
        kwargs["guidance_scale_2"] = g
    if variant in ("i2v", "flf2v"):
        kwargs["image"] = image
        if variant == "flf2v":
            kwargs["last_image"] = last_image
    out = pipe(**kwargs).frames
    if not pin:
        return out
    first = encode_first_frame(pipe, image, width, height).to(out)
    out = torch.cat([first.expand(out.shape[0], -1, -1, -1, -1), out[:, :, 1:]], dim=2)
    return out if output_type == "latent" else decode_latents(pipe, out, output_type)
