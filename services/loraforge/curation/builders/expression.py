"""Expression dataset: face crops with margin, an expression class per clip, balanced.

For every kept clip (the selection first) the face is found on the frames curation sampled,
its shape measured (``expression.measure_face_shape``: mouth width and corner lift, mouth and
eye aspect, brow height and inner-brow gap against the inter-ocular distance) and the clip
classed (``expression.classify_clip``: neutral, smile, laughing, talking, serious, surprised),
with the person's resting brows taken from the median over the whole set. One crop per clip is
written, ``derived/<clip_id>/face.png``: a square around the face with the face box at 50 % of
its height (seed 003: 40-60 %), from the frame that shows the clip's class with the largest,
sharpest face, at the clip's own resolution (never upscaled). In a video set the item is the
clip itself cropped to a fixed square around the face (``derived/<clip_id>/face.mp4``, the still
beside it as evidence), since talking and laughter are motion; a face that moves out of a fixed
crop leaves the still as the item, with the reason. Balance (``balance.py``) keeps any class
under ``max_class_share`` of the target; ``expressions`` keeps only the classes named.
"""

from __future__ import annotations

from typing import Any, Literal

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from loraforge.curation.balance import Candidate
from loraforge.curation.builders import BuildContext, BuildResult, Dropped, ItemKind
from loraforge.curation.builders.labelled import candidates, finish, read, score_of
from loraforge.curation.builders.media import write_image
from loraforge.curation.expression import (
    CROP_MAX_FRACTION,
    EXPRESSION_CLASSES,
    FaceShape,
    baseline_of,
    classify_clip,
    classify_face,
    face_crop_box,
    measure_face_shape,
)
from loraforge.curation.faces import DetectedFace
from loraforge.curation.geometry import Box
from loraforge.curation.quality import face_sharpness
from loraforge.ingest.tools import MediaTools, run, tail

ExpressionName = Literal["neutral", "smile", "laughing", "talking", "serious", "surprised"]


class ExpressionOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    expressions: list[ExpressionName] | None = Field(
        default=None, description="keep only these classes"
    )
    # seed 002: "too many smiling photos -> the model always smiles"; six classes, none above 40 %
    max_class_share: float = Field(
        default=0.4, gt=0, le=1, description="most of the target one class may fill"
    )
    face_fraction: float = Field(
        default=0.5, ge=0.4, le=0.6, description="face box height / crop height"
    )
    # a face crop trained at 512 px from under 256 px is a 2x upscale: soft, and the LoRA learns
    # the softness. Test clips (480x360, faces of ~90 px) set it lower
    min_crop_px: int = Field(default=256, ge=32, description="crops smaller than this are left out")
    max_crop_px: int = Field(
        default=1024, ge=64, description="larger crops are scaled down to this"
    )
    clips: bool = Field(
        default=True, description="video sets: the item is the clip cropped to the face"
    )


# a face found on a sampled frame: (frame index, the face, its shape, size x sharpness)
_FaceSeen = tuple[int, DetectedFace, FaceShape, float]

# the fixed crop of a clip: the face's share of it on every sampled frame must stay in this
# range (a little wider than the still's 40-60 %: a head moves as it talks)
CLIP_FACE_RANGE = (0.35, 0.65)


def _crop_clip(
    ctx: BuildContext, cid: str, boxes: list[Box], w: int, h: int, opts: ExpressionOptions
) -> tuple[str | None, str | None]:
    """(derived path of the face-cropped clip, None) or (None, why not)."""
    mx, my, mw, mh = (
        float(np.median([getattr(b, k) for b in boxes])) for k in ("x", "y", "w", "h")
    )
    box = face_crop_box(mx, my, mw, mh, w, h, opts.face_fraction)
    if box is None:
        return None, "the face is too large for a fixed crop"
    (x, y, side, _), _ = box
    x, y, side = x - x % 2, y - y % 2, side - side % 2  # 4:2:0 video: even offsets and size
    for b in boxes:
        share = max(b.w, b.h) / side
        if (
            not (CLIP_FACE_RANGE[0] <= share <= CLIP_FACE_RANGE[1])
            or b.x < x
            or b.y < y
            or b.x2 > x + side
            or b.y2 > y + side
        ):
            return None, (
                f"the face moves out of a fixed crop (its share {share:.0%}, "
                f"range {CLIP_FACE_RANGE[0]:.0%}-{CLIP_FACE_RANGE[1]:.0%}); the still is the item"
            )
    out = min(side, opts.max_crop_px)
    out -= out % 2
    rel = ctx.item_path(cid, "face.mp4")
    dst = ctx.out_dir / rel
    dst.parent.mkdir(parents=True, exist_ok=True)
    # crf 18: visually lossless, so the crop adds no visible generation to the clip's own encode
    res = run(
        [
            MediaTools.discover().ffmpeg,
            "-y",
            "-v",
            "error",
            "-i",
            str(ctx.clip_path(cid)),
            "-vf",
            f"crop={side}:{side}:{x}:{y},scale={out}:{out}:flags=area",
            "-an",
            "-c:v",
            "libx264",
            "-crf",
            "18",
            "-preset",
            "veryfast",
            "-pix_fmt",
            "yuv420p",
            str(dst),
        ],
        timeout=600,
    )
    if res.returncode != 0 or not dst.is_file():
        return None, f"ffmpeg could not crop the clip: {tail(res.stderr)}"
    return rel, None


