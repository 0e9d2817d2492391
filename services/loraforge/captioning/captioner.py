"""Sources -> slots -> template -> a caption that fits the text encoder.

Order of precedence per slot: the first source that fills it wins (sources are listed with
the measured attributes first), except `details`, which collects from every source. The
effect type then gets its one shared motion text (given, or distilled from the drafts) on every
sample. Captions that do not fit the tokenizer lose whole optional parts from the end, never the
trigger, class noun or shared parts, and carry a warning.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from loraforge.captioning.distill import distill_motion, remove_shared
from loraforge.captioning.errors import InvalidCaption, InvalidTemplate
from loraforge.captioning.sources import CaptionSource, ClipInput, Draft
from loraforge.captioning.templates import CaptionTemplate, load_templates
from loraforge.captioning.text import find_hedges, normalize, strip_hedges, tidy
from loraforge.captioning.tokens import (
    EstimateTokenizer,
    TextTokenizer,
    check_user_length,
    limit_for,
)
from loraforge.captioning.trigger import validate_trigger

log = logging.getLogger(__name__)

_PROTECTED = {"trigger", "class_noun"}


@dataclass
class CaptionOptions:
    trigger: str
    lora_type: str = "character"
    class_noun: str = "person"
    templates: Mapping[str, CaptionTemplate] | None = None
    tokenizer: TextTokenizer | None = None  # None: estimate with the base preset's limit
    base_preset: str | None = None
    motion: str | None = None  # effect: the shared motion text; None = distil from drafts
    subject: str | None = None  # effect/style/lighting: when no source names the subject

    def template(self) -> CaptionTemplate:
        templates = self.templates or load_templates()
        if self.lora_type not in templates:
            raise InvalidTemplate(f"no caption template for LoRA type {self.lora_type!r}")
        return templates[self.lora_type]

    def text_tokenizer(self) -> TextTokenizer:
        return self.tokenizer or EstimateTokenizer(max_tokens=limit_for(self.base_preset)[1])


@dataclass
class Caption:
    clip_id: str
    text: str
    slots: dict[str, str] = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)
    draft_text: str = ""
    tokens: int = 0
    warnings: list[str] = field(default_factory=list)


@dataclass
class CaptionRun:
    trigger: str
    lora_type: str
    template: dict[str, Any]
    captions: list[Caption]
    shared: dict[str, str] = field(default_factory=dict)
    tokenizer: str = ""

    @property
    def warnings(self) -> list[str]:
        return [f"{c.clip_id}: {w}" for c in self.captions for w in c.warnings]


def merge_drafts(drafts: Sequence[Draft]) -> dict[str, str]:
    merged: dict[str, str] = {}
    details: list[str] = []
    for d in drafts:
        for slot, value in d.slots.items():
            value = tidy(strip_hedges(value))  # a source may hedge; captions never do
            if not value:
                continue
            if slot == "details":
                details += [
                    v for v in value.split(", ") if normalize(v) not in map(normalize, details)
                ]
            else:
                merged.setdefault(slot, value)
    if details:
        merged["details"] = ", ".join(details)
    return merged


def _effect_candidates(drafts: Sequence[Draft]) -> str:
    """What an effect's motion is distilled from: the model's own words when there are any."""
    texts = [d.text for d in drafts if d.text]
    if texts:
        return ". ".join(texts)
    merged = merge_drafts(drafts)
    return ", ".join(v for k, v in merged.items() if k in ("action", "motion"))


def render_fitting(
    template: CaptionTemplate, values: dict[str, str], tokenizer: TextTokenizer, what: str
) -> tuple[str, int, list[str]]:
    text = template.render(values)
    n = tokenizer.count(text)
    if n <= tokenizer.max_tokens:
        return text, n, []
    keep = dict(values)
    protected = _PROTECTED | set(template.shared)
    droppable = [s for part in reversed(template._fields) for s in part if s not in protected]
    dropped = []
    for slot in droppable:
        if keep.pop(slot, None):
            dropped.append(slot)
            text = template.render(keep)
            if tokenizer.count(text) <= tokenizer.max_tokens:
                break
    m = tokenizer.count(text)
    if m > tokenizer.max_tokens:
        raise InvalidCaption(
            f"{what}: even without optional parts the caption is {m} tokens, over "
            f"the {tokenizer.max_tokens} of {tokenizer.name}; shorten the shared "
            "motion text or the template's fixed words"
        )
    warning = (
        f"caption was {n} tokens, over the {tokenizer.max_tokens}-token limit of "
        f"{tokenizer.name}; dropped {', '.join(dropped)} to fit ({m} tokens)"
    )
    return text, m, [warning]


def caption_clips(
    clips: Sequence[ClipInput],
    sources: Sequence[CaptionSource],
    options: CaptionOptions,
    progress: Callable[[int, int], None] | None = None,
) -> CaptionRun:
    tokenizer = options.text_tokenizer()
    trigger = validate_trigger(options.trigger, options.tokenizer)
    template = options.template()
    if not sources:
        raise InvalidCaption("no caption source given")
    drafts: list[list[Draft]] = []
    for i, clip in enumerate(clips):
        drafts.append([s.describe(clip) for s in sources])
        if progress:
            progress(i + 1, len(clips))

    shared: dict[str, str] = {}
    if "motion" in template.shared:
        if options.motion:
            hedges = find_hedges(options.motion)
            if hedges:
                raise InvalidCaption(
                    f"the motion text uses hedging words ({', '.join(hedges)}); "
                    "state the motion plainly"
                )
            shared["motion"] = tidy(options.motion)
        else:
            shared["motion"] = distill_motion([_effect_candidates(d) for d in drafts])

    captions = []
    for clip, clip_drafts in zip(clips, drafts, strict=True):
        values = merge_drafts(clip_drafts)
        for slot, text in shared.items():  # the shared text is said once, in its own part
            for other in list(values):
                if other != slot:
                    values[other] = remove_shared(values[other], text)
            values[slot] = text
        values["trigger"] = trigger
        values.setdefault("class_noun", options.class_noun)
        values.setdefault("subject", options.subject or f"a {options.class_noun}")
        if "background" in template.slots and "environment" in values:
            values.setdefault("background", values["environment"])
        if "colors" not in template.slots and values.get("colors") and "details" in template.slots:
            values["details"] = ", ".join(
                filter(None, [values.get("details"), f"{values['colors']} tones"])
            )
        text, n, warnings = render_fitting(template, values, tokenizer, clip.clip_id)
        if find_hedges(text):  # belt and braces: a template word or a source slipped one in
            raise InvalidCaption(
                f"{clip.clip_id}: caption still hedges ({find_hedges(text)}): {text!r}"
            )
        captions.append(
            Caption(
                clip.clip_id,
                text,
                values,
                [d.source for d in clip_drafts],
                " / ".join(d.text for d in clip_drafts if d.text),
                n,
                warnings,
            )
        )
        for w in warnings:
            log.warning("%s: %s", clip.clip_id, w)
    check_shared(captions, shared)
    return CaptionRun(
        trigger, options.lora_type, template.to_dict(), captions, shared, tokenizer.name
    )


def check_shared(captions: Sequence[Caption], shared: Mapping[str, str]) -> None:
    for c in captions:
        for slot, text in shared.items():
            if text not in c.text:
                raise InvalidCaption(
                    f"{c.clip_id}: the shared {slot} text {text!r} must appear "
                    "unchanged in every caption of the dataset"
                )


def validate_user_caption(
    text: str,
    *,
    trigger: str,
    tokenizer: TextTokenizer,
    template: CaptionTemplate | None = None,
    shared: Mapping[str, str] | None = None,
    what: str = "caption",
) -> str:
    """A caption a person wrote: refused (not rewritten) when it breaks a rule."""
    text = (text or "").strip()
    if not text:
        raise InvalidCaption(
            f"{what} is empty; write what the clip shows, starting with {trigger!r}"
        )
    hedges = find_hedges(text)
    if hedges:
        raise InvalidCaption(
            f"{what} uses hedging words ({', '.join(hedges)}); state what is "
            "visible plainly (e.g. 'smiling', not 'appears to be smiling')"
        )
    if template is not None and template.trigger_first and not text.startswith(trigger):
        raise InvalidCaption(f"{what} must start with the trigger {trigger!r}")
    if trigger not in text:
        raise InvalidCaption(f"{what} must contain the trigger {trigger!r}")
    for slot, value in (shared or {}).items():
        if value not in text:
            raise InvalidCaption(
                f"{what} must keep the dataset's shared {slot} text unchanged: {value!r}"
            )
    check_user_length(text, tokenizer, what=what)
    return text
