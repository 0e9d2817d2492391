"""Render on the configured device and dtype, with guidance, negative prompts, the user's own
keyframes, the memory planner's choices for real model sizes, and bad input images refused.

Input images are real photos (skimage's astronaut and coffee); the memory plans use the real
Wan 2.1 architectures built on the meta device (no memory, no weights)."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
import torch
from PIL import Image

from loraforge.render.device import GiB, PlacementError, plan_memory, resolve_dtype
from loraforge.render.executor import Placement, ScenarioRenderer, fit_image
from loraforge.render.inputs import MAX_PIXELS, check_image_file, check_image_key
from loraforge.render.scenario import parse_scenario
from loraforge.runtime.errors import InvalidInput
from loraforge.runtime.keys import ProjectRef

pytestmark = pytest.mark.timeout(240)

KEYFRAME = """
image_preset: tiny-sdxl
output: {{width: 64, height: 64}}
steps: 2
{extra}
shots:
  - {{prompt: "a red fox in snow", seed: 5{negative}}}
"""


def _keyframe(
    tmp_path: Path,
    name: str,
    *,
    extra: str = "",
    negative: str = "",
    placement: Placement | None = None,
) -> tuple[np.ndarray, dict]:
    placement = placement or Placement(device="cpu")
    scenario = parse_scenario(
        KEYFRAME.format(
            extra=extra, negative=f', negative_prompt: "{negative}"' if negative else ""
        )
    )
    renderer = ScenarioRenderer(lambda lora: Path("/nonexistent"), placement=placement)
    result = renderer.render(scenario, tmp_path / name)
    return np.asarray(Image.open(result.keyframes[0]), dtype=np.int16), result.placement


def test_render_pipeline_runs_in_the_requested_dtype(tmp_path):
    img, placement = _keyframe(
        tmp_path, "bf16", extra="cfg: 1", placement=Placement(device="cpu", dtype="bf16")
    )
    assert placement["image"]["weights_dtype"] == "bfloat16"
    assert placement["image"]["weights_device"] == "cpu"
    assert img.std() > 0  # a real picture came out of the bf16 pipeline
    assert resolve_dtype("auto", torch.device("cpu")) == torch.float32  # the CPU default
    assert resolve_dtype("auto", torch.device("cuda")) == torch.bfloat16


def test_cfg_and_negative_prompt_change_the_keyframe(tmp_path):
    off, _ = _keyframe(tmp_path, "cfg1", extra="cfg: 1")
    on, _ = _keyframe(tmp_path, "cfg5", extra="cfg: 5")
    neg, _ = _keyframe(tmp_path, "neg", extra="cfg: 5", negative="blurry, watermark")
    assert np.abs(off - on).mean() > 0.5, "cfg 5 rendered the same keyframe as cfg 1"
    assert np.abs(on - neg).mean() > 0.5, "the negative prompt did not change the keyframe"


def _photo(name: str) -> Image.Image:
    import skimage.data

    return Image.fromarray(getattr(skimage.data, name)())


def _first_frame(video: Path) -> np.ndarray:
    reader = imageio_ffmpeg.read_frames(str(video))
    meta = next(reader)
    w, h = meta["size"]
    frame = np.frombuffer(next(reader), dtype=np.uint8).reshape(h, w, 3)
    reader.close()
    return frame.astype(np.int16)


def test_i2v_shot_starts_on_the_given_image(tmp_path):
    astronaut = tmp_path / "astronaut.png"
    _photo("astronaut").save(astronaut)
    scenario = parse_scenario("""
video_preset: tiny-wan2.1-i2v
pairing: each
output: {width: 96, height: 64}
steps: 2
transition: {frames: 5, fps: 8, prompt: "she turns her head"}
shots:
  - {prompt: "an astronaut portrait", image: "acme/jane/sources/astro.png"}
""")
    seen = []

    def resolve(key: str) -> Path:
        seen.append(key)
        return astronaut

    renderer = ScenarioRenderer(
        lambda lora: Path("/nonexistent"), resolve_image=resolve, placement=Placement(device="cpu")
    )
    result = renderer.render(scenario, tmp_path / "out")
    assert seen == ["acme/jane/sources/astro.png"]
    assert "image" not in result.placement  # every keyframe was given: no image model loaded
    first = _first_frame(result.transitions[0])
    want = np.asarray(fit_image(_photo("astronaut"), 96, 64), dtype=np.int16)
    other = np.asarray(fit_image(_photo("coffee"), 96, 64), dtype=np.int16)
    err = np.abs(first - want).mean()
    assert err < 6, f"the video's first frame is not the given photo (mean error {err:.1f})"
    assert np.abs(first - other).mean() > 5 * err


def _last_frame(video: Path) -> np.ndarray:
    reader = imageio_ffmpeg.read_frames(str(video))
    meta = next(reader)
    w, h = meta["size"]
    last = None
    for raw in reader:
        last = raw
    reader.close()
    return np.frombuffer(last, dtype=np.uint8).reshape(h, w, 3).astype(np.int16)


def test_flf2v_between_two_given_images_and_its_comfyui_export(tmp_path):
    from loraforge.render.comfyui import export_workflow

    files = {}
    for name in ("astronaut", "coffee"):
        files[f"acme/jane/sources/{name}.png"] = tmp_path / f"{name}.png"
        _photo(name).save(files[f"acme/jane/sources/{name}.png"])
    scenario = parse_scenario("""
