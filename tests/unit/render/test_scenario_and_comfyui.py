"""Scenario validation and the ComfyUI export, checked node by node."""

from __future__ import annotations

import json

import pytest

from loraforge.render.comfyui import export_workflow
from loraforge.render.scenario import parse_scenario
from loraforge.runtime.errors import InvalidInput

SCENARIO = """
name: beach-day
image_preset: sdxl
video_preset: wan2.1-flf2v-14b
loras:
  - {name: jane, path: acme/jane/loras/run1/best.safetensors, type: character, trigger: ohwx_woman}
  - {name: film-look, path: styles/film.safetensors, type: style, weight: 0.75}
  - {name: jane-motion, path: acme/jane/loras/run2/best.safetensors, type: character, stage: video}
shots:
  - {prompt: "ohwx_woman walking on a beach, morning light", seed: 1}
  - {prompt: "ohwx_woman sitting on a rock, looking at the sea", seed: 2}
  - {prompt: "ohwx_woman laughing, close-up, golden hour", seed: 3}
  - {prompt: "ohwx_woman waving goodbye, wide shot", seed: 4}
transition: {frames: 33, fps: 16}
output: {width: 832, height: 480}
"""

# Required inputs of the ComfyUI core nodes used (from ComfyUI's node definitions).
REQUIRED = {
    "CheckpointLoaderSimple": {"ckpt_name"},
    "UNETLoader": {"unet_name", "weight_dtype"},
    "DualCLIPLoader": {"clip_name1", "clip_name2", "type"},
    "CLIPLoader": {"clip_name", "type"},
    "VAELoader": {"vae_name"},
    "CLIPVisionLoader": {"clip_name"},
    "LoraLoader": {"model", "clip", "lora_name", "strength_model", "strength_clip"},
    "LoraLoaderModelOnly": {"model", "lora_name", "strength_model"},
    "CLIPTextEncode": {"text", "clip"},
    "FluxGuidance": {"conditioning", "guidance"},
    "EmptyLatentImage": {"width", "height", "batch_size"},
    "EmptySD3LatentImage": {"width", "height", "batch_size"},
    "KSampler": {
        "model",
        "seed",
        "steps",
        "cfg",
        "sampler_name",
        "scheduler",
        "positive",
        "negative",
        "latent_image",
        "denoise",
    },
    "VAEDecode": {"samples", "vae"},
    "SaveImage": {"images", "filename_prefix"},
    "ModelSamplingSD3": {"model", "shift"},
    "CLIPVisionEncode": {"clip_vision", "image", "crop"},
    "WanFirstLastFrameToVideo": {
        "positive",
        "negative",
        "vae",
        "width",
        "height",
        "length",
        "batch_size",
    },
    "WanImageToVideo": {"positive", "negative", "vae", "width", "height", "length", "batch_size"},
    "EmptyHunyuanLatentVideo": {"width", "height", "length", "batch_size"},
    "CreateVideo": {"images", "fps"},
    "SaveVideo": {"video", "filename_prefix", "format", "codec"},
    "ImageBatch": {"image1", "image2"},
}
# How many outputs each node has, so links can be checked for a valid output index.
OUTPUTS = {
    "CheckpointLoaderSimple": 3,
    "LoraLoader": 2,
    "WanFirstLastFrameToVideo": 3,
    "WanImageToVideo": 3,
}


def _links(workflow):
    for node_id, node in workflow.items():
        for name, value in node["inputs"].items():
            if isinstance(value, list):
                yield node_id, name, value


def test_every_input_is_wired_or_set_and_ids_are_consistent() -> None:
    workflow = export_workflow(parse_scenario(SCENARIO))
    json.dumps(workflow)  # serialisable as ComfyUI's /prompt body
    for node_id, node in workflow.items():
        missing = REQUIRED[node["class_type"]] - set(node["inputs"])
        assert not missing, f"node {node_id} {node['class_type']} lacks {missing}"
        for name, value in node["inputs"].items():
            assert (value is not None and value != "") or name in {"text"}, (node_id, name)
    for node_id, name, (target, index) in _links(workflow):
        assert target in workflow, f"node {node_id}.{name} links to missing node {target}"
        assert int(target) < int(node_id), "links point backwards (a DAG in creation order)"
        assert 0 <= index < OUTPUTS.get(workflow[target]["class_type"], 1)


