"""Measure one clip or photo: faces, pose, expression, people, quality, overlays, motion.

Per-frame numbers are reduced to one value per clip with medians (robust to a frame where the
detector slips) and fractions of frames (for things that come and go: a face, a smile).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import imagehash
import numpy as np
from PIL import Image

from loraforge.curation.expression import (
    TALKING_MAR_STD,
    expression_label,
    measure_expression,
)
from loraforge.curation.faces import DetectedFace, FaceBackend, normalize
from loraforge.curation.frames import Frame, SampledMedia, small_gray
from loraforge.curation.motion import classify, dense_flow, direction
from loraforge.curation.overlays import Evidence, measure_overlays
from loraforge.curation.people import BODY_PARTS, PeopleDetector, Person
from loraforge.curation.pose import HeadPose, bucket, estimate_pose
from loraforge.curation.quality import (
    SubjectQuality,
    face_sharpness,
    frame_views,
    lighting_bucket,
    measure_frame,
    measure_subject,
    upper_body_box,
)
from loraforge.curation.text import TextReader, default_reader

PHASH_FRAMES = 3


@dataclass
class ClipMetrics:
    clip_id: str
    path: str
    source_id: str
    kind: str  # video | photo
    width: int
    height: int
    fps: float
    duration_s: float
    frames_sampled: int
    # faces
    face_frames_fraction: float = 0.0
    max_faces: int = 0
    largest_face_ratio: float = 0.0  # face box height / frame height, median over face frames
    face_sharpness: float = 0.0
    landmarks: list[list[float]] | None = None  # 68 (x, y) of the largest face, best frame
    yaw: float | None = None
    pitch: float | None = None
    roll: float | None = None
    angle_bucket: str | None = None
    # expression
    smiling_fraction: float = 0.0
    mouth_open_fraction: float = 0.0
    mouth_ratio_std: float = 0.0
    talking: bool = False
    eyes_closed_fraction: float = 0.0
    expression: str | None = None
    # people
    people_count: int = 0
    bodies_without_face: int = 0
    person_frames_fraction: float = 0.0  # people frames with anyone in them (face or body)
    # people frames where the main person's whole body is in frame (people.Person.full_body)
    full_body_fraction: float = 0.0
    body_height_ratio: float = 0.0  # main person's full-body circle / frame height, median
    # body parts (people.BODY_PARTS) not seen in most checked frames; pose datasets only
    missing_body_parts: list[str] = field(default_factory=list)
    # dominant motion of the picture (motion.direction): moves_left, zoom_in, rotate_cw, ...
    motion_direction: str | None = None
    motion_direction_rate: float = 0.0  # frame widths / second
    # identity (filled by identity.assign)
    embedding: list[float] | None = None
    identity_distance: float | None = None
    identity_match: bool | None = None
    identity_cluster: int | None = None
    # image quality
    sharpness: float = 0.0
    mean_luma: float = 0.0
    highlights_clipped: float = 0.0
    shadows_clipped: float = 0.0
    contrast: float = 0.0
    blockiness: float = 1.0
    letterbox_fraction: float = 0.0  # top + bottom bars
    pillarbox_fraction: float = 0.0  # left + right bars
    color_temp_ratio: float = 1.0
    lighting: str = "day"
    noise: float = 0.0  # robust noise sigma of the picture, grey levels (quality.noise_sigma)
    # the subject (quality.measure_subject): the head-and-shoulders region around the face on
    # the frames where one is seen, else around the main person's head (people.py); None where
    # nobody was found (then the frame values above count)
    subject_source: str = "frame"  # face | person (head box of a faceless body) | frame
    subject_box: list[float] | None = None  # x, y, w, h (fractions of the frame), best frame
    subject_frames: list[int] = field(default_factory=list)  # frames the subject was measured on
    subject_luma: float | None = None  # mean luma of the face core (of the region for a person)
    subject_highlights_clipped: float | None = None  # of the subject region
    subject_shadows_clipped: float | None = None
    subject_sharpness: float | None = None  # Laplacian variance at QUALITY_WIDTH, like sharpness
    subject_noise: float | None = None
    burned_in_text: bool = False
    logo_or_watermark: bool = False
    text_frames_fraction: float = 0.0
    static_overlay_fraction: float = 0.0
    # evidence, one dict per finding (overlays.OverlayEvidence.as_dict: kind, box as x/y/w/h
    # fractions of the frame, frames, text, score)
    text_evidence: list[Evidence] = field(default_factory=list)  # subtitles, overlaid text
    watermark_evidence: list[Evidence] = field(default_factory=list)  # logos, text logos
    scene_text: bool = False  # text that belongs to the scene (signs, prints): flagged only
    scene_text_evidence: list[Evidence] = field(default_factory=list)
    # static blobs in a corner of a locked-off shot: a channel bug, or the scenery in that
    # corner; the clip cannot tell (overlays.static_logos), a clip of the same source that
    # shows a logo there can (decision.corner_marks_elsewhere)
    corner_mark_evidence: list[Evidence] = field(default_factory=list)
    camera_shift: float = 0.0  # median camera translation between samples, frame widths
    ocr_frames: list[int] = field(default_factory=list)  # frames the text detector read
    motion: str = "static"
    motion_speed: float = 0.0
    motion_jitter: float = 0.0
    phashes: list[str] = field(default_factory=list)
    # every frame as ingest/proxy.signature_rows (128 bytes a frame): how the
    # picture changes over time, which tells a copy of some footage from another moment filmed
    # the same way (dedup.shared_footage). None for photos. Not written to the manifest.
    signature: bytes | None = None
    signature_fps: float = 0.0  # its rate: the source's where ingest wrote it (0: fps)
    best_frame_index: int = 0
    quality_score: float = 0.0

    @property
    def short_side(self) -> int:
        return min(self.width, self.height)

    def subject_light(self) -> SubjectLight | None:
        """The subject region's measurements together; None where no subject was seen (measure
        sets all of them or none)."""
        luma, highlights, shadows = (
            self.subject_luma,
            self.subject_highlights_clipped,
            self.subject_shadows_clipped,
        )
        sharpness, noise = self.subject_sharpness, self.subject_noise
        if luma is None or highlights is None or shadows is None:
            return None
        if sharpness is None or noise is None:
            return None
        return SubjectLight(luma, highlights, shadows, sharpness, noise)


@dataclass(frozen=True)
class SubjectLight:
    """ClipMetrics' subject_* fields of a clip where a subject was seen (none of them None)."""

    luma: float
    highlights_clipped: float
    shadows_clipped: float
    sharpness: float
    noise: float


