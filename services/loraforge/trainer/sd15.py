"""Stable Diffusion 1.5 (diffusers ``StableDiffusionPipeline``).

Same stride rule and LoRA file layout as :mod:`loraforge.trainer.sdxl` (kohya
``lora_unet_<diffusers module>`` names, which is also what kohya sd-scripts itself writes
for SD 1.x since it trains on the diffusers UNet layout). An SD1.5 LoRA does not load into
SDXL: the cross-attention width differs (768 vs 2048) and the block layout differs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from loraforge.trainer import dora
from loraforge.trainer.family import FamilyDefaults, peft_to_kohya_keys
from loraforge.trainer.inference import StepHook, check_guidance, cpu_generator, step_kwargs
from loraforge.trainer.sdxl import tiny_vae
from loraforge.trainer.tiny_text import (
    TINY_BOS_ID,
    TINY_EOS_ID,
    TINY_PAD_ID,
    TINY_VOCAB_SIZE,
    tiny_tokenizer,
)

FAMILY = "sd1.5"
STRIDE = 64
VARIANTS = ("base",)
NATIVE_RESOLUTION = 512
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
    resolution="512",
    frames=1,
    batch_size=2,
    steps=1500,
    target_modules=TARGET_MODULES,
    reasoning=(
        "kohya sd-scripts defaults for SD1.5 character LoRAs: UNet attention, rank 32 / alpha "
        "16, lr 1e-4 with cosine decay, 512 px (the model's native size), batch 2."
    ),
)


def build_tiny(variant: str, seed: int = 0) -> Any:
    from diffusers import DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed + 2)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=8,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=4,
        norm_num_groups=16,
    )
    torch.manual_seed(seed + 3)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=TINY_VOCAB_SIZE,
            hidden_size=32,
            intermediate_size=37,
            num_attention_heads=4,
            num_hidden_layers=3,
            max_position_embeddings=77,
            pad_token_id=TINY_PAD_ID,
            bos_token_id=TINY_BOS_ID,
            eos_token_id=TINY_EOS_ID,
        )
    ).eval()
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
        prediction_type="epsilon",
    )
    return StableDiffusionPipeline(
        vae=tiny_vae(seed + 1, scaling_factor=0.18215),
        text_encoder=text_encoder,
        tokenizer=tiny_tokenizer(77),
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def load_pretrained(path: Path, variant: str, dtype: torch.dtype) -> Any:
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline.from_pretrained(
        str(path),
        torch_dtype=dtype,
        local_files_only=True,
        safety_checker=None,
        requires_safety_checker=False,
    )


def denoisers(pipe: Any) -> dict[str, torch.nn.Module]:
    return {"unet": pipe.unet}


def model_configs(pipe: Any) -> list[Any]:
    return [pipe.vae.config, pipe.unet.config, pipe.text_encoder.config]


@torch.no_grad()
def encode_text(pipe: Any, captions: list[str], device: torch.device) -> dict[str, torch.Tensor]:
    embeds, _ = pipe.encode_prompt(captions, device, 1, False)
    return {"prompt_embeds": embeds.float().cpu()}


@torch.no_grad()
def encode_media(
    pipe: Any, pixels: torch.Tensor, device: torch.device, variant: str
) -> dict[str, torch.Tensor]:
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
    return model(
        noisy, timesteps, encoder_hidden_states=batch["prompt_embeds"].to(noisy), return_dict=False
    )[0]


def to_comfy(peft_sd: dict[str, torch.Tensor], alpha: float) -> dict[str, torch.Tensor]:
    return peft_to_kohya_keys(peft_sd, alpha)


def output_files(variant: str, name: str) -> dict[str, str]:
    return {"unet": f"{name}.safetensors"}


def load_lora_into_pipeline(pipe: Any, files: dict[str, Path], adapter_name: str) -> None:
    dora.load_lora(pipe, files["unet"], "unet", to_comfy, adapter_name, "unet")


#: Guidance of a render when the scenario does not set one: the SD1.5 reference and diffusers
#: default.
RENDER_GUIDANCE = 7.5


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
