"""Every threshold curation decides with, in one overridable object.

Defaults come from the users' documents for a character LoRA: exactly one person, face visible
and sharp, decent light, 2-10 s clips, >= 512 px short side, and an angle mix of about 40 %
frontal (30-40 %), 30 % three-quarter, 20 % profile, 10 % from above/below. Projects override
any field (``CurationPolicy(min_short_side_px=256)`` or ``policy.model_copy(update=...)``).

The LoRA type decides the rest (``CurationPolicy.for_type``, defaults in ``TYPE_DEFAULTS``):
character and expression need the identity's face; pose needs one whole body in frame; style,
background, lighting and effect take faceless clips, with their own rules (background: people
are filled in by its builder; lighting: dark and contrasty frames are the point; effect: one
motion direction across the clips, seed 004's "all clockwise").
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from loraforge.curation.errors import InvalidPolicy

LoraTypeName = Literal[
    "character", "expression", "pose", "style", "background", "lighting", "effect"
]
LORA_TYPES: tuple[str, ...] = (
    "character",
    "expression",
    "pose",
    "style",
    "background",
    "lighting",
    "effect",
)
# types whose dataset is one identity's face: face required, identity matched, angle mix
FACE_TYPES = ("character", "expression")
MOTION_DIRECTION_RULES = ("off", "flag", "reject")

# What each LoRA type changes from the field defaults below (which are the character type's).
TYPE_DEFAULTS: dict[str, dict[str, Any]] = {
    "character": {},
    "expression": {},
    # a pose is learned from the whole body: one person, hips and feet in frame (people.py's
    # full-body circle) in most sampled frames; the face may be turned away or small
    "pose": {"require_face": False, "require_full_body": True},
    # a style is in every pixel: people may or may not be there, any number. Burned-in text
    # does not reject the clip: the style builder drops the frames the OCR read text on
    # (builders/style.py), so the rest of a titled shot stays
    "style": {
        "require_face": False,
        "max_people": None,
        "light_on": "frame",
        "reject_burned_in_text": False,
    },
    # a background/place dataset must not teach a person into the scene: people are allowed in
    # the clips because the background builder (builders/background.py) masks and fills them
    # in, and drops frames where too much of the picture is people (too_much_fill); max_people=0
    # as an override keeps only clips with nobody in them
    "background": {"require_face": False, "max_people": None, "light_on": "frame"},
    # low-key, neon, silhouettes and hard backlight are what a lighting LoRA learns: the face and
    # frame floors that protect a character's likeness would reject them, so the frame decides
    # (light_on) with lower floors. 20/255: a night street lit by
    # signs reads 25-35, the low-key close-up 48; below 20 little is left to learn
    "lighting": {
        "require_face": False,
        "max_people": None,
        "min_mean_luma": 20.0,
        "max_mean_luma": 240.0,
        "max_highlights_clipped": 0.4,
        "max_shadows_clipped": 0.7,
        "light_on": "frame",
    },
    # an effect is its motion: the clips must agree on its direction (seed 004: a "360 spin"
    # set must spin one way only, mixed directions teach neither)
    "effect": {
        "require_face": False,
        "max_people": None,
        "motion_direction_rule": "reject",
        "light_on": "frame",
    },
}


class CurationPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # sampling
    frames_per_clip: int = Field(default=8, ge=1, le=64)
    # the ResNet embedding is the costliest step; identity is stable within a clip, so by default
    # only the sharpest, largest frontal view of the face is embedded
    embed_frames: int = Field(default=1, ge=1, le=64, description="frames whose face is embedded")
    people_frames: int = Field(
        default=3, ge=1, le=64, description="frames run through the body detector"
    )

    # what the LoRA learns; set through for_type, which applies the type's defaults
    lora_type: LoraTypeName = "character"

    # people and face
    require_face: bool = Field(
        default=True, description="no_face rejects; False for faceless types"
    )
    max_people: int | None = Field(
        default=1, ge=0, description="None: any number; 0: nobody in frame"
    )
    require_full_body: bool = Field(
        default=False, description="pose: the whole body must be in frame"
    )
    min_full_body_fraction: float = Field(
        default=0.6, ge=0, le=1, description="of the people frames"
    )
    # effect: a clip whose dominant motion (motion.direction) disagrees with the majority
    motion_direction_rule: Literal["off", "flag", "reject"] = "off"
    min_face_frames_fraction: float = Field(default=0.6, ge=0, le=1)
    min_face_height_ratio: float = Field(
        default=0.10, ge=0, le=1, description="face box / frame height"
    )
    # sharpness is quality.sharpness: Laplacian variance read as if the crop were exposed to at
    # least 100/255 (so dimness is judged by too_dark, not taken for blur)
    min_face_sharpness: float = Field(
        default=30.0, ge=0, description="Laplacian var, 128 px face crop"
    )
    min_frame_sharpness: float = Field(
        default=15.0, ge=0, description="frame, or the subject region with one"
    )

    # light
    min_mean_luma: float = Field(default=50.0, ge=0, le=255)
    max_mean_luma: float = Field(default=215.0, ge=0, le=255)
    max_highlights_clipped: float = Field(default=0.15, ge=0, le=1)
    max_shadows_clipped: float = Field(default=0.35, ge=0, le=1)
    min_contrast: float = Field(default=20.0, ge=0, description="below this: flag low contrast")
    # the subject (the face's head-and-shoulders region, quality.measure_subject) is judged
    # first when one is seen; "frame" judges the whole picture as for faceless LoRA types
    light_on: Literal["subject", "frame"] = "subject"
    # face-core luma (the middle 70 % of the face box). 45 (~18 % of full scale): on the
    # libx264 test clips the astronaut's lit face reads ~173, Grace Hopper's ~141, the low-key
    # close-up's 162 (frame 43); the same shot at a quarter of the exposure reads ~37 with the
    # frame at ~10, a clearly underexposed interview. Dark skin under good light stays well
    # above 45 on the face core, so this rejects underexposure, not complexion
    min_subject_luma: float = Field(default=45.0, ge=0, le=255)
    max_subject_luma: float = Field(default=225.0, ge=0, le=255)
    # noise sigma (grey levels at <= 640 px wide, quality.noise_sigma) on the subject, or on
    # the frame without one. Set on the astronaut close-up encoded with libx264 crf 20: clean
    # 0.4; gaussian noise sigma 8 per channel 5.0 and a shot exposed at 20 % with sensor noise
    # sigma 2 gained back up 6.2 (visible grain: flag); exposed at 15 % with sigma 3 and gained
    # up 12.2, gaussian sigma 20 per channel 12.2 (heavy: reject)
    flag_noise: float = Field(default=4.0, ge=0, description="flag noise above this")
    max_noise: float = Field(default=8.0, ge=0, description="reject noise above this")

    # format
    min_duration_s: float = Field(default=2.0, ge=0)
    max_duration_s: float = Field(default=10.0, ge=0)
    min_short_side_px: int = Field(default=512, ge=1)

    # artefacts
    max_letterbox_fraction: float = Field(default=0.02, ge=0, le=1, description="flag above this")
    reject_letterbox_fraction: float = Field(default=0.25, ge=0, le=1)
    max_blockiness: float = Field(default=1.35, ge=1)
    reject_burned_in_text: bool = True
    reject_watermark: bool = True
    reject_shaky: bool = True
    max_eyes_closed_fraction: float = Field(default=0.5, ge=0, le=1, description="flag above this")

    # identity (None: the face backend's own threshold)
    identity_max_distance: float | None = Field(default=None, gt=0)
    duplicate_max_distance: float | None = Field(default=None, gt=0)
    duplicate_max_phash: int = Field(default=10, ge=0, le=64)

    # selection
    target_size: int | None = Field(
        default=None, ge=1, description="None: video_target / photo_target"
    )
    video_target_min: int = Field(default=50, ge=1)
    video_target_max: int = Field(default=80, ge=1)
    photo_target_min: int = Field(default=20, ge=1)
    photo_target_max: int = Field(default=30, ge=1)
    angle_mix: dict[str, float] = Field(
        default_factory=lambda: {
            "frontal": 0.40,
            "three_quarter": 0.30,
            "profile": 0.20,
            "above_below": 0.10,
        }
    )
    max_smiling_fraction: float = Field(default=0.6, ge=0, le=1)
    max_per_source_fraction: float = Field(default=0.5, gt=0, le=1)

    # identity clusters (identity.assign: HDBSCAN on the face embeddings of all sources, cluster
    # 0 the largest): the one to train on when no reference photo names the person; None: the
    # largest. The report lists the clusters with their clips.
    identity_cluster: int | None = Field(default=None, ge=0)
    # the type's dataset builder (builders/__init__.py: its Options model validates these)
    build_options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> CurationPolicy:
        if self.max_people == 0 and (self.require_face or self.require_full_body):
            raise ValueError(
                "max_people=0 (nobody in frame) contradicts require_face/require_full_body; "
                "use --type background for datasets without people"
            )
        if self.min_duration_s > self.max_duration_s:
            raise ValueError("min_duration_s must not exceed max_duration_s")
        if self.min_mean_luma >= self.max_mean_luma:
            raise ValueError("min_mean_luma must be below max_mean_luma")
        if self.min_subject_luma >= self.max_subject_luma:
            raise ValueError("min_subject_luma must be below max_subject_luma")
        if self.flag_noise > self.max_noise:
            raise ValueError("flag_noise must not exceed max_noise (flag first, then reject)")
        unknown = set(self.angle_mix) - {"frontal", "three_quarter", "profile", "above_below"}
        if unknown:
            raise ValueError(
                f"angle_mix has unknown groups {sorted(unknown)}; "
                "use frontal, three_quarter, profile, above_below"
            )
        total = sum(self.angle_mix.values())
        if not 0.99 <= total <= 1.01:
            raise ValueError(f"angle_mix fractions must add up to 1 (they add up to {total:.2f})")
        return self

    @classmethod
    def from_overrides(cls, overrides: dict[str, Any] | None = None) -> CurationPolicy:
        """Build from a project's overrides, turning validation errors into InvalidPolicy."""
        try:
            return cls.model_validate(overrides or {})
        except ValidationError as e:
            raise InvalidPolicy(f"invalid curation policy: {e}; fix or remove these fields") from e

    @classmethod
    def for_type(cls, lora_type: str, overrides: dict[str, Any] | None = None) -> CurationPolicy:
        """The type's defaults, then the project's overrides on top. Unknown types and an
        override of ``lora_type`` itself are refused with what to use instead."""
        if lora_type not in TYPE_DEFAULTS:
            raise InvalidPolicy(
                f"unknown LoRA type {lora_type!r}; use one of {', '.join(LORA_TYPES)}"
            )
        overrides = dict(overrides or {})
        if overrides.get("lora_type", lora_type) != lora_type:
            raise InvalidPolicy(
                f"policy override lora_type={overrides['lora_type']!r} contradicts the job's type "
                f"{lora_type!r}; set the type with --type (lora_type in the API), "
                "not as an override"
            )
        return cls.from_overrides({**TYPE_DEFAULTS[lora_type], **overrides, "lora_type": lora_type})

    @property
    def face_type(self) -> bool:
        """The dataset is one identity's face: identity matching and the angle mix apply."""
        return self.lora_type in FACE_TYPES

    @property
    def policy_hash(self) -> str:
        """Short stable hash of every field: which policy ran, in reports and manifests."""
        import hashlib

        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:12]

    def target_range(self, kind: str) -> tuple[int, int]:
        """(minimum useful, target) number of items to select for a video or photo dataset."""
        lo, hi = (
            (self.video_target_min, self.video_target_max)
            if kind == "video"
            else (self.photo_target_min, self.photo_target_max)
        )
        if self.target_size is not None:
            return min(lo, self.target_size), self.target_size
        return lo, hi
