"""Stable Diffusion XL (diffusers ``StableDiffusionXLPipeline``).

Stride: the VAE downsamples 8x and the UNet halves the latent twice more, so a latent side
must be a multiple of 4 for a clean round trip (8 for SD1.5's three downsamplers); we
require pixel sizes that are multiples of 64 for both SD families, the bucket step kohya's
sd-scripts uses, which keeps every UNet skip connection the same size without padding.

LoRA file layout: kohya ``lora_unet_<diffusers module, dots as underscores>.lora_down.weight``
/ ``.lora_up.weight`` / ``.alpha`` (e.g. ``lora_unet_down_blocks_1_attentions_0_transformer_
blocks_0_attn1_to_q``). ComfyUI's ``model_lora_keys_unet`` builds exactly these names from
``comfy.utils.unet_to_diffusers`` for SDXL and SD1.5 UNets; diffusers' SD/SDXL
``lora_state_dict`` detects the ``lora_unet_`` prefix and converts with
``_convert_non_diffusers_lora_to_diffusers`` (alpha -> network_alphas).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from loraforge.trainer import dora
from loraforge.trainer.family import FamilyDefaults, peft_to_kohya_keys
from loraforge.trainer.inference import StepHook, check_guidance, cpu_generator, step_kwargs
from loraforge.trainer.tiny_text import (
    TINY_BOS_ID,
    TINY_EOS_ID,
    TINY_PAD_ID,
    TINY_VOCAB_SIZE,
    tiny_tokenizer,
)

FAMILY = "sdxl"
STRIDE = 64
VARIANTS = ("base",)
NATIVE_RESOLUTION = 1024
TARGET_MODULES = ("to_q", "to_k", "to_v", "to_out.0")

DEFAULTS = FamilyDefaults(
    rank=32,
    alpha=16,
    learning_rate=1e-4,
    lr_scheduler="cosine",
    warmup_steps=50,
    objective="epsilon",
    timestep_sampling="uniform",
    flow_shift=1.0,
    resolution="1024",
    frames=1,
    batch_size=1,
    steps=1500,
    target_modules=TARGET_MODULES,
    reasoning=(
        "UNet attention projections (to_q/to_k/to_v/to_out.0) are kohya's default target; "
        "rank 32 / alpha 16 and lr 1e-4 with cosine decay are the common SDXL character "
        "settings (seed 002: 1000-2000 steps for diverse photos). SDXL was trained at 1024x1024 "
        "buckets; lower resolutions work but degrade."
    ),
)


def _tiny_clip(seed: int, with_projection: bool) -> Any:
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    cfg = CLIPTextConfig(
        vocab_size=TINY_VOCAB_SIZE,
        hidden_size=32,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=3,
        max_position_embeddings=77,
        projection_dim=32,
        pad_token_id=TINY_PAD_ID,
        bos_token_id=TINY_BOS_ID,
        eos_token_id=TINY_EOS_ID,
        hidden_act="gelu",
    )
    cls = CLIPTextModelWithProjection if with_projection else CLIPTextModel
    return cls(cfg).eval()


def tiny_vae(seed: int, latent_channels: int = 4, **kw: Any) -> Any:
    """An 8x AutoencoderKL (four blocks), like the real SD/SDXL/Flux VAEs, only narrow."""
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=latent_channels,
        block_out_channels=(8, 8, 16, 16),
        layers_per_block=1,
        norm_num_groups=4,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        sample_size=64,
        **kw,
    ).eval()


def build_tiny(variant: str, seed: int = 0) -> Any:
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel

    torch.manual_seed(seed + 2)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=8,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 1),
        projection_class_embeddings_input_dim=80,
        cross_attention_dim=64,
        norm_num_groups=16,
    )
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        timestep_spacing="leading",
        steps_offset=1,
        prediction_type="epsilon",
    )
    return StableDiffusionXLPipeline(
        vae=tiny_vae(seed + 1, scaling_factor=0.13025),
        text_encoder=_tiny_clip(seed + 3, False),
        text_encoder_2=_tiny_clip(seed + 4, True),
        tokenizer=tiny_tokenizer(77),
        tokenizer_2=tiny_tokenizer(77),
        unet=unet,
        scheduler=scheduler,
        force_zeros_for_empty_prompt=True,
    )


def load_pretrained(path: Path, variant: str, dtype: torch.dtype) -> Any:
    from diffusers import StableDiffusionXLPipeline

    pipe = StableDiffusionXLPipeline.from_pretrained(
        str(path), torch_dtype=dtype, local_files_only=True
    )
    pipe.vae.to(torch.float32)  # the SDXL VAE overflows in fp16
    return pipe


def denoisers(pipe: Any) -> dict[str, torch.nn.Module]:
    return {"unet": pipe.unet}


def model_configs(pipe: Any) -> list[Any]:
    return [pipe.vae.config, pipe.unet.config, pipe.text_encoder.config, pipe.text_encoder_2.config]


@torch.no_grad()
def encode_text(pipe: Any, captions: list[str], device: torch.device) -> dict[str, torch.Tensor]:
    embeds, _, pooled, _ = pipe.encode_prompt(
        captions, device=device, num_images_per_prompt=1, do_classifier_free_guidance=False
    )
    return {"prompt_embeds": embeds.float().cpu(), "pooled_prompt_embeds": pooled.float().cpu()}


@torch.no_grad()
def encode_media(
    pipe: Any, pixels: torch.Tensor, device: torch.device, variant: str
) -> dict[str, torch.Tensor]:
    """pixels (B, C, 1, H, W) in [-1, 1] -> scaled latents (B, 4, H/8, W/8)."""
    x = pixels[:, :, 0].to(device, next(pipe.vae.parameters()).dtype)
    z = pipe.vae.encode(x).latent_dist.mode().float() * pipe.vae.config.scaling_factor
    return {"latents": z.cpu()}


def predict(
    pipe: Any,
    model: torch.nn.Module,
    noisy: torch.Tensor,
    timesteps: torch.Tensor,
    batch: dict[str, torch.Tensor],
    variant: str,
) -> torch.Tensor:
    b, _, h, w = noisy.shape
    px_h, px_w = h * pipe.vae_scale_factor, w * pipe.vae_scale_factor
    # (original size, crop top-left, target size): what the pipeline passes by default.
    time_ids = torch.tensor(
        [[px_h, px_w, 0, 0, px_h, px_w]], dtype=noisy.dtype, device=noisy.device
    ).repeat(b, 1)
    return model(
        noisy,
        timesteps,
        encoder_hidden_states=batch["prompt_embeds"].to(noisy),
        added_cond_kwargs={
            "text_embeds": batch["pooled_prompt_embeds"].to(noisy),
            "time_ids": time_ids,
        },
        return_dict=False,
    )[0]


def to_comfy(peft_sd: dict[str, torch.Tensor], alpha: float) -> dict[str, torch.Tensor]:
    return peft_to_kohya_keys(peft_sd, alpha)


def output_files(variant: str, name: str) -> dict[str, str]:
    return {"unet": f"{name}.safetensors"}


def load_lora_into_pipeline(pipe: Any, files: dict[str, Path], adapter_name: str) -> None:
    dora.load_lora(pipe, files["unet"], "unet", to_comfy, adapter_name, "unet")


#: Guidance of a render when the scenario does not set one: diffusers' SDXL default (the
#: Stability reference samples use 5-7).
RENDER_GUIDANCE = 5.0


@torch.no_grad()
def generate(
    pipe: Any,
    prompt: str,
    seed: int,
    width: int,
    height: int,
    frames: int = 1,
    steps: int = 4,
    variant: str = "base",
    *,
    guidance: float = 1.0,
    negative_prompt: str = "",
    on_step: StepHook | None = None,
    output_type: str = "pt",
    **_: Any,
) -> Any:
    """(B, C, H, W) images in [0, 1]. ``guidance`` > 1 runs true CFG against
    ``negative_prompt``; the default 1.0 is the cheap preview setting."""
    return pipe(
        prompt=prompt,
        negative_prompt=negative_prompt or None,
        width=width,
        height=height,
        num_inference_steps=steps,
        guidance_scale=check_guidance(guidance),
        generator=cpu_generator(seed),
        output_type=output_type,
        **step_kwargs(on_step),
    ).images
