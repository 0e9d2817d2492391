"""Every threshold curation decides with, in one overridable object.

Defaults come from the users' documents for a character LoRA: exactly one person, face visible
and sharp, decent light, 2-10 s clips, >= 512 px short side, and an angle mix of about 40 %
frontal (30-40 %), 30 % three-quarter, 20 % profile, 10 % from above/below. Projects override
any field (``CurationPolicy(min_short_side_px=256)`` or ``policy.model_copy(update=...)``).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from loraforge.curation.errors import InvalidPolicy


class CurationPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # sampling
    frames_per_clip: int = Field(8, ge=1, le=64)
    # the ResNet embedding is the costliest step; identity is stable within a clip, so by default
    # only the sharpest, largest frontal view of the face is embedded
    embed_frames: int = Field(1, ge=1, le=64, description="frames whose face is embedded")
    people_frames: int = Field(3, ge=1, le=64, description="frames run through the body detector")

    # people and face
    max_people: int = Field(1, ge=1)
    min_face_frames_fraction: float = Field(0.6, ge=0, le=1)
    min_face_height_ratio: float = Field(0.10, ge=0, le=1, description="face box / frame height")
    min_face_sharpness: float = Field(30.0, ge=0, description="Laplacian var, 128 px face crop")
    min_frame_sharpness: float = Field(15.0, ge=0)

    # light
    min_mean_luma: float = Field(50.0, ge=0, le=255)
    max_mean_luma: float = Field(215.0, ge=0, le=255)
    max_highlights_clipped: float = Field(0.15, ge=0, le=1)
    max_shadows_clipped: float = Field(0.35, ge=0, le=1)
    min_contrast: float = Field(20.0, ge=0, description="below this: flag low contrast")

    # format
    min_duration_s: float = Field(2.0, ge=0)
    max_duration_s: float = Field(10.0, ge=0)
    min_short_side_px: int = Field(512, ge=1)

    # artefacts
    max_letterbox_fraction: float = Field(0.02, ge=0, le=1, description="flag above this")
    reject_letterbox_fraction: float = Field(0.25, ge=0, le=1)
    max_blockiness: float = Field(1.35, ge=1)
    reject_burned_in_text: bool = True
    reject_watermark: bool = True
    reject_shaky: bool = True
    max_eyes_closed_fraction: float = Field(0.5, ge=0, le=1, description="flag above this")

    # identity (None: the face backend's own threshold)
    identity_max_distance: float | None = Field(None, gt=0)
    duplicate_max_distance: float | None = Field(None, gt=0)
    duplicate_max_phash: int = Field(10, ge=0, le=64)

    # selection
    target_size: int | None = Field(None, ge=1, description="None: video_target / photo_target")
    video_target_min: int = Field(50, ge=1)
    video_target_max: int = Field(80, ge=1)
    photo_target_min: int = Field(20, ge=1)
    photo_target_max: int = Field(30, ge=1)
    angle_mix: dict[str, float] = Field(
        default_factory=lambda: {
            "frontal": 0.40,
            "three_quarter": 0.30,
            "profile": 0.20,
            "above_below": 0.10,
        }
    )
    max_smiling_fraction: float = Field(0.6, ge=0, le=1)
    max_per_source_fraction: float = Field(0.5, gt=0, le=1)

    @model_validator(mode="after")
    def _check(self) -> CurationPolicy:
        if self.min_duration_s > self.max_duration_s:
            raise ValueError("min_duration_s must not exceed max_duration_s")
        if self.min_mean_luma >= self.max_mean_luma:
            raise ValueError("min_mean_luma must be below max_mean_luma")
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
    def from_overrides(cls, overrides: dict | None = None) -> CurationPolicy:
        """Build from a project's overrides, turning validation errors into InvalidPolicy."""
        try:
            return cls.model_validate(overrides or {})
        except ValidationError as e:
            raise InvalidPolicy(f"invalid curation policy: {e}; fix or remove these fields") from e

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
