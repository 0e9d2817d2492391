"""Keep or reject one clip under a policy, with machine-readable reason codes and human text.

Hard problems reject (reasons); soft ones only flag, so a person can still look at them. Codes
are stable identifiers for dashboards and the manifest; messages follow ``code: what (limit)``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from loraforge.curation.metrics import ClipMetrics
from loraforge.curation.overlays import Evidence, same_place
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
    "noisy",
    "shaky",
    "identity_mismatch",
    "near_duplicate",
    "no_person",
    "no_full_body",
    "motion_direction",
)
FLAG_CODES = (
    "corner_mark",
    "motion_direction",
    "letterbox",
    "blocky",
    "low_contrast",
    "eyes_closed",
    "face_intermittent",
    "low_key",
    "highlights_clipped",
    "noisy",
    "scene_text",
)


@dataclass(frozen=True)
class Reason:
    code: str
    message: str
    # what the reason was found on (kind, box, frames, text, score)
    evidence: tuple[Evidence, ...] = ()

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


def _r(code: str, text: str, evidence: Sequence[Evidence] = ()) -> Reason:
    return Reason(code, f"{code}: {text}", tuple(evidence))


def _where(evidence: Sequence[Evidence], limit: int = 2) -> str:
    """Short text for the first evidence items: what, where (x, y, w, h of the frame), when."""
    parts = []
    for e in evidence[:limit]:
        x, y, w, h = e["box"]
        said = f" {e['text']!r}" if e.get("text") else ""
        frames = ",".join(str(f) for f in e["frames"])
        parts.append(
            f"{e['kind'].replace('_', ' ')}{said} at x={x:.2f} y={y:.2f} w={w:.2f} h={h:.2f} "
            f"(frames {frames})"
        )
    more = f" and {len(evidence) - limit} more" if len(evidence) > limit else ""
    return "; ".join(parts) + more


def _light_and_detail(
    m: ClipMetrics, p: CurationPolicy, rs: list[Reason], fl: list[Reason]
) -> None:
    """Exposure, clipping, sharpness and noise.

    With a subject (a face was seen) and ``light_on="subject"``, the subject region decides and
    the frame's values are the secondary signal: a low-key shot (lit face, dark room) is kept and
    flagged ``low_key``; a blown window behind a well exposed face is a flag, crushed blacks in
    the background are normal in film and not reported. Without a subject, the frame decides.
    """
    subject = m.subject_light() if p.light_on == "subject" else None
    at: tuple[Evidence, ...] = ()
    if subject is not None:
        # the region every subject reason was measured on, for the manifest and the report
        at = (
            (
                {
                    "kind": m.subject_source,
                    "box": list(m.subject_box),
                    "frames": list(m.subject_frames),
                    "text": None,
                    "score": round(subject.luma, 4),
                },
            )
            if m.subject_box
            else ()
        )
        frame = f"frame {m.mean_luma:.0f}/255"
        who = "face" if m.subject_source == "face" else "subject"
        if subject.luma < p.min_subject_luma:
            rs.append(
                _r(
                    "too_dark",
                    f"{who} brightness {subject.luma:.0f}/255 "
                    f"(min {p.min_subject_luma:.0f}), {frame}",
                    at,
                )
            )
        elif subject.luma > p.max_subject_luma:
            rs.append(
                _r(
                    "too_bright",
                    f"{who} brightness {subject.luma:.0f}/255 "
                    f"(max {p.max_subject_luma:.0f}), {frame}",
                    at,
                )
            )
        elif m.mean_luma < p.min_mean_luma:
            fl.append(
                _r(
                    "low_key",
                    f"dark frame ({frame}, min {p.min_mean_luma:.0f}) with a lit {who} "
                    f"({subject.luma:.0f}/255): kept as a low-key shot",
                )
            )
        if subject.highlights_clipped > p.max_highlights_clipped:
            rs.append(
                _r(
                    "highlights_clipped",
                    f"{subject.highlights_clipped:.0%} of the subject blown out "
                    f"(max {p.max_highlights_clipped:.0%})",
                    at,
                )
            )
        elif m.highlights_clipped > p.max_highlights_clipped:
            fl.append(
                _r(
                    "highlights_clipped",
                    f"{m.highlights_clipped:.0%} of the frame blown out outside the "
                    f"subject (max {p.max_highlights_clipped:.0%})",
                )
            )
        if subject.shadows_clipped > p.max_shadows_clipped:
            rs.append(
                _r(
                    "shadows_clipped",
                    f"{subject.shadows_clipped:.0%} of the subject crushed to black "
                    f"(max {p.max_shadows_clipped:.0%})",
                    at,
                )
            )
        if subject.sharpness < p.min_frame_sharpness:
            rs.append(
                _r(
                    "blurry",
                    f"subject sharpness {subject.sharpness:.0f} (min {p.min_frame_sharpness:.0f}), "
                    f"frame {m.sharpness:.0f}",
                    at,
                )
            )
        noise, where = subject.noise, "on the subject"
    else:
        if m.sharpness < p.min_frame_sharpness:
            rs.append(
                _r("blurry", f"frame sharpness {m.sharpness:.0f} (min {p.min_frame_sharpness:.0f})")
            )
        if m.mean_luma < p.min_mean_luma:
            rs.append(
                _r("too_dark", f"mean brightness {m.mean_luma:.0f}/255 (min {p.min_mean_luma:.0f})")
            )
        if m.mean_luma > p.max_mean_luma:
            rs.append(
                _r(
                    "too_bright",
                    f"mean brightness {m.mean_luma:.0f}/255 (max {p.max_mean_luma:.0f})",
                )
            )
        if m.highlights_clipped > p.max_highlights_clipped:
            rs.append(
                _r(
                    "highlights_clipped",
                    f"{m.highlights_clipped:.0%} of pixels blown out "
                    f"(max {p.max_highlights_clipped:.0%})",
                )
            )
        if m.shadows_clipped > p.max_shadows_clipped:
            rs.append(
                _r(
                    "shadows_clipped",
                    f"{m.shadows_clipped:.0%} of pixels crushed to black "
                    f"(max {p.max_shadows_clipped:.0%})",
                )
            )
        noise, where = m.noise, "in the frame"
    if noise > p.max_noise:
        rs.append(
            _r(
                "noisy",
                f"heavy noise {where}: sigma {noise:.1f} grey levels (max {p.max_noise:g})",
                at,
            )
        )
    elif noise > p.flag_noise:
        fl.append(
            _r(
                "noisy",
                f"visible noise {where}: sigma {noise:.1f} grey levels "
                f"(flag above {p.flag_noise:g})",
                at,
            )
        )


def _overlays(
    m: ClipMetrics, p: CurationPolicy, ctx: DatasetContext, rs: list[Reason], fl: list[Reason]
) -> None:
    """Burned-in text and watermarks reject (with where and when they were seen); text that
    belongs to the scene is only flagged (overlays.py states the rule). A mark in a corner of a
    locked-off shot (metrics.corner_mark_evidence) rejects only where a clip of the same source
    shows a logo at that place (corner_marks_elsewhere); otherwise it is flagged."""
    if m.burned_in_text and p.reject_burned_in_text:
        ev = m.text_evidence
        what = _where(ev) if ev else "burned-in text or subtitles in the picture"
        rs.append(_r("burned_in_text", what, ev))
    if m.logo_or_watermark and p.reject_watermark:
        ev = m.watermark_evidence
        what = (
            ("static overlay: " + _where(ev))
            if ev
            else "a static logo or watermark is overlaid on the picture"
        )
        rs.append(_r("watermark", what, ev))
    if m.scene_text:
        ev = m.scene_text_evidence
        fl.append(
            _r("scene_text", "text in the scene (kept; it may be learned): " + _where(ev), ev)
        )
    if not m.corner_mark_evidence:
        return
    seen = ctx.corner_marks_seen_elsewhere.get(m.clip_id)
    ev = m.corner_mark_evidence
    if seen is not None and p.reject_watermark and not m.logo_or_watermark:
        rs.append(
            _r(
                "watermark",
                f"static overlay: {_where(ev)}; clip {seen} of the same source shows a logo "
                f"at that place",
                ev,
            )
        )
    elif seen is None:
        fl.append(
            _r(
                "corner_mark",
                f"static in a corner of a locked-off shot, a channel bug or the scenery "
                f"(kept; no clip of the source shows a logo there): {_where(ev)}",
                ev,
            )
        )


@dataclass(frozen=True)
class DatasetContext:
    """What a clip's decision needs to know about the other clips of the dataset."""

    # effect datasets: the most common motion direction among clips that have one, and how
    # many clips go each way; None when no direction wins outright (a tie)
    motion_majority: str | None = None
    motion_counts: tuple[tuple[str, int], ...] = ()
    # clip id -> the clip of the same source that shows a logo where this clip has a corner
    # mark (corner_marks_elsewhere)
    corner_marks_seen_elsewhere: Mapping[str, str] = field(default_factory=dict)