video_preset: tiny-wan2.1-flf2v
output: {width: 96, height: 64}
steps: 1
transition: {frames: 5, fps: 8}
shots:
  - {prompt: "an astronaut", image: "acme/jane/sources/astronaut.png"}
  - {prompt: "a cup of coffee", image: "acme/jane/sources/coffee.png"}
""")
    renderer = ScenarioRenderer(
        lambda lora: Path("/nonexistent"),
        resolve_image=files.__getitem__,
        placement=Placement(device="cpu"),
    )
    video = renderer.render(scenario, tmp_path / "out").transitions[0]
    first, last = _first_frame(video), _last_frame(video)
    astro = np.asarray(fit_image(_photo("astronaut"), 96, 64), dtype=np.int16)
    coffee = np.asarray(fit_image(_photo("coffee"), 96, 64), dtype=np.int16)
    assert np.abs(first - astro).mean() < 6 and np.abs(last - coffee).mean() < 6
    # the same scenario for ComfyUI: the given images are loaded, fitted and fed to the
    # first/last-frame node instead of sampled keyframes
    nodes = export_workflow(scenario)
    loads = [n["inputs"]["image"] for n in nodes.values() if n["class_type"] == "LoadImage"]
    assert loads == ["astronaut.png", "coffee.png"]
    samplers = [n["_meta"]["title"] for n in nodes.values() if n["class_type"] == "KSampler"]
    assert samplers == ["transition 1 sampler"]  # no keyframe is sampled
    flf = next(n for n in nodes.values() if n["class_type"] == "WanFirstLastFrameToVideo")
    assert nodes[flf["inputs"]["start_image"][0]]["class_type"] == "ImageScale"


def test_wan_pin_first_frame_is_the_vae_round_trip_of_the_image():
    """At the family level (used by render and previews): frame 0 is the image's own encoding
    decoded, whatever the (random) model predicted for it."""
    from loraforge.trainer import wan
    from loraforge.trainer.presets import load_pipeline

    pipe = load_pipeline("tiny-wan2.1-i2v")
    pipe.set_progress_bar_config(disable=True)
    image = fit_image(_photo("chelsea"), 32, 32)
    out = wan.generate(
        pipe, "a cat", 0, 32, 32, 5, steps=2, variant="i2v", image=image, pin_first_frame=True
    )
    free = wan.generate(pipe, "a cat", 0, 32, 32, 5, steps=2, variant="i2v", image=image)
    x = pipe.video_processor.preprocess(image, height=32, width=32).unsqueeze(2)
    with torch.no_grad():
        rec = pipe.vae.decode(pipe.vae.encode(x).latent_dist.mode()).sample
    rec = pipe.video_processor.postprocess_video(rec, output_type="pt")
    assert torch.allclose(out[0, 0], rec[0, 0], atol=1e-4)
    assert not torch.allclose(free[0, 0], rec[0, 0], atol=1e-3)


# ------------------------------------------------------------------ memory plans


def _meta_wan(name: str):
    """A Wan pipeline-like object with the real architecture on the meta device."""
    import sys
    from types import SimpleNamespace

    from diffusers import AutoencoderKLWan

    sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "bench"))
    from train_step import full_denoiser

    _, transformer = full_denoiser(name, torch.device("meta"), torch.bfloat16)
    with torch.device("meta"):
        vae = AutoencoderKLWan()
    return SimpleNamespace(
        components={"transformer": transformer, "vae": vae}, transformer=transformer, vae=vae
    )


# Real UMT5-XXL (5.68B) and CLIP ViT-H (0.63B) in bf16, which the meta pipelines leave out.
ENCODERS = {"text_encoder": 2 * 5_680_000_000, "image_encoder": 2 * 632_000_000}


def _sizes(pipe) -> dict[str, int]:
    from loraforge.render.device import component_bytes

    return {**component_bytes(pipe, torch.bfloat16, "wan"), **ENCODERS}


def test_memory_plan_for_real_wan_sizes():
    cuda = torch.device("cuda")
    big = _meta_wan("wan2.1-i2v-14b")
    kw = {"width": 832, "height": 480, "frames": 81, "sizes": _sizes(big)}
    on_24 = plan_memory(big, "wan", cuda, torch.bfloat16, free_bytes=23 * GiB, **kw)
    assert on_24.offload == "group", on_24.describe()  # 28.6 GB of transformer cannot be resident
    assert 26 * GiB < on_24.largest_bytes < 27 * GiB  # 28.6e9 bytes of bf16 weights
    on_80 = plan_memory(big, "wan", cuda, torch.bfloat16, free_bytes=79 * GiB, **kw)
    assert on_80.offload == "none" and not on_80.vae_tiling
    on_40 = plan_memory(big, "wan", cuda, torch.bfloat16, free_bytes=39 * GiB, **kw)
    assert on_40.offload == "model", on_40.describe()  # 41 GB in all; the transformer fits alone
    small = _meta_wan("wan2.1-t2v-1.3b")
    sizes = _sizes(small)
    sizes.pop("image_encoder")
    on_16 = plan_memory(
        small,
        "wan",
        cuda,
        torch.bfloat16,
        free_bytes=15 * GiB,
        width=832,
        height=480,
        frames=81,
        sizes=sizes,
    )
    assert on_16.offload == "model", on_16.describe()
    forced = plan_memory(
        small,
        "wan",
        cuda,
        torch.bfloat16,
        free_bytes=15 * GiB,
        width=832,
        height=480,
        frames=81,
        sizes=sizes,
        offload="group",
        vae_tiling="on",
    )
    assert forced.offload == "group" and forced.vae_tiling
    with pytest.raises(PlacementError, match="on the CPU"):
        plan_memory(
            small, "wan", torch.device("cpu"), torch.float32, width=64, height=64, offload="group"
        )


# ------------------------------------------------------------------ input images


def _png_header_only(path: Path, w: int, h: int) -> Path:
    """A PNG whose header claims w x h (a decompression bomb's shape) with one tiny IDAT."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0"))
        + chunk(b"IEND", b"")
    )
    return path


