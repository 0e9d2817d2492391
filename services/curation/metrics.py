"""Measure one clip or photo: faces, pose, expression, people, quality, overlays, motion.

Per-frame numbers are reduced to one value per clip with medians (robust to a frame where the
detector slips) and fractions of frames (for things that come and go: a face, a smile).
"""

from __future__ import annotations

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
from loraforge.curation.frames import SampledMedia, small_gray
from loraforge.curation.geometry import contains_point
from loraforge.curation.motion import classify
from loraforge.curation.overlays import measure_overlays
from loraforge.curation.people import PeopleDetector
from loraforge.curation.pose import HeadPose, bucket, estimate_pose
from loraforge.curation.quality import (
    face_sharpness,
    lighting_bucket,
    measure_frame,
    to_quality_scale,
)

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
    burned_in_text: bool = False
    logo_or_watermark: bool = False
    text_frames_fraction: float = 0.0
    static_overlay_fraction: float = 0.0
    motion: str = "static"
    motion_speed: float = 0.0
    motion_jitter: float = 0.0
    phashes: list[str] = field(default_factory=list)
    best_frame_index: int = 0
    quality_score: float = 0.0

    @property
    def short_side(self) -> int:
        return min(self.width, self.height)


@dataclass
class MeasuredClip:
    metrics: ClipMetrics
    thumbnail: np.ndarray  # BGR, best frame, at most 320 px wide


def _people_in_frame(faces: list[DetectedFace], bodies) -> tuple[int, int]:
    """Faces plus bodies that hold no detected face (someone turned away, or too small)."""
    extra = 0
    for b in bodies:
        if not any(contains_point(b.box, *f.box.center) for f in faces):
            extra += 1
    return len(faces) + extra, extra


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


def quality_score(m: ClipMetrics) -> float:
    """0..1 ranking score among accepted clips: sharp, large, well exposed faces first."""
    if m.face_frames_fraction == 0:
        return 0.0
    s = (
        0.35 * min(1.0, m.face_sharpness / 150.0)
        + 0.20 * min(1.0, m.largest_face_ratio / 0.35)
        + 0.15 * max(0.0, 1.0 - abs(m.mean_luma - 125.0) / 125.0)
        + 0.10 * min(1.0, m.contrast / 55.0)
        + 0.10 * min(1.0, m.sharpness / 200.0)
        + 0.10 * m.face_frames_fraction
    )
    s -= 0.1 * max(0.0, m.blockiness - 1.2) + 0.2 * (m.motion == "shaky")
    return round(max(0.0, min(1.0, s)), 6)