def dataset_context(metrics: list[ClipMetrics], policy: CurationPolicy) -> DatasetContext:
    elsewhere = corner_marks_elsewhere(metrics)
    if policy.motion_direction_rule == "off":
        return DatasetContext(corner_marks_seen_elsewhere=elsewhere)
    counts = Counter(m.motion_direction for m in metrics if m.motion_direction)
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    majority = (
        ranked[0][0] if ranked and (len(ranked) == 1 or ranked[0][1] > ranked[1][1]) else None
    )
    return DatasetContext(majority, tuple(ranked), elsewhere)


def corner_marks_elsewhere(metrics: Sequence[ClipMetrics]) -> dict[str, str]:
    """Clips whose corner mark (a static blob in a corner of a locked-off shot) another clip of
    the same source shows at the same place as a logo, by the camera moving under it or the
    picture changing around it: clip id -> that clip's id. On a locked-off shot a channel bug
    and the scenery in a corner both stay put; a shot that moves tells them apart, and a bug
    stays at the same pixels through every shot of an upload. (Corner marks of several
    locked-off shots do not confirm each other: keyframe hashes do not tell two set-ups from
    two moments of one when a talking head fills the frame.)"""
    out: dict[str, str] = {}
    for m in metrics:
        if not m.corner_mark_evidence:
            continue
        for o in metrics:
            if o is m or o.source_id != m.source_id or not o.logo_or_watermark:
                continue
            marks = o.watermark_evidence
            if any(same_place(e["box"], t["box"]) for e in m.corner_mark_evidence for t in marks):
                out[m.clip_id] = o.clip_id
                break
    return out