def test_bad_input_images_are_refused_with_the_reason(tmp_path):
    good = tmp_path / "good.jpg"
    _photo("astronaut").save(good, quality=90)
    assert check_image_file(good, "shot 1") == (512, 512)

    text = tmp_path / "notes.jpg"
    text.write_text("this is not a picture")
    with pytest.raises(InvalidInput, match="not an image"):
        check_image_file(text, "shot 1")
    truncated = tmp_path / "cut.jpg"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    with pytest.raises(InvalidInput, match="corrupt or truncated"):
        check_image_file(truncated, "shot 1")
    for factor in (2, 4):  # over our limit; over PIL's own bomb limit too
        side = int((MAX_PIXELS * factor) ** 0.5)
        with pytest.raises(InvalidInput, match="MP limit"):
            check_image_file(_png_header_only(tmp_path / f"bomb{factor}.png", side, side), "shot 1")
    tiny = tmp_path / "icon.png"
    _photo("astronaut").resize((32, 32)).save(tiny)
    with pytest.raises(InvalidInput, match="too small"):
        check_image_file(tiny, "shot 1")
    banner = tmp_path / "banner.png"
    _photo("astronaut").resize((1200, 100)).save(banner)
    with pytest.raises(InvalidInput, match="aspect ratio"):
        check_image_file(banner, "shot 1")

    ref = ProjectRef("acme", "jane")
    assert check_image_key(ref, "acme/jane/sources/abc.jpg", 1)
    for key in ("other/jane/sources/abc.jpg", "acme/jane/../bob/x.jpg", "acme/janet/x.jpg"):
        with pytest.raises(InvalidInput, match="raw bucket"):
            check_image_key(ref, key, 1)


def test_scenario_refuses_settings_a_family_cannot_honour():
    flux = "image_preset: flux.1-dev\ncfg: 4\nshots: [{prompt: a fox}]\n"
    with pytest.raises(InvalidInput, match="needs a negative prompt"):
        parse_scenario(flux)
    assert parse_scenario(flux.replace("a fox}", "a fox, negative_prompt: blurry}")).cfg == 4
    with pytest.raises(InvalidInput, match="needs two shots per video"):
        parse_scenario("video_preset: wan2.1-flf2v-14b\npairing: each\nshots: [{prompt: a}]\n")
    with pytest.raises(InvalidInput, match="flow-matching"):
        parse_scenario("video_scheduler: euler_a\nshots: [{prompt: a}]\n")
    with pytest.raises(InvalidInput, match=r"memory\.offload"):
        parse_scenario("memory: {offload: disk}\nshots: [{prompt: a}]\n")