def test_loras_prompts_and_structure_match_the_scenario() -> None:
    scenario = parse_scenario(SCENARIO)
    workflow = export_workflow(scenario)
    by_class: dict[str, list[dict]] = {}
    for node in workflow.values():
        by_class.setdefault(node["class_type"], []).append(node)
    loras = {
        n["inputs"]["lora_name"]: n["inputs"]["strength_model"] for n in by_class["LoraLoader"]
    }
    assert loras == {
        "jane.safetensors": 1.0,
        "film-look.safetensors": 0.75,
    }  # character default 1.0
    assert by_class["LoraLoaderModelOnly"][0]["inputs"]["strength_model"] == 1.0
    # The second LoRA is chained after the first.
    first, second = by_class["LoraLoader"]
    assert (
        second["inputs"]["model"][0] in workflow and workflow[second["inputs"]["model"][0]] is first
    )
    prompts = [n["inputs"]["text"] for n in by_class["CLIPTextEncode"]]
    for shot in scenario.shots:
        assert shot.prompt in prompts
    assert len(by_class["SaveImage"]) == 4
    flf = by_class["WanFirstLastFrameToVideo"]
    assert len(flf) == 2  # pairs 1->2 and 3->4
    assert all(n["inputs"]["length"] == 33 for n in flf)
    # Transition 1 starts on keyframe 1 and ends on keyframe 2.
    decodes = [
        nid
        for nid, n in workflow.items()
        if n["class_type"] == "VAEDecode" and n["_meta"]["title"].startswith("shot")
    ]
    assert flf[0]["inputs"]["start_image"] == [decodes[0], 0]
    assert flf[0]["inputs"]["end_image"] == [decodes[1], 0]
    assert flf[1]["inputs"]["start_image"] == [decodes[2], 0]
    assert [n["inputs"]["seed"] for n in by_class["KSampler"][:4]] == [1, 2, 3, 4]
    assert len(by_class["SaveVideo"]) == 3  # two transitions + the film


def test_chained_pairing_and_flux() -> None:
    text = SCENARIO.replace("image_preset: sdxl", "image_preset: flux.1-dev") + "pairing: chained\n"
    scenario = parse_scenario(text)
    assert scenario.pairs() == [(0, 1), (1, 2), (2, 3)]
    workflow = export_workflow(scenario)
    classes = [n["class_type"] for n in workflow.values()]
    assert classes.count("WanFirstLastFrameToVideo") == 3
    assert "DualCLIPLoader" in classes and "FluxGuidance" in classes


def test_missing_trigger_is_a_warning() -> None:
    text = SCENARIO.replace("ohwx_woman waving goodbye", "a woman waving goodbye")
    warnings = parse_scenario(text).warnings()
    assert len(warnings) == 1 and "shot 4" in warnings[0] and "ohwx_woman" in warnings[0]


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (("frames: 33", "frames: 32"), r"4k\+1"),
        (("image_preset: sdxl", "image_preset: sd3"), "unknown image preset"),
        (("width: 832", "width: 830"), "multiple of 16"),
        (("shots:", "shots: []\nx_shots:"), "shots"),
        (("name: beach-day", "name: ../evil"), "name"),
    ],
)
def test_bad_scenarios_name_the_field(change, fragment: str) -> None:
    with pytest.raises(InvalidInput, match=fragment):
        parse_scenario(SCENARIO.replace(*change))


def test_odd_shot_count_with_pairs_is_refused() -> None:
    three = SCENARIO.split('  - {prompt: "ohwx_woman waving')[0] + "transition: {frames: 33}\n"
    with pytest.raises(InvalidInput, match="pairing"):
        parse_scenario(three)


def test_not_yaml_is_refused() -> None:
    with pytest.raises(InvalidInput, match="YAML"):
        parse_scenario("shots: [unclosed")


def test_prompt_beyond_the_text_encoder_limit_is_a_warning() -> None:
    long_prompt = "ohwx_woman " + ", ".join(f"detail number {i} in the scene" for i in range(40))
    text = SCENARIO.replace('"ohwx_woman walking on a beach, morning light"', f'"{long_prompt}"')
    warnings = parse_scenario(text).warnings()
    assert any("shot 1" in w and "77" in w and "cut" in w for w in warnings), warnings
    assert not any("shot 2" in w and "tokens" in w for w in warnings)