@dataclass
class MeasuredClip:
    metrics: ClipMetrics
    thumbnail: np.ndarray  # BGR, best frame, at most 320 px wide


def _people_in_frame(persons: list[Person]) -> tuple[int, int, Person | None]:
    """(people, people without a detected face, the main person): the largest face's person,
    else the surest body. PeopleDetector already merged each body with its face."""
    main = next((p for p in persons if p.has_face), None) or max(
        persons, key=lambda p: p.score, default=None
    )
    return len(persons), sum(not p.has_face for p in persons), main


def _persistent_count(counts: list[int], share: float = 0.25) -> int:
    """Largest k seen in at least a quarter of the frames (and >= 1 frame): a person walking
    through counts, a one-frame false positive in a long clip does not."""
    if not counts:
        return 0
    need = max(1, int(np.ceil(share * len(counts))))
    best = 0
    for k in sorted(set(counts)):
        if sum(c >= k for c in counts) >= need:
            best = k
    return best


# Subject exposure that ranks best: face-core luma (quality.measure_subject) on the plateau,
# falling to 0 at the ends. Set on the libx264 test clips: the astronaut's lit face reads ~173,
# Grace Hopper's ~141, the low-key close-up's ~162, the same shot at a quarter exposure ~37
# (too_dark), two stops over ~245 (burnt); 90-190 holds every well-lit complexion we measured.
SUBJECT_LUMA_GOOD = (90.0, 190.0)
SUBJECT_LUMA_ZERO = (30.0, 245.0)


