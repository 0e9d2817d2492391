"""FLUX.1 (diffusers ``FluxPipeline``): rectified-flow transformer, CLIP-L + T5 text encoders.

Stride: VAE 8x, then latents are packed 2x2 into tokens, so sides are multiples of 16.

LoRA file layout: diffusers / PEFT names under ``transformer.``:
``transformer.<diffusers module>.lora_A.weight`` / ``.lora_B.weight`` / ``.alpha`` (e.g.
``transformer.transformer_blocks.0.attn.to_q.lora_A.weight``). ComfyUI's
``model_lora_keys_unet`` maps ``transformer.<diffusers key>`` for Flux models through
``comfy.utils.flux_to_diffusers`` ("regular diffusers flux lora format"), including the
split q/k/v of the fused single-block ``linear1``; diffusers' ``FluxLoraLoaderMixin`` loads
it natively (``.alpha`` entries become ``network_alphas``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from loraforge.runtime.errors import InvalidInput
from loraforge.trainer import dora
from loraforge.trainer.family import FamilyDefaults, peft_to_diffusion_model_keys
from loraforge.trainer.inference import StepHook, check_guidance, cpu_generator, step_kwargs
from loraforge.trainer.sdxl import tiny_vae
from loraforge.trainer.tiny_text import (
    TINY_BOS_ID,
    TINY_EOS_ID,
    TINY_PAD_ID,
    TINY_VOCAB_SIZE,
    tiny_tokenizer,
)

FAMILY = "flux"
STRIDE = 16
VARIANTS = ("dev",)
TARGET_MODULES = (
    "attn.to_q",
    "attn.to_k",
    "attn.to_v",
    "attn.to_out.0",
    "attn.add_q_proj",
    "attn.add_k_proj",
    "attn.add_v_proj",
    "attn.to_add_out",
    "ff.net.0.proj",
    "ff.net.2",
    "ff_context.net.0.proj",
    "ff_context.net.2",
    "proj_mlp",
    "proj_out",
)
TRAIN_GUIDANCE = 1.0  # guidance-distilled dev: train with guidance embedding 1.0

DEFAULTS = FamilyDefaults(
    rank=16,
    alpha=16,
    learning_rate=1e-4,
    lr_scheduler="constant",
    warmup_steps=20,
    objective="flow",
    timestep_sampling="logit_normal",
    flow_shift=1.0,
    resolution="1024",
    frames=1,
    batch_size=1,
    steps=1500,
    target_modules=TARGET_MODULES,
    reasoning=(
        "attention + feed-forward of double and single blocks (ai-toolkit / SimpleTuner "
        "'all' targets); rank 16 is enough for a character on Flux (12B, wide layers), lr "
        "1e-4 constant. Logit-normal timestep sampling (SD3 paper, sd-scripts' 'sigmoid') "
        "concentrates on mid noise. The guidance embedding is fed 1.0 while training."
    ),
)


def build_tiny(variant: str, seed: int = 0) -> Any:
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    torch.manual_seed(seed + 2)
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=16,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,
        pooled_projection_dim=32,
        axes_dims_rope=[4, 4, 8],
        guidance_embeds=True,
    )
    torch.manual_seed(seed + 3)
    clip = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=TINY_VOCAB_SIZE,
            hidden_size=32,
            intermediate_size=37,
            num_attention_heads=4,
            num_hidden_layers=2,
            max_position_embeddings=77,
            pad_token_id=TINY_PAD_ID,
            bos_token_id=TINY_BOS_ID,
            eos_token_id=TINY_EOS_ID,
        )
    ).eval()
    torch.manual_seed(seed + 4)
    t5 = T5EncoderModel(
        # PretrainedConfig takes decoder_start_token_id (T5Config's signature does not list it)
        T5Config(
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
    return FluxPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=tiny_vae(
            seed + 1,
            scaling_factor=0.3611,
            shift_factor=0.1159,
            use_quant_conv=False,
            use_post_quant_conv=False,
        ),
        text_encoder=clip,
        tokenizer=tiny_tokenizer(77),
        text_encoder_2=t5,
        tokenizer_2=tiny_tokenizer(64),
        transformer=transformer,
    )


def load_pretrained(path: Path, variant: str, dtype: torch.dtype) -> Any:
    from diffusers import FluxPipeline

    return FluxPipeline.from_pretrained(str(path), torch_dtype=dtype, local_files_only=True)


def denoisers(pipe: Any) -> dict[str, torch.nn.Module]:
    return {"transformer": pipe.transformer}


def model_configs(pipe: Any) -> list[Any]:
    return [
        pipe.vae.config,
        pipe.transformer.config,
        pipe.text_encoder.config,
        pipe.text_encoder_2.config,
    ]


def max_sequence_length(pipe: Any) -> int:
    return min(512, int(getattr(pipe.tokenizer_2, "model_max_length", 512) or 512))


@torch.no_grad()
def encode_text(pipe: Any, captions: list[str], device: torch.device) -> dict[str, torch.Tensor]:
    embeds, pooled, _ = pipe.encode_prompt(
        captions,
        prompt_2=None,
        device=device,
        num_images_per_prompt=1,
        max_sequence_length=max_sequence_length(pipe),
    )
    return {"prompt_embeds": embeds.float().cpu(), "pooled_prompt_embeds": pooled.float().cpu()}


@torch.no_grad()
def encode_media(
    pipe: Any, pixels: torch.Tensor, device: torch.device, variant: str
) -> dict[str, torch.Tensor]:
    """pixels (B, C, 1, H, W) -> (B, C_lat, H/8, W/8) latents, shifted and scaled."""
    x = pixels[:, :, 0].to(device, next(pipe.vae.parameters()).dtype)
    z = pipe.vae.encode(x).latent_dist.mode().float()
    z = (z - pipe.vae.config.shift_factor) * pipe.vae.config.scaling_factor
    return {"latents": z.cpu()}


def pack(pipe: Any, latents: torch.Tensor) -> torch.Tensor:
    b, c, h, w = latents.shape
    return pipe._pack_latents(latents, b, c, h, w)


def predict(
    pipe: Any,
    model: torch.nn.Module,
    noisy: torch.Tensor,
    sigmas: torch.Tensor,
    batch: dict[str, torch.Tensor],
    variant: str,
) -> torch.Tensor:
    """Works on unpacked (B, C, h, w) latents: packs, runs, unpacks."""
    b, c, h, w = noisy.shape
    packed = pack(pipe, noisy)
    img_ids = pipe._prepare_latent_image_ids(b, h // 2, w // 2, noisy.device, noisy.dtype)
    prompt_embeds = batch["prompt_embeds"].to(noisy)
    txt_ids = torch.zeros(prompt_embeds.shape[1], 3, device=noisy.device, dtype=noisy.dtype)
    guidance = None
    config: Any = model.config  # diffusers' config (Module's typing knows tensors and modules)
    if config.guidance_embeds:
        guidance = torch.full((b,), TRAIN_GUIDANCE, device=noisy.device, dtype=torch.float32)
    out = model(
        hidden_states=packed,
        timestep=sigmas.to(noisy),
        guidance=guidance,
        pooled_projections=batch["pooled_prompt_embeds"].to(noisy),
        encoder_hidden_states=prompt_embeds,
        txt_ids=txt_ids,
        img_ids=img_ids,
        return_dict=False,
    )[0]
    # unpack (B, h/2*w/2, C*4) -> (B, C, h, w)
    out = out.view(b, h // 2, w // 2, c, 2, 2).permute(0, 3, 1, 4, 2, 5)
    return out.reshape(b, c, h, w)


def to_comfy(peft_sd: dict[str, torch.Tensor], alpha: float) -> dict[str, torch.Tensor]:
    return peft_to_diffusion_model_keys(peft_sd, alpha, prefix="transformer.")


def output_files(variant: str, name: str) -> dict[str, str]:
    return {"transformer": f"{name}.safetensors"}


def load_lora_into_pipeline(pipe: Any, files: dict[str, Path], adapter_name: str) -> None:
    dora.load_lora(pipe, files["transformer"], "transformer", to_comfy, adapter_name, "transformer")


#: Distilled guidance (the embedding FLUX.1-dev was distilled with) of renders and previews:
#: Black Forest Labs' reference and diffusers' default.
DISTILLED_GUIDANCE = 3.5
#: True CFG of a render when the scenario does not set one: off (dev is guidance-distilled;
#: true CFG doubles the cost and only helps with a negative prompt, at 1.5-4).
RENDER_GUIDANCE = 1.0


@torch.no_grad()
def generate(
    pipe: Any,
    prompt: str,
    seed: int,
    width: int,
    height: int,
    frames: int = 1,
    steps: int = 4,
    variant: str = "dev",
    *,
    guidance: float = 1.0,
    negative_prompt: str = "",
    distilled_guidance: float = DISTILLED_GUIDANCE,
    on_step: StepHook | None = None,
    output_type: str = "pt",
    **_: Any,
) -> Any:
    """(B, C, H, W) images in [0, 1]. ``distilled_guidance`` is the embedded guidance of the
    dev model (one forward); ``guidance`` > 1 with a ``negative_prompt`` adds true CFG
    (diffusers' ``true_cfg_scale``: a second forward on the negative prompt)."""
    g = check_guidance(guidance)
    if g > 1.0 and not negative_prompt:
        raise InvalidInput(
            f"Flux true CFG (guidance {g}) needs a negative prompt; Flux dev is "
            "guidance-distilled: set distilled guidance instead, or add a "
            "negative prompt"
        )
    return pipe(
        prompt=prompt,
        negative_prompt=negative_prompt or None,
        true_cfg_scale=g,
        width=width,
        height=height,
        num_inference_steps=steps,
        guidance_scale=check_guidance(distilled_guidance),
        generator=cpu_generator(seed),
        output_type=output_type,
        max_sequence_length=max_sequence_length(pipe),
        **step_kwargs(on_step),
    ).images
