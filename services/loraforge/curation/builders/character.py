"""Character datasets: the subject isolated from other people, optionally also cut out on a plain
background (seed 003: "segmented character instances, identity clustering, plain background").

Who the subject is was decided before the builder: the reference photos, else the identity
cluster the user picked (policy.identity_cluster), else the one alone in the most clips
(identity.assign, HDBSCAN on the face embeddings of all sources); curation kept and selected that
identity's clips.
With the default one-person policy (max_people 1) the kept clips are the items as they are.
With max_people unset or above 1, per selected clip a few measured frames (the sharpest
first) are checked:
- nobody else in any of them: the clip itself is the item (a video model trains on motion);
- someone else in a frame (a clip let through with max_people above 1 or unset, or a person
  the clip-level count did not hold): that frame becomes an image item with the subject
  isolated: cropped to the subject when a crop leaves the others out (`subject_crop`), else
  the others filled in (`others_filled`, OpenCV inpainting; dropped as `too_much_fill` above
  `max_fill_fraction`); a frame where the subject and another person are one blob of the
  person mask is dropped (`others_touching`): no crop or fill separates them;
- with `cutout`, each checked frame also gives the subject cut out on a plain background
  (`cutout`), beside the full frame.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from loraforge.curation.builders import BuildContext, BuildResult, Dropped, Item, apply_size_range
from loraforge.curation.builders.background import spread
from loraforge.curation.builders.inpaint import OpenCVInpainter
from loraforge.curation.builders.masks import person_mask
from loraforge.curation.builders.media import write_image
from loraforge.curation.geometry import Box

# Crop margin around the subject's mask, a share of its size on each side: room for the hair
# and the hands the dilation may not have reached, and some context for the caption.
CROP_MARGIN = 0.12
# A crop may hold this share of its pixels of another person's mask (a sliver of a shoulder at
# the edge) and still count as leaving them out.
CROP_OTHERS_MAX = 0.01
# smallest blob of the mask outside the subject's that counts as another person (people.py
# counts a mask region from 1.2 % of the frame; half of it here, the dilation aside)
MIN_OTHER_FRACTION = 0.006
# Filling others in: as the background builder, a quarter of the frame (builders/background.py).
MAX_FILL_FRACTION = 0.25


class CharacterOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    frames_per_clip: int = Field(
        default=2, ge=1, le=16, description="frames checked (and used) per clip"
    )
    cutout: bool = Field(
        default=False, description="also the subject cut out on a plain background"
    )
    cutout_color: tuple[int, int, int] = Field(
        default=(255, 255, 255), description="plain background, RGB"
    )
    max_fill_fraction: float = Field(default=MAX_FILL_FRACTION, gt=0, le=1)


def _subject_component(mask: np.ndarray, head: Box) -> np.ndarray | None:
    """The person-mask blob holding the subject's head (the face box's centre, else its
    nearest mask pixel within one face size)."""
    _n, labels = cv2.connectedComponents(mask.astype(np.uint8))
    h, w = mask.shape
    cx, cy = (int(min(w - 1, max(0, v))) for v in head.center)
    lab = labels[cy, cx]
    if lab == 0:
        x0, y0, x1, y1 = Box(
            head.x - 0.5 * head.w, head.y - 0.5 * head.h, 2 * head.w, 2 * head.h
        ).clipped(w, h)
        window = labels[y0:y1, x0:x1]
        if not window.any():
            return None
        lab = int(np.bincount(window[window > 0]).argmax())
    component: np.ndarray = labels == lab
    return component


def _own_part(blob: np.ndarray, head: Box, heads: list[Box]) -> np.ndarray:
    """The subject's part of a mask blob that holds other people too (standing close, or joined
    by the dilation): each pixel goes to the head it lies under, by horizontal distance from
    the head's centre in head widths (a body hangs below its head; people.py's body band),
    pixels above a head's top counting only for heads they are above nothing else of."""
    others = [b for b in heads if not _same_head(b, head)]
    if not others:
        return blob
    ys, xs = np.nonzero(blob)

    def cost(b: Box) -> np.ndarray:
        cx, _ = b.center
        above = ys < b.y - 0.5 * b.h
        c: np.ndarray = np.abs(xs - cx) / max(b.w, 1.0) + 4.0 * above
        return c

    mine = cost(head)
    best_other = np.min(np.stack([cost(b) for b in others]), axis=0)
    out: np.ndarray = np.zeros_like(blob)
    out[ys[mine <= best_other], xs[mine <= best_other]] = True
    return out