class ExpressionBuilder:
    lora_type = "expression"
    Options = ExpressionOptions

    def build(self, ctx: BuildContext) -> BuildResult:
        opts: ExpressionOptions = ctx.options or ExpressionOptions()
        if ctx.backend is None:
            raise RuntimeError("the expression builder needs the face backend curation loaded")
        selected_ids = {c.metrics.clip_id for c in ctx.selected}
        cands, dropped = candidates(ctx)
        # clip -> [(frame index, face, shape, size x sharpness)]; frames are not kept (a set of
        # hundreds of 1080p clips would not fit in memory): the chosen one is decoded again
        faces: dict[str, list[_FaceSeen] | None] = {}
        for c in cands:
            cid = c.metrics.clip_id
            found: list[_FaceSeen] = []
            frames = read(ctx, cid, ctx.sampled(cid), dropped)
            faces[cid] = None if not frames else found
            for idx, img in frames:
                det = ctx.backend.detect(img, embed_largest=False)
                f = det[0] if det else None
                if f is not None and f.landmarks is not None:
                    rank = f.box.h * face_sharpness(img, *f.box.clipped(img.shape[1], img.shape[0]))
                    found.append((idx, f, measure_face_shape(f.landmarks), rank))
        baseline = baseline_of([f[2] for seen in faces.values() if seen for f in seen])

        labelled: list[Candidate] = []
        evidence: dict[str, dict[str, Any]] = {}
        paths: dict[str, str] = {}
        kinds: dict[str, ItemKind] = {}
        frame_of: dict[str, int] = {}
        for c in cands:
            cid, m = c.metrics.clip_id, c.metrics
            seen = faces[cid]
            if seen is None:  # unreadable: dropped already
                continue
            if not seen:
                dropped.append(
                    Dropped(
                        cid,
                        "no_face_found",
                        "no_face_found: no face with landmarks on the frames curation sampled",
                    )
                )
                continue
            label, why, per = classify_clip([f[2] for f in seen], m.kind == "video", baseline)
            ev: dict[str, Any] = {
                "expression": label,
                "why": why,
                "frame_classes": per,
                "baseline": None
                if baseline is None
                else {
                    "brow_height": round(baseline.brow_height, 4),
                    "inner_brow_gap": round(baseline.inner_brow_gap, 4),
                },
            }
            if opts.expressions is not None and label not in opts.expressions:
                dropped.append(
                    Dropped(
                        cid,
                        "expression_not_wanted",
                        f"expression_not_wanted: {label} ({why}); "
                        f"this set keeps {', '.join(opts.expressions)}",
                        evidence=ev,
                    )
                )
                continue
            # the frame that shows the clip's class (talking: any), largest and sharpest face
            fits = [
                f for f, k in zip(seen, per, strict=True) if k == label or label == "talking"
            ] or seen
            idx, face, shape, _ = max(fits, key=lambda f: f[3])
            again = read(ctx, cid, [idx], dropped)
            if not again:
                continue
            img = again[0][1]
            h, w = img.shape[:2]
            box = face_crop_box(
                face.box.x, face.box.y, face.box.w, face.box.h, w, h, opts.face_fraction
            )
            ev.update(
                frame=idx,
                face_box=[round(v, 1) for v in (face.box.x, face.box.y, face.box.w, face.box.h)],
                shape=shape.as_dict(),
                frame_class_why=classify_face(shape, baseline)[1],
            )
            if box is None:
                dropped.append(
                    Dropped(
                        cid,
                        "face_too_large",
                        f"face_too_large: the face is {face.box.h / min(w, h):.0%} "
                        "of the frame's short side; a crop needs it at most "
                        f"{CROP_MAX_FRACTION:.0%}",
                        idx,
                        ev,
                    )
                )
                continue
            (x, y, side, _), share = box
            ev.update(crop_box=[x, y, side, side], face_fraction=round(share, 4))
            if side < opts.min_crop_px:
                dropped.append(
                    Dropped(
                        cid,
                        "crop_too_small",
                        f"crop_too_small: {side} px around a "
                        f"{face.box.h:.0f} px face (min {opts.min_crop_px}); use closer or "
                        "higher-resolution footage",
                        idx,
                        ev,
                    )
                )
                continue
            crop = img[y : y + side, x : x + side]
            if side > opts.max_crop_px:
                crop = cv2.resize(
                    crop, (opts.max_crop_px, opts.max_crop_px), interpolation=cv2.INTER_AREA
                )
            rel = ctx.item_path(cid, "face.png")
            write_image(ctx.out_dir / rel, crop)
            ev["size_px"] = int(crop.shape[0])
            evidence[cid], paths[cid], frame_of[cid] = ev, rel, idx
            if m.kind == "video" and opts.clips:
                # a video LoRA learns talking and laughter as motion: the clip cropped to a fixed
                # square around the face's median box, when the face stays 35-65 % of it and
                # inside it on every sampled frame (else the still is the item, and says why)
                clip_rel, why_not = _crop_clip(ctx, cid, [f[1].box for f in seen], w, h, opts)
                ev["clip_crop"] = why_not or "ok"
                if clip_rel is not None:
                    ev["still"] = rel
                    paths[cid], kinds[cid] = clip_rel, "video"
                    frame_of.pop(cid)
            labelled.append(Candidate(cid, label, score_of(c, selected_ids)))
        build = finish(
            ctx,
            labelled,
            evidence,
            dropped,
            opts.max_class_share,
            "expression",
            EXPRESSION_CLASSES,
            item_path=paths,
            frame_index=frame_of,
            item_kind=kinds,
        )
        for d in build.dropped:  # a capped clip's still is not uploaded either
            if d.code == "class_cap" and d.evidence.get("still"):
                (ctx.out_dir / d.evidence["still"]).unlink(missing_ok=True)
        return build
