from __future__ import annotations

import re
from pathlib import Path

import pytest
from captioning_tokenizers import tiny_tokenizer

from loraforge.captioning.attributes import dominant_colours, shot_size, slots_from_metrics
from loraforge.captioning.captioner import CaptionOptions, caption_clips, validate_user_caption
from loraforge.captioning.distill import distill_motion
from loraforge.captioning.errors import InvalidCaption, InvalidTemplate
from loraforge.captioning.slots import phrases_to_slots
from loraforge.captioning.sources import AttributeSource, ClipInput, Draft
from loraforge.captioning.templates import load_templates
from loraforge.captioning.text import HEDGE_WORDS, find_hedges, strip_hedges
from loraforge.captioning.tokens import EstimateTokenizer, limit_for

HEDGE_RE = re.compile(r"\b(" + "|".join(HEDGE_WORDS) + r")\b", re.IGNORECASE)

ANGLES = ["frontal", "three_quarter", "profile_left", "profile_right", "above", "below"]
EXPRESSIONS = ["neutral", "smiling", "talking", "mouth_open"]


def metrics(i: int) -> dict:
    return {
        "clip_id": f"c{i:02d}",
        "angle_bucket": ANGLES[i % 6],
        "largest_face_ratio": 0.05 + 0.04 * i,
        "expression": EXPRESSIONS[i % 4],
        "motion": ["static", "moderate", "shaky"][i % 3],
        "lighting": ["day", "evening", "studio", "low_light"][i % 4],
        "kind": "video",
    }


class HedgingVlm:
    """Stands in for a model that hedges and names identity traits (what real VLMs do)."""

    name = "fake-vlm"
    TEXTS = (
        (
            "The video shows a woman who appears to be smiling, possibly in a park. She has blue "
            "eyes and long brown hair, wearing a red jacket while she walks toward the camera"
        ),
        (
            "A woman with short black hair seems to be sitting in a kitchen, likely wearing a "
            "white shirt. It appears that she might be talking. Fair skin, oval face"
        ),
        "This image depicts a woman standing on a city street at night, probably wearing glasses",
    )

    def describe(self, clip: ClipInput) -> Draft:
        text = self.TEXTS[int(clip.clip_id[1:]) % len(self.TEXTS)]
        return Draft(self.name, phrases_to_slots(text), text)


def character_clips(n: int = 9) -> list[ClipInput]:
    return [ClipInput(f"c{i:02d}", metrics=metrics(i)) for i in range(n)]


def test_character_captions_start_with_trigger_and_never_hedge() -> None:
    run = caption_clips(
        character_clips(),
        [AttributeSource(), HedgingVlm()],
        CaptionOptions("ohwx_woman", class_noun="woman"),
    )
    assert len(run.captions) == 9
    for c in run.captions:
        assert c.text.startswith("ohwx_woman, woman, "), c.text
        assert not HEDGE_RE.search(c.text), c.text
        # identity traits are the trigger's job: never in the caption by default
        for trait in ("blue eyes", "fair skin", "oval face"):
            assert trait not in c.text
    texts = [c.text for c in run.captions]
    # the changeable appearance and the measured facts made it into the structure
    assert any("long brown hair" in t and "wearing a red jacket" in t for t in texts)
    assert any("profile view" in t for t in texts) and any("front view" in t for t in texts)
    assert any("close-up" in t for t in texts) and any("full body shot" in t for t in texts)
    # measured attributes win over the model's words for the same slot
    first = run.captions[0]
    assert first.slots["expression"] == "neutral expression"


def test_attribute_mapping() -> None:
    assert (
        shot_size(0.5) == "close-up" and shot_size(0.15) == "medium shot" and shot_size(0.0) == ""
    )
    slots = slots_from_metrics(
        {
            "angle_bucket": "profile_right",
            "largest_face_ratio": 0.3,
            "expression": "talking",
            "motion": "shaky",
            "lighting": "studio",
        }
    )
    assert slots == {
        "angle": "profile view",
        "shot": "medium close-up",
        "expression": "talking",
        "action": "speaking",
        "details": "handheld camera",
        "lighting": "soft studio lighting",
    }


def test_dominant_colours_of_real_keyframes(tmp_path: Path) -> None:
    from PIL import Image

    red = tmp_path / "red.png"
    Image.new("RGB", (64, 64), (200, 20, 20)).save(red)
    half = Image.new("RGB", (64, 64), (20, 40, 200))
    half.paste(Image.new("RGB", (32, 64), (250, 250, 250)), (0, 0))
    assert dominant_colours([red]) == ["red"]
    assert sorted(dominant_colours([half])) == ["blue", "white"]
    from captioning_footage import photo

    assert dominant_colours([photo("coffee")])  # a real photo yields named colours


def test_effect_motion_is_identical_across_samples_and_distilled() -> None:
    drafts = [
        "a man standing in a street, golden coins fall from the sky, "
        "coins swirl around the subject",
        "a woman in a park, golden coins fall from the sky, the coins pile up",
        "a child in a bedroom, golden coins fall from the sky, coins swirl around the subject",
        "an old man at a beach, golden coins fall from the sky, coins swirl around the subject",
    ]

    class Drafts:
        name = "drafts"

        def describe(self, clip: ClipInput) -> Draft:
            t = drafts[int(clip.clip_id[1:])]
            return Draft(self.name, phrases_to_slots(t), t)

    clips = [ClipInput(f"c{i:02d}", metrics=metrics(i)) for i in range(4)]
    run = caption_clips(
        clips, [AttributeSource(), Drafts()], CaptionOptions("s86b5p", lora_type="effect")
    )
    motion = run.shared["motion"]
    assert motion == "golden coins fall from the sky, coins swirl around the subject"
    parts = [c.text.split("s86b5p, ", 1) for c in run.captions]
    assert all(len(p) == 2 for p in parts)
    assert {p[1] for p in parts} == {motion}  # the motion part is one text for every sample
    assert len({p[0] for p in parts}) == 4  # subject + background vary
    assert "the coins pile up" not in " ".join(c.text for c in run.captions)


