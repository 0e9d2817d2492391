"""Lighting dataset: each clip's light measured and classed (sunset, sunrise, midday, indoor,
dramatic), balanced across classes.

For every kept clip (the selection first), up to ``frames_per_clip`` of the frames curation
sampled are measured (``lighting.measure_light``: colour temperature of the light, sky share
and colour, key/fill contrast on the face when one is seen else on the frame, light direction,
deep-shadow share), combined by medians and classed (``lighting.classify``; a photo's EXIF
exposure, when it has one, is absolute light and overrules the sky heuristic). Sunrise against
sunset is decided by the capture time when the file carries one (a photo's EXIF
DateTimeOriginal), else by the sky's colour, which is a heuristic (``sun_side_from`` in the
evidence says which). The items are the clips (or photos) themselves, full frames: a lighting
LoRA learns the whole picture. ``lighting`` keeps only the classes named (a "sunset" LoRA);
``max_class_share`` caps any one class's share of the target.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from loraforge.curation.balance import Candidate
from loraforge.curation.builders import BuildContext, BuildResult, Dropped
from loraforge.curation.builders.labelled import candidates, finish, read, score_of
from loraforge.curation.lighting import CLASSES, classify, combine, measure_light, scene_ev

LightingName = Literal["sunset", "sunrise", "midday", "indoor", "dramatic"]


class LightingOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lighting: list[LightingName] | None = Field(default=None, description="keep only these classes")
    max_class_share: float = Field(
        default=0.4, gt=0, le=1, description="most of the target one class may fill"
    )
    # light changes slowly within a 2-10 s clip: 4 of curation's samples spread over it suffice
    frames_per_clip: int = Field(default=4, ge=1, le=64)


def photo_exif(path: Path) -> tuple[float | None, float | None]:
    """(local hour the photo was taken, scene EV at ISO 100) from its EXIF; None where absent."""
    try:
        from PIL import Image

        with Image.open(path) as im:
            exif = im.getexif()
            sub = exif.get_ifd(0x8769)
    except (OSError, ValueError, SyntaxError):
        return None, None
    hour = None
    raw = sub.get(0x9003) or exif.get(0x0132)  # DateTimeOriginal, else DateTime
    if raw:
        try:
            t = datetime.strptime(str(raw).strip("\x00 "), "%Y:%m:%d %H:%M:%S")
            hour = t.hour + t.minute / 60
        except ValueError:
            pass

    def num(v: Any) -> float | None:  # IFDRational -> float
        return float(v) if v is not None else None

    try:
        ev = scene_ev(
            num(sub.get(0x829D)), num(sub.get(0x829A)), num(sub.get(0x8827))
        )  # FNumber, ExposureTime, ISO
    except (TypeError, ValueError, ZeroDivisionError):
        ev = None
    return hour, ev


class LightingBuilder:
    lora_type = "lighting"
    Options = LightingOptions

    def build(self, ctx: BuildContext) -> BuildResult:
        opts: LightingOptions = ctx.options or LightingOptions()
        selected_ids = {c.metrics.clip_id for c in ctx.selected}
        todo, dropped = candidates(ctx)
        labelled: list[Candidate] = []
        evidence: dict[str, dict[str, Any]] = {}
        for c in todo:
            m = c.metrics
            sampled = ctx.sampled(m.clip_id)
            pick = sorted(
                {
                    sampled[int(round(i))]
                    for i in np.linspace(
                        0, len(sampled) - 1, min(len(sampled), opts.frames_per_clip)
                    )
                }
            )
            measures = []
            for _, img in read(ctx, m.clip_id, pick, dropped):
                face = None
                if ctx.backend is not None and m.face_frames_fraction > 0:
                    det = ctx.backend.detect(img, embed_largest=False)
                    face = det[0].box if det else None
                measures.append(measure_light(img, face))
            if not measures:
                continue
            lm = combine(measures)
            hour, exposure = (
                photo_exif(ctx.clip_path(m.clip_id)) if m.kind == "photo" else (None, None)
            )
            cls = classify(lm, hour, exposure)
            ev = {
                "lighting": cls.label,
                "why": cls.why,
                "sun_side_from": cls.sun_side_from,
                "capture_hour": hour,
                "scene_ev": None if exposure is None else round(exposure, 2),
                "frames": pick,
                **lm.as_dict(),
            }
            if opts.lighting is not None and cls.label not in opts.lighting:
                dropped.append(
                    Dropped(
                        m.clip_id,
                        "lighting_not_wanted",
                        f"lighting_not_wanted: {cls.label} "
                        f"({cls.why}); this set keeps {', '.join(opts.lighting)}",
                        evidence=ev,
                    )
                )
                continue
            evidence[m.clip_id] = ev
            labelled.append(Candidate(m.clip_id, cls.label, score_of(c, selected_ids)))
        return finish(ctx, labelled, evidence, dropped, opts.max_class_share, "lighting", CLASSES)
