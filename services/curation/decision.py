"""Keep or reject one clip under a policy, with machine-readable reason codes and human text.

Hard problems reject (reasons); soft ones only flag, so a person can still look at them. Codes
are stable identifiers for dashboards and the manifest; messages follow ``code: what (limit)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from loraforge.curation.metrics import ClipMetrics
from loraforge.curation.policy import CurationPolicy

REASON_CODES = (
    "no_face",
    "people_count",
    "face_too_small",
    "face_blurry",
    "blurry",
    "too_dark",
    "too_bright",
    "highlights_clipped",
    "shadows_clipped",
    "too_short",
    "too_long",
    "low_resolution",
    "letterbox",
    "burned_in_text",
    "watermark",
    "shaky",
    "identity_mismatch",
    "near_duplicate",
)
FLAG_CODES = ("letterbox", "blocky", "low_contrast", "eyes_closed", "face_intermittent")


@dataclass(frozen=True)
class Reason:
    code: str
    message: str

    def __str__(self) -> str:
        return self.message


@dataclass
class Decision:
    keep: bool
    reasons: list[Reason] = field(default_factory=list)
    flags: list[Reason] = field(default_factory=list)

    @property
    def reason_codes(self) -> list[str]:
        return [r.code for r in self.reasons]

    @property
    def flag_codes(self) -> list[str]:
        return [r.code for r in self.flags]


def _r(code: str, text: str) -> Reason:
    return Reason(code, f"{code}: {text}")


def decide(
    m: ClipMetrics,
    policy: CurationPolicy,
    *,
    identity_threshold: float | None = None,
    duplicate_of: str | None = None,
) -> Decision:
    rs: list[Reason] = []
    fl: list[Reason] = []
    p = policy
    if m.face_frames_fraction == 0:
        rs.append(_r("no_face", "no face found in any sampled frame (a visible face is required)"))
    elif m.face_frames_fraction < p.min_face_frames_fraction:
        rs.append(
            _r(
                "no_face",
                f"face visible in {m.face_frames_fraction:.0%} of frames "
                f"(min {p.min_face_frames_fraction:.0%})",
            )
        )
    if m.people_count > p.max_people:
        extra = f", {m.bodies_without_face} without a visible face" if m.bodies_without_face else ""
        rs.append(
            _r("people_count", f"{m.people_count} persons in frame{extra} (max {p.max_people})")
        )
    if m.face_frames_fraction > 0:
        if m.largest_face_ratio < p.min_face_height_ratio:
            rs.append(
                _r(
                    "face_too_small",
                    f"face is {m.largest_face_ratio:.0%} of the frame height "
                    f"(min {p.min_face_height_ratio:.0%})",
                )
            )
        if m.face_sharpness < p.min_face_sharpness:
            rs.append(
                _r("face_blurry", f"face sharpness {m.face_sharpness:.0f} (min {p.min_face_sharpness:.0f})")
            )
    if m.sharpness < p.min_frame_sharpness:
        rs.append(_r("blurry", f"frame sharpness {m.sharpness:.0f} (min {p.min_frame_sharpness:.0f})"))
    if m.mean_luma < p.min_mean_luma:
        rs.append(_r("too_dark", f"mean brightness {m.mean_luma:.0f}/255 (min {p.min_mean_luma:.0f})"))
    if m.mean_luma > p.max_mean_luma:
        rs.append(_r("too_bright", f"mean brightness {m.mean_luma:.0f}/255 (max {p.max_mean_luma:.0f})"))
    if m.highlights_clipped > p.max_highlights_clipped:
        rs.append(
            _r(
                "highlights_clipped",
                f"{m.highlights_clipped:.0%} of pixels blown out (max {p.max_highlights_clipped:.0%})",
            )
        )
    if m.shadows_clipped > p.max_shadows_clipped:
        rs.append(
            _r(
                "shadows_clipped",
                f"{m.shadows_clipped:.0%} of pixels crushed to black (max {p.max_shadows_clipped:.0%})",
            )
        )
    if m.kind == "video":
        if m.duration_s < p.min_duration_s:
            rs.append(_r("too_short", f"{m.duration_s:.1f} s long (min {p.min_duration_s:g} s)"))
        if m.duration_s > p.max_duration_s:
            rs.append(_r("too_long", f"{m.duration_s:.1f} s long (max {p.max_duration_s:g} s)"))
    if m.short_side < p.min_short_side_px:
        rs.append(
            _r("low_resolution", f"{m.width}x{m.height}, short side {m.short_side} px (min {p.min_short_side_px})")
        )
    bars = max(m.letterbox_fraction, m.pillarbox_fraction)
    if bars > p.reject_letterbox_fraction:
        rs.append(_r("letterbox", f"black bars cover {bars:.0%} of the frame (max {p.reject_letterbox_fraction:.0%})"))
    elif bars > p.max_letterbox_fraction:
        fl.append(_r("letterbox", f"black bars cover {bars:.0%} of the frame; crop before training"))
    if m.burned_in_text and p.reject_burned_in_text:
        rs.append(_r("burned_in_text", "burned-in text or subtitles in the picture"))
    if m.logo_or_watermark and p.reject_watermark:
        rs.append(_r("watermark", "a static logo or watermark is overlaid on the picture"))
    if m.motion == "shaky" and p.reject_shaky:
        rs.append(_r("shaky", f"camera shake ({m.motion_jitter:.2f} frame widths/s of jitter)"))
    if m.identity_match is False:
        lim = f" (max {identity_threshold:.2f})" if identity_threshold is not None else ""
        rs.append(
            _r("identity_mismatch", f"face does not match the subject, distance {m.identity_distance:.2f}{lim}")
        )
    if duplicate_of is not None:
        rs.append(_r("near_duplicate", f"near-copy of {duplicate_of}, which is kept instead"))

    if m.blockiness > p.max_blockiness:
        fl.append(_r("blocky", f"compression blocks visible (blockiness {m.blockiness:.2f}, max {p.max_blockiness:.2f})"))
    if m.contrast < p.min_contrast:
        fl.append(_r("low_contrast", f"contrast {m.contrast:.0f} (min {p.min_contrast:.0f})"))
    if m.eyes_closed_fraction > p.max_eyes_closed_fraction:
        fl.append(_r("eyes_closed", f"eyes closed in {m.eyes_closed_fraction:.0%} of frames"))
    if 0 < m.face_frames_fraction < 1 and not any(r.code == "no_face" for r in rs):
        fl.append(_r("face_intermittent", f"face visible in {m.face_frames_fraction:.0%} of frames"))
    return Decision(not rs, rs, fl)
