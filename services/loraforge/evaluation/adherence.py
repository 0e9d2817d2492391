"""Prompt adherence: CLIP similarity between each render and the prompt that produced it.

A LoRA that has learnt the person but forgotten how to follow prompts (every render the same
outfit whatever the prompt says) loses here even when its likeness is perfect. The CLIP model is
loaded only from a provisioned local directory (``CLIPModel`` + ``CLIPProcessor`` saved with
``save_pretrained``): nothing is downloaded at run time. Without one the score is skipped, with
a note saying so, and the checkpoint choice runs on likeness and collapse alone.

Numbers: ``cosine`` is the cosine of the normalised image and text embeddings; ``clip_score`` is
the usual CLIPScore, 100 * max(cosine, 0). For the checkpoint objective we need [0, 1]:
``normalised = clip(cosine / FULL_COSINE, 0, 1)``; FULL_COSINE = 0.35 because a well matched
image-caption pair scores ~0.30-0.35 with the public CLIP ViT-B/L models, so a render that
follows its prompt about as well as CLIP can tell gets close to 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

import numpy as np

from loraforge.curation.errors import BackendUnavailable
from loraforge.evaluation.images import ImageLike, to_bgr_list, to_pil_rgb

FULL_COSINE = 0.35
BATCH = 8  # CLIP ViT-L on CPU: 8 images keep memory under ~2 GB


class AdherenceFields(TypedDict):
    """An AdherenceScore's columns in a checkpoint row (choose.CheckpointRow)."""

    adherence: float | None
    clip_score: float | None
    adherence_note: str


@dataclass(frozen=True)
class AdherenceScore:
    skipped: bool
    note: str = ""
    mean_cosine: float | None = None
    clip_score: float | None = None  # 100 * max(mean cosine, 0)
    normalised: float | None = None  # in [0, 1], what the checkpoint objective uses
    per_render: list[float] = field(default_factory=list)  # cosine per render

    def as_dict(self) -> AdherenceFields:
        return {
            "adherence": None if self.normalised is None else round(self.normalised, 4),
            "clip_score": None if self.clip_score is None else round(self.clip_score, 2),
            "adherence_note": self.note,
        }


def skipped(note: str) -> AdherenceScore:
    return AdherenceScore(True, note)


class ClipScorer:
    """CLIP from a local directory; CPU unless a device is given."""

    def __init__(self, model_dir: Path | str, device: str = "cpu") -> None:
        d = Path(model_dir)
        if not (d / "config.json").is_file():
            raise BackendUnavailable(
                f"{d}: no CLIP model there (config.json missing); provision "
                "a CLIPModel saved with save_pretrained, or leave it unset "
                "to skip prompt adherence"
            )
        import torch
        from transformers import CLIPModel, CLIPProcessor

        self._torch = torch
        # Any: transformers types .to() through a decorator mypy reads as taking the model
        model: Any = CLIPModel.from_pretrained(str(d), local_files_only=True)
        self.model = model.to(device).eval()
        self.processor = CLIPProcessor.from_pretrained(str(d), local_files_only=True)
        self.device = device
        # the text tower's position table is the hard limit (77 for every public CLIP);
        # longer prompts are truncated rather than rejected, as diffusers' pipelines do
        self.max_tokens = int(self.model.config.text_config.max_position_embeddings)

    def cosines(self, images: Sequence[ImageLike], prompts: Sequence[str]) -> np.ndarray:
        """Cosine of render i with prompt i."""
        imgs = [to_pil_rgb(i) for i in to_bgr_list(images)]
        if len(prompts) != len(imgs):
            raise ValueError(f"{len(prompts)} prompts for {len(imgs)} renders")
        out = []
        with self._torch.inference_mode():
            for s in range(0, len(imgs), BATCH):
                inp = self.processor(
                    text=list(prompts[s : s + BATCH]),
                    images=imgs[s : s + BATCH],
                    return_tensors="pt",
                    padding=True,
                    truncation=True,
                    max_length=self.max_tokens,
                )
                inp = {k: v.to(self.device) for k, v in inp.items()}
                # the full forward returns both projected, L2-normalised embeddings under names
                # that are stable across transformers versions (get_*_features changed type)
                res = self.model(**inp)
                out.append((res.image_embeds * res.text_embeds).sum(-1).float().cpu().numpy())
        return np.concatenate(out)


def load_clip_scorer(model_dir: Path | str | None, device: str = "cpu") -> ClipScorer | None:
    """None when no model directory is configured: adherence is then skipped, not an error."""
    return None if model_dir is None else ClipScorer(model_dir, device)


def score_adherence(
    scorer: ClipScorer | None, renders: Sequence[ImageLike], prompts: Sequence[str] | str | None
) -> AdherenceScore:
    """One prompt per render (or one prompt for all of them)."""
    if scorer is None:
        return skipped(
            "skipped: no CLIP model provisioned (set a local CLIP directory to score "
            "prompt adherence)"
        )
    if not prompts:
        return skipped("skipped: no prompts recorded for these renders")
    ps = [prompts] * len(renders) if isinstance(prompts, str) else list(prompts)
    cos = scorer.cosines(renders, ps)
    mean = float(cos.mean())
    return AdherenceScore(
        False,
        "",
        mean,
        100.0 * max(mean, 0.0),
        float(np.clip(mean / FULL_COSINE, 0.0, 1.0)),
        [float(c) for c in cos],
    )