def test_effect_motion_given_by_user_wins_and_must_not_hedge() -> None:
    clips = [ClipInput(f"c{i:02d}", metrics=metrics(i)) for i in range(3)]
    opts = CaptionOptions(
        "s86b5p", lora_type="effect", motion="the body turns to gold from the feet up"
    )
    run = caption_clips(clips, [AttributeSource()], opts)
    assert all(
        c.text.endswith("s86b5p, the body turns to gold from the feet up") for c in run.captions
    )
    opts.motion = "the body seems to turn to gold"
    with pytest.raises(InvalidCaption, match="seems"):
        caption_clips(clips, [AttributeSource()], opts)
    # no text to distil from and no motion given: a clear error
    with pytest.raises(InvalidCaption, match="--motion"):
        caption_clips(clips, [AttributeSource()], CaptionOptions("s86b5p", lora_type="effect"))


def test_distill_falls_back_to_shared_ngram() -> None:
    got = distill_motion(
        [
            "a cat jumps and the screen shatters into glass shards",
            "the screen shatters into glass shards around a dog",
            "people cheer",
        ]
    )
    assert got == "the screen shatters into glass shards"


def test_hedges_are_stripped_from_generated_text() -> None:
    assert strip_hedges("a woman who appears to be smiling") == "a woman who is smiling"
    assert strip_hedges("possibly in a park") == "in a park"
    assert strip_hedges("it seems that she might be talking") == "she is talking"
    assert not find_hedges(strip_hedges("likely wearing a hat, perhaps outdoors, maybe at night"))


def test_captions_are_cut_to_the_tokenizer_limit_with_a_warning() -> None:
    tok = tiny_tokenizer(max_tokens=12)
    run = caption_clips(
        character_clips(3),
        [AttributeSource(), HedgingVlm()],
        CaptionOptions("zqxv", class_noun="woman", tokenizer=tok),
    )
    for c in run.captions:
        assert tok.count(c.text) <= 12 and c.text.startswith("zqxv, woman")
    assert any("over the 12-token limit of tiny-wordlevel" in w for w in run.warnings)
    # the estimate (no tokenizer provisioned) never under-counts a real CLIP limit of 77
    est = EstimateTokenizer(max_tokens=limit_for("sdxl")[1])
    assert est.max_tokens == 77 and limit_for("tiny-wan2.1-t2v") == ("umt5", 512)
    run = caption_clips(
        character_clips(3),
        [AttributeSource(), HedgingVlm()],
        CaptionOptions("ohwx_woman", base_preset="sd1.5"),
    )
    assert all(est.count(c.text) <= 77 for c in run.captions)


def test_user_captions_get_clear_errors() -> None:
    tok = tiny_tokenizer(max_tokens=10)
    tpl = load_templates()["character"]
    kw = {"trigger": "zqxv", "tokenizer": tok, "template": tpl}
    assert validate_user_caption("zqxv, woman, smiling", **kw) == "zqxv, woman, smiling"
    with pytest.raises(InvalidCaption, match="empty"):
        validate_user_caption("   ", **kw)
    with pytest.raises(InvalidCaption, match="is 16 tokens but tiny-wordlevel reads at most 10"):
        validate_user_caption("zqxv, woman, smiling, front view, red jacket, wearing hair", **kw)
    with pytest.raises(InvalidCaption, match="appears"):
        validate_user_caption("zqxv, woman who appears happy", **kw)
    with pytest.raises(InvalidCaption, match="start with the trigger"):
        validate_user_caption("woman, zqxv", **kw)
    with pytest.raises(InvalidCaption, match="shared motion"):
        validate_user_caption(
            "a man, zqxv, coins", trigger="zqxv", tokenizer=tok, shared={"motion": "coins fall"}
        )


def test_user_templates_override_and_bad_ones_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(
        "character:\n  parts: ['{trigger}', 'a photo of a {class_noun}', '{angle}']\n"
        "  separator: ' | '\n"
    )
    tpl = load_templates(path)["character"]
    assert (
        tpl.render({"trigger": "ohwx", "class_noun": "man", "angle": ""})
        == "ohwx | a photo of a man"
    )
    assert load_templates(path)["effect"].shared == ("motion",)  # other types keep defaults
    for bad, msg in [
        ({"character": {"parts": ["{class_noun}"]}}, "exactly once"),
        ({"character": {"parts": ["{trigger}", "{eye.color}"]}}, "bare slot names"),
        ({"character": {"parts": ["{trigger}", "{mood}"]}}, "unknown slot"),
        ({"character": {"parts": ["{class_noun}", "{trigger}"]}}, "first part"),
        ({"unicorn": ["{trigger}"]}, "unknown LoRA type"),
    ]:
        with pytest.raises(InvalidTemplate, match=msg):
            load_templates(bad)


def test_every_default_template_renders_with_the_trigger() -> None:
    values = {
        "trigger": "ohwx",
        "class_noun": "woman",
        "subject": "a woman",
        "environment": "a park",
        "lighting": "daylight",
        "colors": "red",
        "expression": "smiling",
        "pose": "arms raised",
        "motion": "coins fall",
        "background": "a park",
    }
    for name, tpl in load_templates().items():
        text = tpl.render(values)
        assert "ohwx" in text, name
        if tpl.trigger_first:
            assert text.startswith("ohwx"), name
