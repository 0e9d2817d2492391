"""The scenario spec: shots -> keyframe images -> transition videos -> one film.

Users write it as YAML or JSON; it is validated here with errors that name the field and say
what to fix. Defaults follow the source documents (LoRA weights per type, pairing 1->2, 3->4).
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from loraforge.captioning.tokens import EstimateTokenizer, limit_for
from loraforge.runtime.errors import InvalidInput
from loraforge.runtime.params import LoraType

# Weights the source documents suggest per LoRA type (seeds 002/003).
DEFAULT_LORA_WEIGHTS: dict[LoraType, float] = {
    LoraType.CHARACTER: 1.0,
    LoraType.BACKGROUND: 0.8,
    LoraType.POSE: 0.7,
    LoraType.EXPRESSION: 0.6,
    LoraType.STYLE: 0.9,
    LoraType.LIGHTING: 0.7,
    LoraType.EFFECT: 1.0,
}

IMAGE_PRESETS = ("sdxl", "flux.1-dev", "sd1.5", "tiny-sdxl", "tiny-flux", "tiny-sd1.5")
VIDEO_PRESETS = (
    "wan2.1-flf2v-14b",
    "wan2.1-i2v-14b",
    "wan2.1-t2v-14b",
    "wan2.1-t2v-1.3b",
    "wan2.2-t2v-a14b",
    "tiny-wan2.1-flf2v",
    "tiny-wan2.1-i2v",
    "tiny-wan2.1-t2v",
    "tiny-wan2.2-t2v",
)


class Pairing(StrEnum):
    PAIRS = "pairs"  # 1->2, 3->4, ... (the source document's workflow)
    CHAINED = "chained"  # 1->2, 2->3, 3->4, ...
    EACH = "each"  # one video per shot from its keyframe alone (i2v, t2v; not flf2v)


# Schedulers a scenario may pick per stage; "default" keeps the pipeline's own (the one its
# weights ship with). loraforge.render.schedulers builds them.
IMAGE_SCHEDULERS = ("default", "euler", "euler_a", "dpmpp_2m", "dpmpp_2m_karras", "ddim", "unipc")
FLOW_SCHEDULERS = ("default", "euler", "unipc", "dpmpp_2m")


class Join(StrEnum):
    CUT = "cut"
    CROSSFADE = "crossfade"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Shot(_Strict):
    prompt: str = Field(min_length=1, max_length=4000)
    negative_prompt: str = ""
    seed: int = Field(default=0, ge=0, le=2**32 - 1)
    # The user's own keyframe instead of a generated one: a key in the project's raw bucket
    # (`<tenant>/<project>/sources/<sha256>.<ext>`, what uploads store; `loraforge render`
    # uploads a local path there first). It is the first frame of the shot's video (i2v) or
    # one end of a first/last-frame video (flf2v). Checked before the job runs.
    image: str = Field(default="", max_length=1024)


class Stage(StrEnum):
    IMAGE = "image"  # applied to the keyframe image model (SDXL / Flux / SD1.5 LoRA)
    VIDEO = "video"  # applied to the video model (Wan LoRA)


class ScenarioLora(_Strict):
    name: str = Field(min_length=1, pattern=r"^[a-z0-9][a-z0-9_-]*$")
    path: str = Field(min_length=1)  # loras-bucket key or local .safetensors path
    type: LoraType = LoraType.CHARACTER
    stage: Stage = Stage.IMAGE
    weight: float | None = Field(default=None, ge=-2.0, le=2.0)
    trigger: str = ""

    @property
    def effective_weight(self) -> float:
        return DEFAULT_LORA_WEIGHTS[self.type] if self.weight is None else self.weight


class Transition(_Strict):
    frames: int = Field(default=81, ge=5, le=1025)
    fps: int = Field(default=16, ge=1, le=60)
    prompt: str = ""  # motion description; defaults to the second shot's prompt

    @field_validator("frames")
    @classmethod
    def _four_k_plus_one(cls, frames: int) -> int:
        if (frames - 1) % 4:
            raise ValueError(
                f"{frames} frames: Wan needs 4k+1 frames (e.g. {4 * ((frames - 1) // 4) + 1} "
                f"or {4 * ((frames - 1) // 4 + 1) + 1})"
            )
        return frames


class Output(_Strict):
    width: int = Field(default=832, ge=64, le=4096)
    height: int = Field(default=480, ge=64, le=4096)

    @model_validator(mode="after")
    def _stride(self) -> Output:
        for name, value in (("width", self.width), ("height", self.height)):
            if value % 16:
                raise ValueError(
                    f"output.{name} {value} must be a multiple of 16 (the video model's stride)"
                )
        return self


class Memory(_Strict):
    """Overrides of the render settings' memory savers for this scenario (auto = chosen from
    the card's free memory and the model size, loraforge.render.device.plan_memory)."""

    offload: Literal["auto", "none", "model", "group"] = "auto"
    vae_tiling: Literal["auto", "on", "off"] = "auto"