def _subject(m: ClipMetrics, p: CurationPolicy, rs: list[Reason], fl: list[Reason]) -> None:
    """Who must (or must not) be in the picture, by LoRA type: the identity's face for
    character/expression, one whole body for pose, nobody for background, anything for style,
    lighting and effect (max_people None)."""
    if p.require_face:
        if m.face_frames_fraction == 0:
            seen = (
                f"; a person is in {m.person_frames_fraction:.0%} of the checked frames, with no "
                "face seen: turned away, the face cut by the frame's edge, or too small or "
                "blurred to find"
                if m.person_frames_fraction > 0
                else ""
            )
            rs.append(
                _r(
                    "no_face",
                    f"no face found in any sampled frame (a visible face is required){seen}",
                )
            )
        elif m.face_frames_fraction < p.min_face_frames_fraction:
            rs.append(
                _r(
                    "no_face",
                    f"face visible in {m.face_frames_fraction:.0%} of frames "
                    f"(min {p.min_face_frames_fraction:.0%})",
                )
            )
    if p.max_people == 0 and m.people_count > 0:
        without = (
            f" ({m.bodies_without_face} without a visible face)" if m.bodies_without_face else ""
        )
        rs.append(
            _r(
                "people_count",
                f"{m.people_count} person{'s' * (m.people_count > 1)} in frame{without}; "
                f"a {p.lora_type} dataset needs none",
            )
        )
    elif p.max_people is not None and m.people_count > p.max_people:
        extra = f", {m.bodies_without_face} without a visible face" if m.bodies_without_face else ""
        rs.append(
            _r("people_count", f"{m.people_count} persons in frame{extra} (max {p.max_people})")
        )
    if p.require_full_body:
        if m.person_frames_fraction == 0:
            rs.append(
                _r(
                    "no_person",
                    f"nobody found in any sampled frame (a {p.lora_type} dataset needs a person)",
                )
            )
        elif m.full_body_fraction < p.min_full_body_fraction:
            rs.append(
                _r(
                    "no_full_body",
                    f"whole body in frame in {m.full_body_fraction:.0%} of the checked frames "
                    f"(min {p.min_full_body_fraction:.0%}; head to feet must be visible)"
                    + (
                        f"; not seen: {', '.join(m.missing_body_parts)}"
                        if m.missing_body_parts
                        else ""
                    ),
                )
            )
    if p.require_face and m.face_frames_fraction > 0:
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
                _r(
                    "face_blurry",
                    f"face sharpness {m.face_sharpness:.0f} (min {p.min_face_sharpness:.0f})",
                )
            )