def _embed_best(backend: FaceBackend, frames, picks) -> list[np.ndarray]:
    """Embeddings of the largest face on the picked frames: the sharpest, largest frontal
    views first (the embedding is most reliable on those), then the best of the rest."""
    out = []
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
) -> MeasuredClip:
    frames = media.frames
    n = len(frames)
    spread = lambda k: {frames[i].index for i in np.linspace(0, n - 1, min(n, k)).round().astype(int)}  # noqa: E731
    # the body detector costs as much as the face detector; people who share the shot are
    # there for a good part of it, so a few frames spread over the clip are enough
    people_at = spread(people_frames)
    body_counts: list[int] = []
    face_ratios, face_sharp, poses, exprs, counts, extras = [], [], [], [], [], []
    best = (-1.0, 0, None)  # (face sharpness * size, frame position, landmarks)
    # (not frontal, -(face sharpness * size), frame position, largest face): embedding candidates
    candidates: list[tuple[bool, float, int, DetectedFace]] = []
    qualities, grays, flow_pairs = [], [], []
    for pos, fr in enumerate(frames):
        img = fr.image
        h, w = img.shape[:2]
        # detect only; the ResNet embedding (the costliest step) runs afterwards on the frames
        # picked below, since identity is stable within a clip
        faces = backend.detect(img, embed_largest=False)
        counts.append(len(faces))
        if fr.index in people_at:
            c, extra = _people_in_frame(faces, people.detect(img))
            body_counts.append(c)
            extras.append(extra)
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
        small = to_quality_scale(img)
        qualities.append(measure_frame(small))
        grays.append(cv2.cvtColor(small, cv2.COLOR_BGR2GRAY))
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
    if face_ratios:
        m.largest_face_ratio = float(np.median(face_ratios))
        m.face_sharpness = float(np.median(face_sharp))
    if best[2] is not None:
        m.landmarks = np.round(np.asarray(best[2]), 1).tolist()
        m.best_frame_index = frames[best[1]].index
    if poses:
        pose = HeadPose(*(float(np.median([getattr(p, k) for p in poses])) for k in ("yaw", "pitch", "roll")))
        m.yaw, m.pitch, m.roll = round(pose.yaw, 2), round(pose.pitch, 2), round(pose.roll, 2)
        m.angle_bucket = bucket(pose)
    if exprs:
        mars = [e.mouth_aspect_ratio for e in exprs]
        m.smiling_fraction = float(np.mean([e.smiling for e in exprs]))
        m.mouth_open_fraction = float(np.mean([e.mouth_open for e in exprs]))
        m.eyes_closed_fraction = float(np.mean([e.eyes_closed for e in exprs]))
        m.mouth_ratio_std = float(np.std(mars)) if len(mars) > 1 else 0.0
        m.talking = media.kind == "video" and len(mars) >= 3 and m.mouth_ratio_std >= TALKING_MAR_STD
        m.expression = expression_label(
            m.smiling_fraction, m.mouth_open_fraction, m.talking, m.eyes_closed_fraction
        )
    embeds = _embed_best(backend, frames, sorted(candidates, key=lambda c: c[:3])[:embed_frames])
    if embeds:
        m.embedding = normalize(np.mean(embeds, axis=0)).round(6).tolist()

    med = lambda k: float(np.median([getattr(q, k) for q in qualities]))  # noqa: E731
    m.sharpness = med("sharpness")
    m.mean_luma = med("mean_luma")
    m.highlights_clipped = med("highlights_clipped")
    m.shadows_clipped = med("shadows_clipped")
    m.contrast = med("contrast")
    m.blockiness = med("blockiness")
    m.letterbox_fraction = med("bar_top") + med("bar_bottom")
    m.pillarbox_fraction = med("bar_left") + med("bar_right")
    m.color_temp_ratio = med("color_temp_ratio")
    m.lighting = lighting_bucket(m.mean_luma, m.contrast, m.color_temp_ratio)

    # black bars are static edges too: look for overlays inside the picture only
    gh, gw = grays[0].shape
    # plus a few pixels: the bar's own edge is static too
    t, b = (round(med(k) * gh) + 4 * (med(k) > 0) for k in ("bar_top", "bar_bottom"))
    lft, r = (round(med(k) * gw) + 4 * (med(k) > 0) for k in ("bar_left", "bar_right"))
    ov = measure_overlays([g[t : gh - b, lft : gw - r] for g in grays] if t + b < gh - 16 and lft + r < gw - 16 else grays)
    m.burned_in_text, m.logo_or_watermark = ov.burned_in_text, ov.logo_or_watermark
    m.text_frames_fraction = ov.text_frames_fraction
    m.static_overlay_fraction = float(ov.static_overlay_fraction)

    mo = classify(flow_pairs, media.fps)
    m.motion, m.motion_speed, m.motion_jitter = mo.label, mo.mean_speed, mo.jitter

    picks = np.linspace(0, n - 1, min(n, PHASH_FRAMES)).round().astype(int)
    # phash looks at a 32x32 DCT: shrink with cv2 first, PIL's full-size resample is slow
    m.phashes = [
        str(imagehash.phash(Image.fromarray(cv2.cvtColor(
            cv2.resize(frames[i].image, (128, 128), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB
        ))))
        for i in sorted(set(picks.tolist()))
    ]
    for k in ("sharpness", "mean_luma", "highlights_clipped", "shadows_clipped", "contrast",
              "blockiness", "letterbox_fraction", "pillarbox_fraction", "color_temp_ratio",
              "largest_face_ratio", "face_sharpness", "face_frames_fraction", "smiling_fraction",
              "mouth_open_fraction", "mouth_ratio_std", "eyes_closed_fraction", "motion_speed",
              "motion_jitter", "text_frames_fraction", "static_overlay_fraction"):
        setattr(m, k, round(float(getattr(m, k)), 4))
    m.quality_score = quality_score(m)

    thumb_src = next((f.image for f in frames if f.index == m.best_frame_index), frames[0].image)
    th, tw = thumb_src.shape[:2]
    tf = min(1.0, 320 / tw)
    thumb = cv2.resize(thumb_src, (round(tw * tf), round(th * tf)), interpolation=cv2.INTER_AREA)
    return MeasuredClip(m, thumb)