class Scenario(_Strict):
    name: str = Field(default="film", pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
    image_preset: str = "sdxl"
    video_preset: str = "wan2.1-flf2v-14b"
    shots: list[Shot] = Field(min_length=1, max_length=64)
    loras: list[ScenarioLora] = Field(default_factory=list)
    pairing: Pairing = Pairing.PAIRS
    transition: Transition = Transition()
    transitions: list[Transition] = Field(default_factory=list)  # per pair, overrides default
    join: Join = Join.CUT
    crossfade_s: float = Field(default=0.5, ge=0.0, le=5.0)
    output: Output = Output()
    steps: int = Field(default=30, ge=1, le=200)
    # True classifier-free guidance against each shot's negative prompt (1 = off). None = the
    # family's RENDER_GUIDANCE (Wan 5, SDXL 5, SD1.5 7.5, Flux 1: see the family modules).
    cfg: float | None = Field(default=None, ge=0.0, le=30.0)
    # Flux dev's embedded (distilled) guidance; None = flux.DISTILLED_GUIDANCE (3.5).
    distilled_guidance: float | None = Field(default=None, ge=0.0, le=30.0)
    image_scheduler: str = "default"
    video_scheduler: str = "default"
    # Wan's flow shift; None = the one its scheduler ships with (3.0 in the 480p checkpoints;
    # the Wan authors use 5.0 at 720p)
    video_flow_shift: float | None = Field(default=None, ge=0.5, le=20.0)
    memory: Memory = Memory()

    @field_validator("image_preset")
    @classmethod
    def _image_preset(cls, value: str) -> str:
        if value not in IMAGE_PRESETS:
            raise ValueError(
                f"unknown image preset {value!r}; choose one of {', '.join(IMAGE_PRESETS)}"
            )
        return value

    @field_validator("video_preset")
    @classmethod
    def _video_preset(cls, value: str) -> str:
        if value not in VIDEO_PRESETS:
            raise ValueError(
                f"unknown video preset {value!r}; choose one of {', '.join(VIDEO_PRESETS)}"
            )
        return value

    @field_validator("image_scheduler")
    @classmethod
    def _image_scheduler(cls, value: str) -> str:
        if value not in IMAGE_SCHEDULERS:
            raise ValueError(
                f"unknown image scheduler {value!r}; choose one of {', '.join(IMAGE_SCHEDULERS)}"
            )
        return value

    @field_validator("video_scheduler")
    @classmethod
    def _video_scheduler(cls, value: str) -> str:
        if value not in FLOW_SCHEDULERS:
            raise ValueError(
                f"unknown video scheduler {value!r}; Wan is a flow-matching model: "
                f"choose one of {', '.join(FLOW_SCHEDULERS)}"
            )
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Scenario:
        if self.pairing is Pairing.EACH and "flf2v" in self.video_preset:
            raise ValueError(
                "pairing 'each' makes one video per shot, but a first/last-frame "
                f"preset ({self.video_preset}) needs two shots per video: use pairs "
                "or chained, or an i2v/t2v preset"
            )
        if "flux" in self.image_preset and (self.cfg or 0) > 1:
            bare = [i for i, shot in enumerate(self.shots, start=1) if not shot.negative_prompt]
            if bare:
                raise ValueError(
                    f"cfg {self.cfg} on Flux is true CFG, which needs a negative prompt "
                    f"(shots {', '.join(map(str, bare))} have none): add one, or leave "
                    "cfg unset and use distilled_guidance (Flux dev is guidance-distilled)"
                )
        if "flux" in self.image_preset and self.image_scheduler not in ("default", "euler"):
            raise ValueError(
                f"image scheduler {self.image_scheduler!r}: Flux samples with its "
                "resolution-dependent shift, which only its flow-matching Euler "
                "scheduler takes: use default or euler"
            )
        names = [lora.name for lora in self.loras]
        if len(set(names)) != len(names):
            raise ValueError("two LoRAs share a name; adapter names must be unique")
        if self.pairing is Pairing.PAIRS and len(self.shots) > 1 and len(self.shots) % 2:
            raise ValueError(
                f"pairing 'pairs' joins shots 1->2, 3->4, ...; {len(self.shots)} shots leave the "
                "last one alone: add a shot or use pairing: chained"
            )
        if self.transitions and len(self.transitions) != len(self.pairs()):
            raise ValueError(
                f"transitions lists {len(self.transitions)} entries for {len(self.pairs())} pairs"
            )
        return self

    def pairs(self) -> list[tuple[int, int]]:
        """0-based (first, last) shot indices of each transition video."""
        n = len(self.shots)
        if self.pairing is Pairing.EACH:
            return [(i, i) for i in range(n)]
        if n < 2:
            return []
        if self.pairing is Pairing.PAIRS:
            return [(i, i + 1) for i in range(0, n - 1, 2)]
        return [(i, i + 1) for i in range(n - 1)]

    def transition_for(self, pair_index: int) -> Transition:
        return self.transitions[pair_index] if self.transitions else self.transition

    def _length_warnings(self) -> list[str]:
        return _scenario_length_warnings(self)

    def character_triggers(self) -> list[str]:
        return [
            lora.trigger for lora in self.loras if lora.type is LoraType.CHARACTER and lora.trigger
        ]

    def warnings(self) -> list[str]:
        """Problems that do not stop a render but usually spoil it."""
        out = self._length_warnings()
        for trigger in self.character_triggers():
            for i, shot in enumerate(self.shots, start=1):
                if trigger not in shot.prompt:
                    out.append(
                        f"shot {i}: the prompt does not contain the character trigger {trigger!r}; "
                        "the character LoRA will barely show"
                    )
        return out


def _token_count(preset: str, text: str) -> tuple[int, int, str]:
    """(tokens, limit, encoder) with the captioning tokenizer estimate for the preset's encoder.

    The estimate over-counts slightly, so a warning may come a little early, never late."""
    encoder, limit = limit_for(preset)
    return EstimateTokenizer(max_tokens=limit).count(text), limit, encoder


def _scenario_length_warnings(scenario: Scenario) -> list[str]:
    out = []
    for i, shot in enumerate(scenario.shots, start=1):
        for label, text in (("prompt", shot.prompt), ("negative prompt", shot.negative_prompt)):
            if not text:
                continue
            tokens, limit, encoder = _token_count(scenario.image_preset, text)
            if tokens > limit:
                out.append(
                    f"shot {i}: the {label} is about {tokens} tokens; {encoder} reads only "
                    f"{limit}, the rest is cut: shorten it (60-100 tokens work best)"
                )
    return out


def parse_scenario(text: str) -> Scenario:
    """YAML or JSON text -> Scenario, or InvalidInput naming each bad field."""
    try:
        data: Any = json.loads(text) if text.lstrip().startswith("{") else yaml.safe_load(text)
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        raise InvalidInput(f"the scenario is not valid YAML/JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidInput("the scenario must be a mapping with at least `shots:`")
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'scenario'}: "
            f"{e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        )
        raise InvalidInput(f"invalid scenario: {problems}") from None
