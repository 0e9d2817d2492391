"""Export a scenario as a ComfyUI API-format workflow (the JSON `/prompt` accepts).

Same graph as our own render: base model loaders, a LoRA loader chain with the scenario's
weights, text encoders, a sampler per shot, then per pair a first/last-frame video node fed
by the two decoded keyframes, decode, and a video combine of all transitions. Model file
names are ComfyUI's usual ones for each family; users point them at their own files. LoRAs
are named `<adapter name>.safetensors`: copy (or `loraforge lora pull`) each LoRA under that
name into ComfyUI's models/loras.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from loraforge.render.scenario import Scenario, ScenarioLora, Stage

Link = list[Any]  # [node_id, output_index]

# Standard file names from ComfyUI's example workflows; users rename to match their install.
IMAGE_MODEL_FILES = {
    "sdxl": {"ckpt_name": "sd_xl_base_1.0.safetensors"},
    "sd1.5": {"ckpt_name": "v1-5-pruned-emaonly.safetensors"},
    "flux.1-dev": {
        "unet_name": "flux1-dev.safetensors",
        "clip_name1": "clip_l.safetensors",
        "clip_name2": "t5xxl_fp16.safetensors",
        "vae_name": "ae.safetensors",
    },
}
VIDEO_MODEL_FILES = {
    "flf2v": "wan2.1_flf2v_720p_14B_fp16.safetensors",
    "i2v": "wan2.1_i2v_720p_14B_fp16.safetensors",
    "t2v": "wan2.1_t2v_14B_fp16.safetensors",
    "t2v-1.3b": "wan2.1_t2v_1.3B_fp16.safetensors",
}
WAN_TEXT_ENCODER = "umt5_xxl_fp8_e4m3fn_scaled.safetensors"
WAN_VAE = "wan_2.1_vae.safetensors"
WAN_CLIP_VISION = "clip_vision_h.safetensors"


def _family(preset: str) -> str:
    name = preset.removeprefix("tiny-")
    if name.startswith("flux"):
        return "flux.1-dev"
    if name.startswith("sd1.5"):
        return "sd1.5"
    return "sdxl"


def _video_mode(preset: str) -> str:
    name = preset.removeprefix("tiny-")
    if "flf2v" in name:
        return "flf2v"
    if "i2v" in name:
        return "i2v"
    return "t2v-1.3b" if "1.3b" in name else "t2v"


def _guidance(scenario: Scenario, preset: str) -> float:
    """The scenario's cfg, or the family's render default (the same number render uses)."""
    if scenario.cfg is not None:
        return scenario.cfg
    # lazy: the family modules import torch, and the CLI exports workflows without it
    from loraforge.trainer.presets import get_preset

    return float(get_preset(preset).module.RENDER_GUIDANCE)


def _lora_file(lora: ScenarioLora) -> str:
    """The file name ComfyUI should find in models/loras: the scenario's adapter name, since
    trained files are all called best/last.safetensors and would collide by basename."""
    return f"{lora.name}.safetensors"


@dataclass
class _Graph:
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)

    def add(self, class_type: str, title: str, **inputs: Any) -> str:
        node_id = str(len(self.nodes) + 1)
        self.nodes[node_id] = {
            "class_type": class_type,
            "inputs": inputs,
            "_meta": {"title": title},
        }
        return node_id


def export_workflow(scenario: Scenario) -> dict[str, dict[str, Any]]:
    g = _Graph()
    family = _family(scenario.image_preset)
    w, h = scenario.output.width, scenario.output.height

    # Image model + LoRA chain.
    files = IMAGE_MODEL_FILES[family]
    if family == "flux.1-dev":
        unet = g.add(
            "UNETLoader", "Flux model", unet_name=files["unet_name"], weight_dtype="default"
        )
        clip_node = g.add(
            "DualCLIPLoader",
            "Flux text encoders",
            clip_name1=files["clip_name1"],
            clip_name2=files["clip_name2"],
            type="flux",
        )
        vae_node = g.add("VAELoader", "Flux VAE", vae_name=files["vae_name"])
        model, clip, vae = [unet, 0], [clip_node, 0], [vae_node, 0]
    else:
        ckpt = g.add("CheckpointLoaderSimple", f"{family} checkpoint", ckpt_name=files["ckpt_name"])
        model, clip, vae = [ckpt, 0], [ckpt, 1], [ckpt, 2]
    for lora in (lo for lo in scenario.loras if lo.stage is Stage.IMAGE):
        node = g.add(
            "LoraLoader",
            f"LoRA {lora.name} ({lora.type})",
            model=model,
            clip=clip,
            lora_name=_lora_file(lora),
            strength_model=lora.effective_weight,
            strength_clip=lora.effective_weight,
        )
        model, clip = [node, 0], [node, 1]

    keyframes: list[Link] = []
    for i, shot in enumerate(scenario.shots, start=1):
        if shot.image:
            # The user's own keyframe: put the file (its name below) in ComfyUI's input/ folder.
            loaded = g.add("LoadImage", f"shot {i} image", image=shot.image.rsplit("/", 1)[-1])
            scaled = g.add(
                "ImageScale",
                f"shot {i} fit",
                image=[loaded, 0],
                upscale_method="lanczos",
                width=w,
                height=h,
                crop="center",
            )
            keyframes.append([scaled, 0])
            continue
        pos = g.add("CLIPTextEncode", f"shot {i} prompt", text=shot.prompt, clip=clip)
        neg = g.add("CLIPTextEncode", f"shot {i} negative", text=shot.negative_prompt, clip=clip)
        positive: Link = [pos, 0]
        if family == "flux.1-dev":
            distilled = scenario.distilled_guidance
            if distilled is None:
                # lazy: trainer.flux imports torch (see _guidance)
                from loraforge.trainer.flux import DISTILLED_GUIDANCE as distilled
            positive = [
                g.add(
                    "FluxGuidance", f"shot {i} guidance", conditioning=positive, guidance=distilled
                ),
                0,
            ]
            latent = g.add(
                "EmptySD3LatentImage", f"shot {i} latent", width=w, height=h, batch_size=1
            )
        else:
            latent = g.add("EmptyLatentImage", f"shot {i} latent", width=w, height=h, batch_size=1)
        sample = g.add(
            "KSampler",
            f"shot {i} sampler",
            model=model,
            seed=shot.seed,
            steps=scenario.steps,
            cfg=_guidance(scenario, scenario.image_preset),
            sampler_name="euler",
            scheduler="normal",
            positive=positive,
            negative=[neg, 0],
            latent_image=[latent, 0],
            denoise=1.0,
        )
        image = g.add("VAEDecode", f"shot {i} decode", samples=[sample, 0], vae=vae)
        g.add(
            "SaveImage",
            f"shot {i} save",
            images=[image, 0],
            filename_prefix=f"{scenario.name}/keyframe_{i:02d}",
        )
        keyframes.append([image, 0])

    pairs = scenario.pairs()
    if not pairs:
        return g.nodes

    # Video model + its LoRA chain.
    mode = _video_mode(scenario.video_preset)
    vmodel: Link = [
        g.add("UNETLoader", "Wan model", unet_name=VIDEO_MODEL_FILES[mode], weight_dtype="default"),
        0,
    ]
    vclip: Link = [
        g.add("CLIPLoader", "Wan text encoder", clip_name=WAN_TEXT_ENCODER, type="wan"),
        0,
    ]
    vvae: Link = [g.add("VAELoader", "Wan VAE", vae_name=WAN_VAE), 0]
    for lora in (lo for lo in scenario.loras if lo.stage is Stage.VIDEO):
        vmodel = [
            g.add(
                "LoraLoaderModelOnly",
                f"LoRA {lora.name} ({lora.type})",
                model=vmodel,
                lora_name=_lora_file(lora),
                strength_model=lora.effective_weight,
            ),
            0,
        ]
    vmodel = [g.add("ModelSamplingSD3", "Wan shift", model=vmodel, shift=8.0), 0]
    vision = None
    if mode in {"flf2v", "i2v"}:
        vision = [g.add("CLIPVisionLoader", "CLIP vision", clip_name=WAN_CLIP_VISION), 0]

    film: Link | None = None
    fps = scenario.transition_for(0).fps
    for p, (a, b) in enumerate(pairs, start=1):
        tr = scenario.transition_for(p - 1)
        text = tr.prompt or scenario.shots[b].prompt
        pos = g.add("CLIPTextEncode", f"transition {p} prompt", text=text, clip=vclip)
        neg = g.add(
            "CLIPTextEncode",
            f"transition {p} negative",
            text=scenario.shots[b].negative_prompt,
            clip=vclip,
        )
        if mode == "flf2v":
            start_vis = g.add(
                "CLIPVisionEncode",
                f"transition {p} start vision",
                clip_vision=vision,
                image=keyframes[a],
                crop="none",
            )
            end_vis = g.add(
                "CLIPVisionEncode",
                f"transition {p} end vision",
                clip_vision=vision,
                image=keyframes[b],
                crop="none",
            )
            cond = g.add(
                "WanFirstLastFrameToVideo",
                f"transition {p} first/last frame",
                positive=[pos, 0],
                negative=[neg, 0],
                vae=vvae,
                width=w,
                height=h,
                length=tr.frames,
                batch_size=1,
                clip_vision_start_image=[start_vis, 0],
                clip_vision_end_image=[end_vis, 0],
                start_image=keyframes[a],
                end_image=keyframes[b],
            )
            positive, negative, video_latent = [cond, 0], [cond, 1], [cond, 2]
        elif mode == "i2v":
            start_vis = g.add(
                "CLIPVisionEncode",
                f"transition {p} start vision",
                clip_vision=vision,
                image=keyframes[a],
                crop="none",
            )
            cond = g.add(
                "WanImageToVideo",
                f"transition {p} image to video",
                positive=[pos, 0],
                negative=[neg, 0],
                vae=vvae,
                width=w,
                height=h,
                length=tr.frames,
                batch_size=1,
                clip_vision_output=[start_vis, 0],
                start_image=keyframes[a],
            )
            positive, negative, video_latent = [cond, 0], [cond, 1], [cond, 2]
        else:
            empty = g.add(
                "EmptyHunyuanLatentVideo",
                f"transition {p} latent",
                width=w,
                height=h,
                length=tr.frames,
                batch_size=1,
            )
            positive, negative, video_latent = [pos, 0], [neg, 0], [empty, 0]
        sample = g.add(
            "KSampler",
            f"transition {p} sampler",
            model=vmodel,
            seed=scenario.shots[a].seed,
            steps=scenario.steps,
            cfg=_guidance(scenario, scenario.video_preset),
            sampler_name="uni_pc",
            scheduler="simple",
            positive=positive,
            negative=negative,
            latent_image=video_latent,
            denoise=1.0,
        )
        frames: Link = [
            g.add("VAEDecode", f"transition {p} decode", samples=[sample, 0], vae=vvae),
            0,
        ]
        video = g.add("CreateVideo", f"transition {p} video", images=frames, fps=float(tr.fps))
        g.add(
            "SaveVideo",
            f"transition {p} save",
            video=[video, 0],
            filename_prefix=f"{scenario.name}/transition_{p:02d}",
            format="mp4",
            codec="h264",
        )
        film = (
            frames
            if film is None
            else [g.add("ImageBatch", f"film up to {p}", image1=film, image2=frames), 0]
        )

    combined = g.add("CreateVideo", "film", images=film, fps=float(fps))
    g.add(
        "SaveVideo",
        "film save",
        video=[combined, 0],
        filename_prefix=f"{scenario.name}/film",
        format="mp4",
        codec="h264",
    )
    return g.nodes
