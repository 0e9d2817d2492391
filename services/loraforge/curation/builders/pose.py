"""Pose/action dataset: body keypoints per frame, the action each clip shows, balanced.

For every kept clip (the selection first) the main person's 33 BlazePose keypoints are found on
frames sampled at ``analysis_fps`` (curation's 8 samples are too few for a gait's bounce or a
jump's top), the action is named from how they move (``action.py``: ground speed against the
background, hip lift, knee angle and thigh slope, wrist motion) and the keypoints are written
beside the dataset as evidence, ``derived/<clip_id>/keypoints.json`` (fractions of the frame,
with each point's visibility). The items are the clips (or photos) themselves: an action is
motion, which a video LoRA learns from the clip; balance (``balance.py``) keeps any one action
from filling more than ``max_class_share`` of the target. ``actions`` keeps only the actions
named (a "running" LoRA).
"""

from __future__ import annotations

import json
from typing import Any, Literal

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from loraforge.curation.action import ACTIONS, analyse_action
from loraforge.curation.balance import Candidate
from loraforge.curation.builders import BuildContext, BuildResult, Dropped
from loraforge.curation.builders.labelled import candidates, finish, read, score_of
from loraforge.curation.frames import Frame
from loraforge.curation.metrics import ClipMetrics

ActionName = Literal["walking", "running", "jumping", "standing", "sitting", "gesturing"]


class PoseOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    actions: list[ActionName] | None = Field(default=None, description="keep only these actions")
    # six actions: 0.4 lets the two most common fill most of a set without one owning it
    max_class_share: float = Field(
        default=0.4, gt=0, le=1, description="most of the target one action may fill"
    )
    # 6 frames/s catches a walking cycle (~1 s) at 6 phases and a standing jump's top (~0.4 s in
    # the air)
    analysis_fps: float = Field(default=6.0, gt=0, le=30)
    max_frames: int = Field(
        default=24, ge=2, le=120, description="keypoint frames per clip at most"
    )


def frame_indices(m: ClipMetrics, fps: float, max_frames: int) -> list[int]:
    if m.kind == "photo" or not m.fps:
        return [0]
    count = max(1, round(m.duration_s * m.fps))
    n = max(2, min(max_frames, round(m.duration_s * fps)))
    return sorted({int(round(i)) for i in np.linspace(0, count - 1, n)})


# keypoints run on 256 px crops and the camera's pan is measured on corners: 640 px frames lose
# nothing for either and keep a clip's 24 frames at ~20 MB instead of ~150 MB at 1080p
ANALYSIS_SIDE = 640


def _small(img: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    f = ANALYSIS_SIDE / max(h, w)
    return (
        img
        if f >= 1
        else cv2.resize(img, (round(w * f), round(h * f)), interpolation=cv2.INTER_AREA)
    )


class PoseBuilder:
    lora_type = "pose"
    Options = PoseOptions

    def build(self, ctx: BuildContext) -> BuildResult:
        opts: PoseOptions = ctx.options or PoseOptions()
        selected_ids = {c.metrics.clip_id for c in ctx.selected}
        todo, dropped = candidates(ctx)
        cands: list[Candidate] = []
        evidence: dict[str, dict[str, Any]] = {}
        for c in todo:
            m = c.metrics
            idx = frame_indices(m, opts.analysis_fps, opts.max_frames)
            frames = [
                Frame(i, i / m.fps if m.fps else 0.0, _small(img))
                for i, img in read(ctx, m.clip_id, idx, dropped)
            ]
            if not frames:
                continue
            res = analyse_action(frames, ctx.people, video=m.kind == "video")
            h, w = frames[0].image.shape[:2]
            kp_path = ctx.item_path(m.clip_id, "keypoints.json")
            doc = {
                "clip_id": m.clip_id,
                "action": res.label,
                "why": res.why,
                "features": res.features.as_dict(),
                "width": w,
                "height": h,
                "frames": [
                    b.as_dict(w, h) if b is not None else {"frame": fr.index, "person": None}
                    for fr, b in zip(frames, res.bodies, strict=True)
                ],
            }
            (ctx.out_dir / kp_path).parent.mkdir(parents=True, exist_ok=True)
            (ctx.out_dir / kp_path).write_text(json.dumps(doc))
            ev = {
                "action": res.label,
                "why": res.why,
                **res.features.as_dict(),
                "keypoints": kp_path,
            }
            if res.label is None:
                dropped.append(
                    Dropped(
                        m.clip_id,
                        "no_keypoints",
                        f"no_keypoints: no body found on the {len(frames)} frames analysed",
                        evidence=ev,
                    )
                )
                continue
            if opts.actions is not None and res.label not in opts.actions:
                dropped.append(
                    Dropped(
                        m.clip_id,
                        "action_not_wanted",
                        f"action_not_wanted: {res.label} ({res.why}); this set keeps "
                        f"{', '.join(opts.actions)}",
                        evidence=ev,
                    )
                )
                continue
            evidence[m.clip_id] = ev
            cands.append(Candidate(m.clip_id, res.label, score_of(c, selected_ids)))
        return finish(ctx, cands, evidence, dropped, opts.max_class_share, "action", ACTIONS)