def _motion_direction(
    m: ClipMetrics, p: CurationPolicy, ctx: DatasetContext, rs: list[Reason], fl: list[Reason]
) -> None:
    """Effect datasets: every clip moves the same way (seed 004: all clockwise, not mixed)."""
    if p.motion_direction_rule == "off" or not m.motion_direction or not ctx.motion_counts:
        return
    ways = ", ".join(f"{n} {d}" for d, n in ctx.motion_counts)
    if ctx.motion_majority is None:
        fl.append(
            _r(
                "motion_direction",
                f"motion {m.motion_direction}, but the clips are split ({ways}); "
                "an effect should move one way in every clip",
            )
        )
    elif m.motion_direction != ctx.motion_majority:
        r = _r(
            "motion_direction",
            f"motion {m.motion_direction} ({m.motion_direction_rate:.2f} frame widths/s) "
            f"against the dataset's {ctx.motion_majority} ({ways}); an effect should "
            "move one way in every clip",
        )
        (rs if p.motion_direction_rule == "reject" else fl).append(r)


def decide(
    m: ClipMetrics,
    policy: CurationPolicy,
    *,
    identity_threshold: float | None = None,
    duplicate_of: str | None = None,
    context: DatasetContext | None = None,
) -> Decision:
    rs: list[Reason] = []
    fl: list[Reason] = []
    p = policy
    _subject(m, p, rs, fl)
    _light_and_detail(m, p, rs, fl)
    if m.kind == "video":
        if m.duration_s < p.min_duration_s:
            rs.append(_r("too_short", f"{m.duration_s:.1f} s long (min {p.min_duration_s:g} s)"))
        if m.duration_s > p.max_duration_s:
            rs.append(_r("too_long", f"{m.duration_s:.1f} s long (max {p.max_duration_s:g} s)"))
    if m.short_side < p.min_short_side_px:
        rs.append(
            _r(
                "low_resolution",
                f"{m.width}x{m.height}, short side {m.short_side} px (min {p.min_short_side_px})",
            )
        )
    bars = max(m.letterbox_fraction, m.pillarbox_fraction)
    if bars > p.reject_letterbox_fraction:
        rs.append(
            _r(
                "letterbox",
                f"black bars cover {bars:.0%} of the frame (max {p.reject_letterbox_fraction:.0%})",
            )
        )
    elif bars > p.max_letterbox_fraction:
        fl.append(
            _r("letterbox", f"black bars cover {bars:.0%} of the frame; crop before training")
        )
    _overlays(m, p, context or DatasetContext(), rs, fl)
    if m.motion == "shaky" and p.reject_shaky:
        rs.append(_r("shaky", f"camera shake ({m.motion_jitter:.2f} frame widths/s of jitter)"))
    _motion_direction(m, p, context or DatasetContext(), rs, fl)
    # identity is the subject of face types only: a style or effect set may show anyone
    if m.identity_match is False and p.face_type:
        lim = f" (max {identity_threshold:.2f})" if identity_threshold is not None else ""
        rs.append(
            _r(
                "identity_mismatch",
                f"face does not match the subject, distance {m.identity_distance:.2f}{lim}",
            )
        )
    if duplicate_of is not None:
        rs.append(_r("near_duplicate", f"near-copy of {duplicate_of}, which is kept instead"))

    if m.blockiness > p.max_blockiness:
        fl.append(
            _r(
                "blocky",
                f"compression blocks visible (blockiness {m.blockiness:.2f}, "
                f"max {p.max_blockiness:.2f})",
            )
        )
    if m.contrast < p.min_contrast:
        fl.append(_r("low_contrast", f"contrast {m.contrast:.0f} (min {p.min_contrast:.0f})"))
    if m.eyes_closed_fraction > p.max_eyes_closed_fraction:
        fl.append(_r("eyes_closed", f"eyes closed in {m.eyes_closed_fraction:.0%} of frames"))
    if (
        p.require_face
        and 0 < m.face_frames_fraction < 1
        and not any(r.code == "no_face" for r in rs)
    ):
        fl.append(
            _r("face_intermittent", f"face visible in {m.face_frames_fraction:.0%} of frames")
        )
    return Decision(not rs, rs, fl)
