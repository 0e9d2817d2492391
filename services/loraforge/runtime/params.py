"""Typed parameters of every job kind: what the servicers convert requests into and what
job records carry. Validation here is the one place a bad request is refused."""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from loraforge.runtime.errors import InvalidInput


class LoraType(StrEnum):
    CHARACTER = "character"
    EFFECT = "effect"
    STYLE = "style"
    BACKGROUND = "background"
    POSE = "pose"
    EXPRESSION = "expression"
    LIGHTING = "lighting"


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @classmethod
    def parse(cls, *, present: Mapping[str, Any] | None = None, **values: Any) -> Self:
        """Build from wire values, where plain proto3 fields send 0 / "" for "not set".

        `present` holds the fields whose presence the wire carries (proto3 `optional`, read
        with `present_fields`): they are validated as sent, so an explicit 0 is refused where
        0 is invalid instead of silently becoming the default."""
        cleaned = {k: v for k, v in values.items() if v not in (0, 0.0, "", None, [], {})}
        cleaned.update(present or {})
        try:
            return cls(**cleaned)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'request'}: {e['msg']}"
                for e in exc.errors()
            )
            raise InvalidInput(f"invalid {cls.__name__}: {problems}") from None


class IngestParams(_Params):
    sources: list[str] = Field(min_length=1, max_length=10_000)
    min_s: float = Field(default=2.0, gt=0, le=60)
    max_s: float = Field(default=5.0, gt=0, le=120)
    fps: float = Field(default=16.0, gt=0, le=120)
    max_long_side: int | None = Field(default=None, ge=64, le=8192)
    # what the clips are for: the automatic curation after this ingest curates with that
    # type's policy; None: the project's captioning defaults' type, else character
    lora_type: LoraType | None = None

    @model_validator(mode="after")
    def _range(self) -> IngestParams:
        if self.min_s > self.max_s:
            raise ValueError(f"min_s ({self.min_s}) must not exceed max_s ({self.max_s})")
        return self


class CurationParams(_Params):
    reference_keys: list[str] = Field(default_factory=list)
    target_size: int | None = Field(default=None, ge=1, le=10_000)
    lora_type: LoraType = LoraType.CHARACTER
    policy_overrides: dict[str, Any] = Field(default_factory=dict)


class CaptioningParams(_Params):
    dataset_id: str = Field(min_length=1)
    trigger: str = Field(min_length=2, max_length=64)
    lora_type: LoraType = LoraType.CHARACTER
    source: str = Field(default="attributes", pattern="^(attributes|vlm|openai)$")
    class_noun: str = Field(default="person", min_length=1, max_length=40)
    base_preset: str | None = None  # sets the caption length limit (CLIP 77 / umT5 512)
    motion: str | None = Field(default=None, max_length=500)  # effect LoRAs: shared motion text


class TrainingParams(_Params):
    """A training job. Every number left None is the preset family's default, filled in by
    the trainer alone (trainer/config.py: resolve), so no path has its own defaults."""

    dataset_id: str = Field(min_length=1)
    base_preset: str = Field(min_length=1)
    rank: int | None = Field(default=None, ge=1, le=1024)
    alpha: int | None = Field(default=None, ge=1, le=4096)
    learning_rate: float | None = Field(default=None, gt=0, lt=1)
    steps: int | None = Field(default=None, ge=1, le=1_000_000)
    resolution: int | None = Field(default=None, ge=64, le=4096)
    frames: int | None = Field(default=None, ge=1, le=1025)
    seed: int | None = Field(default=None, ge=0, le=2**31 - 1)
    extra: dict[str, Any] = Field(default_factory=dict)
    on_kubernetes: bool = False


class LoraWeightParams(_Params):
    lora_key: str = Field(min_length=1)
    adapter_name: str = ""
    weight: float = Field(default=1.0, ge=-4, le=4)


class RenderParams(_Params):
    scenario_yaml: str = Field(min_length=1, max_length=1_000_000)
    image_preset: str = ""
    video_preset: str = ""
    loras: list[LoraWeightParams] = Field(default_factory=list)


class DeploymentCallParams(_Params):
    """A call of a deployment (a render job; loraforge.library.deployments): the images are
    keys in the project's raw bucket (what uploads store). Nothing but the deployment is
    required: the deployment's mode says which images it needs, its template the prompt."""

    deployment: str = Field(min_length=1, max_length=63)
    image: str = Field(default="", max_length=1024)  # the first frame (i2v, flf2v)
    last_image: str = Field(default="", max_length=1024)  # the last frame (flf2v)
    prompt: str = Field(default="", max_length=4000)  # used when the deployment uses input prompts
    seed: int | None = Field(default=None, ge=0, le=2**32 - 1)  # None: the deployment's