def _subject_exposure(luma: float) -> float:
    (lo, hi), (z0, z1) = SUBJECT_LUMA_GOOD, SUBJECT_LUMA_ZERO
    if luma < lo:
        return max(0.0, (luma - z0) / (lo - z0))
    if luma > hi:
        return max(0.0, (z1 - luma) / (z1 - hi))
    return 1.0


def quality_score(m: ClipMetrics, light_on: str = "subject") -> float:
    """0..1 ranking score among accepted clips, on what the LoRA learns.

    Face types (``light_on="subject"``, a face seen): the face's sharpness and size, the
    subject's exposure (face core) and clipping, the head-and-shoulders region's sharpness, how
    often the face is seen and how upright it is (yaw is the selection's angle mix, not
    quality); the frame's brightness does not count, so a low-key close-up with a well-lit
    sharp face outranks a bright frame with a soft face. A subject without a face (a person
    turned away): the region's sharpness and exposure. Faceless types (``light_on="frame"``,
    style, background, lighting, effect) and clips with no subject: the frame's own
    sharpness, exposure and contrast."""
    penalty = 0.1 * max(0.0, m.blockiness - 1.2) + 0.2 * (m.motion == "shaky")
    subject = m.subject_light() if light_on == "subject" else None
    if subject is not None and m.subject_source == "face" and m.face_frames_fraction > 0:
        s = (
            0.30 * min(1.0, m.face_sharpness / 150.0)
            + 0.20 * min(1.0, m.largest_face_ratio / 0.35)
            + 0.20 * _subject_exposure(subject.luma)
            + 0.10 * min(1.0, subject.sharpness / 200.0)
            + 0.10 * m.face_frames_fraction
            + 0.05 * (1.0 - min(1.0, abs(m.roll or 0.0) / 45.0))
            + 0.05 * (1.0 - min(1.0, subject.highlights_clipped / 0.05))
        )
    elif subject is not None:
        s = (
            0.45 * min(1.0, subject.sharpness / 200.0)
            + 0.30 * _subject_exposure(subject.luma)
            + 0.25 * min(1.0, m.contrast / 55.0)
        )
    else:
        s = (
            0.45 * min(1.0, m.sharpness / 200.0)
            + 0.30 * max(0.0, 1.0 - abs(m.mean_luma - 125.0) / 125.0)
            + 0.25 * min(1.0, m.contrast / 55.0)
        )
    return round(max(0.0, min(1.0, s - penalty)), 6)


def _embed_best(
    backend: FaceBackend,
    frames: Sequence[Frame],
    picks: Sequence[tuple[bool, float, int, DetectedFace]],
) -> list[np.ndarray]:
    """Embeddings of the largest face on the picked frames: the sharpest, largest frontal
    views first (the embedding is most reliable on those), then the best of the rest."""
    out: list[np.ndarray] = []
    embed = getattr(backend, "embed", None)
    for _, _, pos, face in picks:
        if embed is not None:
            e = embed(frames[pos].image, face)
        else:  # a backend without embed(): detect again on that frame, embedding the largest
            found = backend.detect(frames[pos].image, embed_largest=True)
            e = found[0].embedding if found else None
        if e is not None:
            out.append(e)
    return out