def _same_head(a: Box, b: Box) -> bool:
    ax, ay = a.center
    return b.x - 0.5 * b.w <= ax <= b.x2 + 0.5 * b.w and b.y - 0.5 * b.h <= ay <= b.y2 + 0.5 * b.h


def _people_only(others: np.ndarray) -> np.ndarray:
    """The blobs of the mask outside the subject's that are big enough to be a person (a
    person a quarter of the frame high is 2-3 % of it, people.py); crumbs of the segmenter are
    not someone to remove."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(others.astype(np.uint8))
    keep = np.zeros_like(others, bool)
    for lab in range(1, n):
        if stats[lab, cv2.CC_STAT_AREA] >= MIN_OTHER_FRACTION * others.size:
            keep |= labels == lab
    return keep


def _bbox(mask: np.ndarray, margin: float) -> tuple[int, int, int, int]:
    h, w = mask.shape
    ys, xs = np.where(mask)
    x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    mx, my = int(margin * (x1 - x0)), int(margin * (y1 - y0))
    return int(max(0, x0 - mx)), int(max(0, y0 - my)), int(min(w, x1 + mx)), int(min(h, y1 + my))


class CharacterBuilder:
    lora_type = "character"
    Options = CharacterOptions

    def build(self, ctx: BuildContext) -> BuildResult:
        opt: CharacterOptions = ctx.options or CharacterOptions()
        fill = OpenCVInpainter()
        items: list[Item] = []
        dropped: list[Dropped] = []
        isolated = 0
        # with the default one-person policy the clips kept have nobody else in them: they are
        # the items as they are, and no frame is decoded unless cut-outs are asked for
        isolate = ctx.policy.max_people is None or ctx.policy.max_people > 1
        for c in ctx.selected:
            m = c.metrics
            if not isolate and not opt.cutout:
                items.append(
                    Item(
                        m.clip_id,
                        m.clip_id,
                        None,
                        "video" if m.kind == "video" else "image",
                        None,
                        "full",
                        {"others_seen": False},
                    )
                )
                continue
            indices = spread(ctx.sampled(m.clip_id), opt.frames_per_clip, m.best_frame_index)
            frame_items: list[Item] = []
            others_seen = False
            cutouts: list[Item] = []
            for idx, frame in ctx.frames(m.clip_id, indices):
                faces = ctx.backend.detect(frame, embed_largest=False) if ctx.backend else []
                pm = person_mask(ctx.people, frame, [f.box for f in faces])
                head = faces[0].box if faces else (pm.heads[0] if pm.heads else None)
                subject = None
                if head is not None and pm.mask.any():
                    blob = _subject_component(pm.mask, head)
                    if blob is not None:
                        subject = _own_part(blob, head, pm.heads)
                if subject is None:
                    dropped.append(
                        Dropped(
                            m.clip_id,
                            "no_subject",
                            "no_subject: the subject's head is not on the "
                            "person mask in this frame",
                            idx,
                        )
                    )
                    continue
                others = _people_only(pm.mask & ~subject)
                base = f"{m.clip_id}-f{idx:05d}"
                ev = {
                    "people": pm.count,
                    "subject_fraction": round(float(subject.mean()), 4),
                    "others_fraction": round(float(others.mean()), 4),
                }
                if opt.cutout:
                    cutouts.append(self._cutout(ctx, m.clip_id, base, idx, frame, subject, opt, ev))
                if not others.any() or not isolate:
                    continue
                others_seen = True
                x0, y0, x1, y1 = _bbox(subject, CROP_MARGIN)
                inside = float(others[y0:y1, x0:x1].mean())
                if inside <= CROP_OTHERS_MAX:
                    path = ctx.item_path(m.clip_id, f"{base}-crop.png")
                    write_image(ctx.out_dir / path, frame[y0:y1, x0:x1])
                    frame_items.append(
                        Item(
                            f"{base}-crop",
                            m.clip_id,
                            path,
                            "image",
                            idx,
                            "subject_crop",
                            {
                                **ev,
                                "crop": [x0, y0, x1 - x0, y1 - y0],
                                "others_in_crop": round(inside, 4),
                            },
                        )
                    )
                    continue
                if float(others.mean()) > opt.max_fill_fraction:
                    dropped.append(
                        Dropped(
                            m.clip_id,
                            "too_much_fill",
                            f"too_much_fill: other people cover {others.mean():.0%} of the frame, "
                            f"more than would be filled in ({opt.max_fill_fraction:.0%})",
                            idx,
                            ev,
                        )
                    )
                    continue
                if (
                    cv2.dilate(others.astype(np.uint8), np.ones((5, 5), np.uint8))
                    .astype(bool)[subject]
                    .mean()
                    > 0.05
                ):
                    dropped.append(
                        Dropped(
                            m.clip_id,
                            "others_touching",
                            "others_touching: another person overlaps the subject; no crop or fill "
                            "separates them",
                            idx,
                            ev,
                        )
                    )
                    continue
                path = ctx.item_path(m.clip_id, f"{base}-isolated.png")
                write_image(ctx.out_dir / path, fill.fill(frame, others))
                frame_items.append(
                    Item(
                        f"{base}-isolated",
                        m.clip_id,
                        path,
                        "image",
                        idx,
                        "others_filled",
                        {**ev, "inpainter": fill.name},
                    )
                )
            if not others_seen:  # the clip (or photo) itself
                items.append(
                    Item(
                        m.clip_id,
                        m.clip_id,
                        None,
                        "video" if m.kind == "video" else "image",
                        None,
                        "full",
                        {"others_seen": False},
                    )
                )
            else:
                isolated += 1
                dropped.append(
                    Dropped(
                        m.clip_id,
                        "clip_has_others",
                        "clip_has_others: another person is in the clip, so its frames with the "
                        f"subject isolated replace it ({len(frame_items)} kept)",
                        None,
                        {"frames": [it.frame_index for it in frame_items]},
                    )
                )
                items.extend(frame_items)
            items.extend(cutouts)
        clusters: dict[str, list[str]] = {}
        for r in ctx.result.clips:
            if r.metrics.identity_cluster is not None:
                clusters.setdefault(str(r.metrics.identity_cluster), []).append(r.metrics.clip_id)
        summary = {
            "identity_clusters": {
                k: {"clips": len(v), "examples": v[:8]} for k, v in sorted(clusters.items())
            },
            "identity_cluster": ctx.policy.identity_cluster,
            "by_reference": bool(ctx.references),
            "clips_isolated": isolated,
            "cutout": opt.cutout,
        }
        missing = []
        if len(clusters) > 1 and ctx.policy.identity_cluster is None and not ctx.references:
            chosen = next(
                (
                    r.metrics.identity_cluster
                    for r in ctx.result.clips
                    if r.metrics.identity_match and r.metrics.identity_cluster is not None
                ),
                0,
            )
            missing.append(
                f"the faces form {len(clusters)} identity clusters; this set is of cluster "
                f"{chosen}, the person alone in the most clips; pick another with "
                "--identity-cluster N or give a reference photo"
            )
        build = BuildResult(items, dropped, summary, missing)
        if any(it.path is not None for it in items):
            # frames were derived (isolated subjects, cut-outs): seed 003's range for character
            # frames (size_range.py); clips kept as they are stay as curation selected them
            apply_size_range(
                build,
                "character",
                "image",
                dict(ctx.policy.build_options),
                ctx.result.rejection_counts(),
            )
        return build

    @staticmethod
    def _cutout(
        ctx: BuildContext,
        clip_id: str,
        base: str,
        idx: int,
        frame: np.ndarray,
        subject: np.ndarray,
        opt: CharacterOptions,
        ev: dict[str, Any],
    ) -> Item:
        """The subject on a plain background, cropped around them; the mask's edge softened
        over 2 px so the cut does not leave a jagged halo."""
        x0, y0, x1, y1 = _bbox(subject, CROP_MARGIN)
        alpha = cv2.GaussianBlur(subject.astype(np.float32), (5, 5), 0)[y0:y1, x0:x1, None]
        plain = np.empty_like(frame[y0:y1, x0:x1], dtype=np.float32)
        plain[:] = opt.cutout_color[::-1]  # RGB option, BGR image
        out = (frame[y0:y1, x0:x1].astype(np.float32) * alpha + plain * (1 - alpha)).astype(
            np.uint8
        )
        path = ctx.item_path(clip_id, f"{base}-cutout.png")
        write_image(ctx.out_dir / path, out)
        return Item(
            f"{base}-cutout",
            clip_id,
            path,
            "image",
            idx,
            "cutout",
            {**ev, "crop": [x0, y0, x1 - x0, y1 - y0], "background": list(opt.cutout_color)},
        )
