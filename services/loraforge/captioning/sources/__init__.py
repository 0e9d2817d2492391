"""Caption sources: each turns one clip into a `Draft` (slots and/or free text).

attributes  what curation measured (default; offline, deterministic)
vlm         a vision-language model loaded with transformers from a provisioned directory
openai      an OpenAI-compatible chat-completions endpoint with image input
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from PIL import Image

from loraforge.captioning.attributes import slots_from_metrics
from loraforge.captioning.media import sample_frames


@dataclass
class ClipInput:
    clip_id: str
    media: Path | None = None  # local video or photo (downloaded by the service layer)
    keyframes: list[Path] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass
class Draft:
    source: str
    slots: dict[str, str] = field(default_factory=dict)
    text: str = ""  # the raw description, kept for review and for effect-motion distillation


class CaptionSource(Protocol):
    name: str

    def describe(self, clip: ClipInput) -> Draft: ...


class AttributeSource:
    name = "attributes"

    def describe(self, clip: ClipInput) -> Draft:
        return Draft(self.name, slots_from_metrics(clip.metrics, clip.keyframes))


def frames_of(clip: ClipInput, n: int) -> list[Image.Image]:
    """Images a model looks at: sampled video frames, else the keyframes."""
    if clip.media is not None:
        return sample_frames(clip.media, n)
    frames: list[Image.Image] = []
    for k in clip.keyframes[:n]:
        with Image.open(k) as im:
            frames.append(im.convert("RGB"))
    return frames