def measure(
    media: SampledMedia,
    backend: FaceBackend,
    people: PeopleDetector,
    *,
    clip_id: str,
    source_id: str,
    embed_frames: int = 2,
    people_frames: int = 3,
    body_keypoints: bool = False,
    text: TextReader | None = None,
    light_on: str = "subject",
) -> MeasuredClip:
    """``light_on``: the policy's (quality_score ranks the subject or the frame)."""
    frames = media.frames
    n = len(frames)

    def spread(k: int) -> set[int]:
        return {frames[i].index for i in np.linspace(0, n - 1, min(n, k)).round().astype(int)}

    # the body detector costs as much as the face detector; people who share the shot are
    # there for a good part of it, so a few frames spread over the clip are enough
    people_at = spread(people_frames)
    body_counts: list[int] = []
    full_bodies: list[bool] = []
    body_ratios: list[float] = []
    parts_seen: list[tuple[str, ...]] = []
    face_ratios, face_sharp, poses, exprs, counts, extras = [], [], [], [], [], []
    # (face sharpness * size, frame position, landmarks)
    best: tuple[float, int, np.ndarray | None] = (-1.0, 0, None)
    # (not frontal, -(face sharpness * size), frame position, largest face): embedding candidates
    candidates: list[tuple[bool, float, int, DetectedFace]] = []
    qualities, grays, smalls, flow_pairs = [], [], [], []
    # (frame position, quality, region as x/y/w/h fractions, found around a face)
    subjects: list[tuple[int, SubjectQuality, tuple[float, float, float, float], bool]] = []
    for pos, fr in enumerate(frames):
        img = fr.image
        h, w = img.shape[:2]
        # detect only; the ResNet embedding (the costliest step) runs afterwards on the frames
        # picked below, since identity is stable within a clip
        faces = backend.detect(img, embed_largest=False)
        counts.append(len(faces))
        # the frame at QUALITY_WIDTH: quality is measured on it, and the people detector,
        # whose models look at 224-256 px, starts from it when it is smaller than the frame
        views = frame_views(img)
        main = None  # this frame's main person, where people were looked for
        if fr.index in people_at:
            src, at = (views.small, views.f_small) if views.f_small < 1 else (img, 1.0)
            found = people.detect(src, [f.box.scaled(at) for f in faces], keypoints=body_keypoints)
            c, extra, main = _people_in_frame(found)
            if main is not None:  # in frame pixels (its head box places the subject region)
                main = main.scaled(1 / at)
            body_counts.append(c)
            extras.append(extra)
            full_bodies.append(bool(main is not None and main.full_body))
            if main is not None and main.full_body is not None:
                body_ratios.append(main.body_height_ratio)
            if body_keypoints:
                parts_seen.append(main.visible_keypoints if main is not None else ())
        if faces:
            f = faces[0]
            face_ratios.append(f.box.h / h)
            fs = face_sharpness(img, *f.box.clipped(w, h))
            face_sharp.append(fs)
            if f.landmarks is not None:
                p = estimate_pose(f.landmarks, w, h)
                if p is not None:
                    poses.append(p)
                candidates.append((p is None or bucket(p) != "frontal", -fs * f.box.h, pos, f))
                exprs.append(measure_expression(f.landmarks))
                if fs * f.box.h > best[0]:
                    best = (fs * f.box.h, pos, f.landmarks)
        qualities.append(measure_frame(img, views))
        grays.append(views.gray)
        smalls.append(views.small)
        # the subject: head and shoulders around the face; without a face (turned away, a pose
        # clip's small figure) around the main person's head box, light read on the region
        head = faces[0].box if faces else (main.box if main is not None else None)
        if head is not None:
            region = upper_body_box(head, w, h)
            sq = measure_subject(views, region, faces[0].box if faces else None)
            if sq is not None:
                subjects.append(
                    (pos, sq, (region.x / w, region.y / h, region.w / w, region.h / h), bool(faces))
                )
        if fr.next_small_gray is not None:
            flow_pairs.append((small_gray(img), fr.next_small_gray))

    m = ClipMetrics(
        clip_id=clip_id,
        path=str(media.path),
        source_id=source_id,
        kind=media.kind,
        width=media.width,
        height=media.height,
        fps=round(media.fps, 3),
        duration_s=round(media.duration_s, 3),
        frames_sampled=n,
    )
    m.face_frames_fraction = len(face_ratios) / n if n else 0.0
    m.max_faces = max(counts, default=0)
    # body hits come from few frames and are noisier than faces: they must repeat in half
    m.people_count = max(_persistent_count(counts), _persistent_count(body_counts, 0.5))
    m.bodies_without_face = _persistent_count(extras, 0.5)
    if body_counts:
        m.person_frames_fraction = round(float(np.mean([c > 0 for c in body_counts])), 4)
        m.full_body_fraction = round(float(np.mean(full_bodies)), 4)
    if body_ratios:
        m.body_height_ratio = round(float(np.median(body_ratios)), 4)
    if parts_seen:
        m.missing_body_parts = [
            part
            for part in BODY_PARTS
            if sum(part in seen for seen in parts_seen) * 2 < len(parts_seen)
        ]
    if face_ratios:
        m.largest_face_ratio = float(np.median(face_ratios))
        m.face_sharpness = float(np.median(face_sharp))
    if best[2] is not None:
        m.landmarks = np.round(np.asarray(best[2]), 1).tolist()
        m.best_frame_index = frames[best[1]].index
    if poses:
        pose = HeadPose(
            *(float(np.median([getattr(p, k) for p in poses])) for k in ("yaw", "pitch", "roll"))
        )
        m.yaw, m.pitch, m.roll = round(pose.yaw, 2), round(pose.pitch, 2), round(pose.roll, 2)
        m.angle_bucket = bucket(pose)
    if exprs:
        mars = [e.mouth_aspect_ratio for e in exprs]
        m.smiling_fraction = float(np.mean([e.smiling for e in exprs]))
        m.mouth_open_fraction = float(np.mean([e.mouth_open for e in exprs]))
        m.eyes_closed_fraction = float(np.mean([e.eyes_closed for e in exprs]))
        m.mouth_ratio_std = float(np.std(mars)) if len(mars) > 1 else 0.0
        m.talking = (
            media.kind == "video" and len(mars) >= 3 and m.mouth_ratio_std >= TALKING_MAR_STD
        )
        m.expression = expression_label(
            m.smiling_fraction, m.mouth_open_fraction, m.talking, m.eyes_closed_fraction
        )
    embeds = _embed_best(backend, frames, sorted(candidates, key=lambda c: c[:3])[:embed_frames])
    if embeds:
        m.embedding = normalize(np.mean(embeds, axis=0)).round(6).tolist()

    def med(k: str) -> float:
        return float(np.median([getattr(q, k) for q in qualities]))

    m.sharpness = med("sharpness")
    m.mean_luma = med("mean_luma")
    m.highlights_clipped = med("highlights_clipped")
    m.shadows_clipped = med("shadows_clipped")
    m.contrast = med("contrast")
    m.blockiness = med("blockiness")
    m.letterbox_fraction = med("bar_top") + med("bar_bottom")
    m.pillarbox_fraction = med("bar_left") + med("bar_right")
    m.color_temp_ratio = med("color_temp_ratio")
    m.noise = med("noise")
    m.lighting = lighting_bucket(m.mean_luma, m.contrast, m.color_temp_ratio)
    if subjects:
        # medians over the frames that show the subject: a frame where the face is missed does
        # not pull the subject's light toward the background's
        # face frames when there are any: a body region is the fallback, not a second opinion
        use = [s for s in subjects if s[3]] or subjects

        def smed(k: str) -> float:
            return round(float(np.median([getattr(sq, k) for _, sq, _, _ in use])), 4)

        m.subject_source = "face" if use[0][3] else "person"
        m.subject_luma = smed("luma")
        m.subject_highlights_clipped = smed("highlights_clipped")
        m.subject_shadows_clipped = smed("shadows_clipped")
        m.subject_sharpness = smed("sharpness")
        m.subject_noise = smed("noise")
        at_best = [r for p, _, r, _ in use if frames[p].index == m.best_frame_index]
        m.subject_box = [round(v, 4) for v in (at_best or [use[0][2]])[0]]
        m.subject_frames = [frames[p].index for p, _, _, _ in use]

    # black bars are static edges too: look for overlays inside the picture only
    gh, gw = grays[0].shape
    # plus a few pixels: the bar's own edge is static too
    t, b = (round(med(k) * gh) + 4 * (med(k) > 0) for k in ("bar_top", "bar_bottom"))
    lft, r = (round(med(k) * gw) + 4 * (med(k) > 0) for k in ("bar_left", "bar_right"))
    ov = measure_overlays(
        grays,
        images=smalls,
        indices=[f.index for f in frames],
        inner=(lft, t, gw - r, gh - b),
        reader=text or default_reader(),
    )
    m.burned_in_text, m.logo_or_watermark = ov.burned_in_text, ov.logo_or_watermark
    m.text_frames_fraction = ov.text_frames_fraction
    m.static_overlay_fraction = float(ov.static_overlay_fraction)
    m.text_evidence = [e.as_dict() for e in ov.text]
    m.watermark_evidence = [e.as_dict() for e in ov.watermarks]
    m.scene_text = bool(ov.scene_text)
    m.scene_text_evidence = [e.as_dict() for e in ov.scene_text]
    m.corner_mark_evidence = [e.as_dict() for e in ov.corner_marks]
    m.camera_shift = round(ov.camera_shift, 4)
    m.ocr_frames = ov.ocr_frames

    flows = [dense_flow(a, b) for a, b in flow_pairs]  # once, for both readings
    mo = classify(flow_pairs, media.fps, flows)
    m.motion, m.motion_speed, m.motion_jitter = mo.label, mo.mean_speed, mo.jitter
    md = direction(flow_pairs, media.fps, flows)
    m.motion_direction, m.motion_direction_rate = md.label, md.rate

    picks = np.linspace(0, n - 1, min(n, PHASH_FRAMES)).round().astype(int)
    # phash looks at a 32x32 DCT: shrink with cv2 first (from the QUALITY_WIDTH copy: from the
    # full frame costs ~2 ms more), PIL's full-size resample is slow
    if media.signature is not None:
        m.signature = np.ascontiguousarray(media.signature).tobytes()
        m.signature_fps = media.signature_fps or media.fps
    m.phashes = [
        str(
            imagehash.phash(
                Image.fromarray(
                    cv2.cvtColor(
                        cv2.resize(smalls[i], (128, 128), interpolation=cv2.INTER_AREA),
                        cv2.COLOR_BGR2RGB,
                    )
                )
            )
        )
        for i in sorted(set(picks.tolist()))
    ]
    for k in (
        "sharpness",
        "mean_luma",
        "highlights_clipped",
        "shadows_clipped",
        "contrast",
        "blockiness",
        "letterbox_fraction",
        "pillarbox_fraction",
        "color_temp_ratio",
        "largest_face_ratio",
        "face_sharpness",
        "face_frames_fraction",
        "smiling_fraction",
        "mouth_open_fraction",
        "mouth_ratio_std",
        "eyes_closed_fraction",
        "motion_speed",
        "motion_jitter",
        "text_frames_fraction",
        "static_overlay_fraction",
        "noise",
    ):
        setattr(m, k, round(float(getattr(m, k)), 4))
    m.quality_score = quality_score(m, light_on)

    thumb_src = next((f.image for f in frames if f.index == m.best_frame_index), frames[0].image)
    th, tw = thumb_src.shape[:2]
    tf = min(1.0, 320 / tw)
    thumb = cv2.resize(thumb_src, (round(tw * tf), round(th * tf)), interpolation=cv2.INTER_AREA)
    return MeasuredClip(m, thumb)
