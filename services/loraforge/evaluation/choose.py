"""Checkpoint choice: which saved step to ship.

The last checkpoint is often not the best (the Wan fine-tune service says as much and lets the
user export an earlier one): likeness rises, then the LoRA starts to copy its training images.
Objective, per checkpoint (all terms in [0, 1] before weighting):

    likeness   = (0.7 * identity_mean + 0.3 * identity_p10) * face_rate
    adherence  = W_ADHERENCE * adherence_normalised          (0 when CLIP is not provisioned)
    penalty    = COLLAPSE_PENALTY if collapsed
                 + SOFT_COLLAPSE_SLOPE * max(0, collapse_similarity - SOFT_COLLAPSE_START)
    total      = likeness + adherence - penalty

Why: likeness comes first, so adherence can at most add W_ADHERENCE = 0.1, less than the
likeness gap between the right face and a look-alike (~0.4 between same person and another one
on the similarity scale); p10 keeps a checkpoint whose worst renders drift to another face from
winning on its mean; multiplying by face_rate counts renders without any face as zero likeness
(a LoRA that breaks faces is not a likeness). A collapsed checkpoint gets a penalty larger than
any likeness, so it can only win when every checkpoint is collapsed; the soft slope makes a
near-collapsed checkpoint lose against an equally like but more varied one. Adherence is used
only when it was scored for every checkpoint, so that a missing score never decides. Ties are
broken deterministically: the earlier step (fewer steps = less overfit, cheaper to reproduce).

Fallback: when no render of any checkpoint shows a scorable face (a tiny random base model, a
LoRA type without a person such as style or effect, or no reference face to compare with),
likeness is unmeasurable and every total above would be equal noise. The checkpoint with the
lowest held-out validation loss is chosen instead (earlier step on a tie), and the reason says
so; without any validation loss either, the last step is kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from loraforge.curation.faces import FaceBackend
from loraforge.evaluation.adherence import (
    AdherenceFields,
    AdherenceScore,
    ClipScorer,
    score_adherence,
    skipped,
)
from loraforge.evaluation.diversity import (
    COLLAPSE_THRESHOLD,
    DiversityFields,
    DiversityScore,
    score_diversity,
)
from loraforge.evaluation.errors import InvalidRenders
from loraforge.evaluation.identity import (
    IdentityFields,
    IdentityScore,
    ReferenceFaces,
    score_identity,
)
from loraforge.evaluation.images import ImageLike, to_bgr_list

MEAN_WEIGHT = 0.7
P10_WEIGHT = 0.3
W_ADHERENCE = 0.1
COLLAPSE_PENALTY = 1.0
SOFT_COLLAPSE_START = 0.7
SOFT_COLLAPSE_SLOPE = 0.5

OBJECTIVE = (
    "total = (0.7*identity_mean + 0.3*identity_p10) * face_rate + 0.1*adherence "
    "- (1.0 if collapsed) - 0.5*max(0, collapse_similarity - 0.7); highest total wins, "
    "earlier step on a tie"
)


@dataclass(frozen=True)
class CheckpointEval:
    step: int
    identity: IdentityScore
    diversity: DiversityScore
    adherence: AdherenceScore = field(default_factory=lambda: skipped("skipped: not scored"))
    val_loss: float | None = None


def evaluate_checkpoint(
    step: int,
    renders: Sequence[ImageLike],
    references: ReferenceFaces,
    backend: FaceBackend,
    prompts: Sequence[str] | str | None = None,
    clip_scorer: ClipScorer | None = None,
    val_loss: float | None = None,
    collapse_threshold: float = COLLAPSE_THRESHOLD,
) -> CheckpointEval:
    """All scores of one checkpoint's previews (renders of different prompts and seeds)."""
    imgs = to_bgr_list(renders)
    ident = score_identity(imgs, references, backend)
    # reuse the identity pass's face boxes: detection is the expensive part
    div = score_diversity(imgs, [r.boxes for r in ident.per_render], threshold=collapse_threshold)
    adh = score_adherence(clip_scorer, imgs, prompts)
    return CheckpointEval(step, ident, div, adh, val_loss)


def likeness(identity: IdentityScore) -> float:
    if identity.mean is None or identity.p10 is None:  # both None: no face was found
        return 0.0
    return (MEAN_WEIGHT * identity.mean + P10_WEIGHT * identity.p10) * identity.face_rate


def collapse_penalty(div: DiversityScore) -> float:
    if div.mean_pairwise is None:
        return 0.0
    hard = COLLAPSE_PENALTY if div.collapsed else 0.0
    return hard + SOFT_COLLAPSE_SLOPE * max(0.0, div.mean_pairwise - SOFT_COLLAPSE_START)


class CheckpointRow(IdentityFields, DiversityFields, AdherenceFields):
    """One checkpoint's score breakdown: a row of the report (report.COLUMNS) and of the
    run's evaluation record."""

    step: int
    val_loss: float | None
    likeness: float
    adherence_term: float
    collapse_penalty: float
    total: float
    chosen: bool


@dataclass(frozen=True)
class CheckpointChoice:
    step: int
    rows: list[CheckpointRow]  # one per checkpoint, by step
    reason: str
    objective: str = OBJECTIVE
    adherence_used: bool = False
    basis: str = "likeness"  # "likeness" | "validation_loss" | "last_step" (see the fallback)

    def row(self, step: int) -> CheckpointRow:
        return next(r for r in self.rows if r["step"] == step)


def choose_checkpoint(evals: Sequence[CheckpointEval]) -> CheckpointChoice:
    if not evals:
        raise InvalidRenders("no checkpoints to choose from; evaluate at least one")
    steps = [e.step for e in evals]
    if len(set(steps)) != len(steps):
        raise InvalidRenders(f"checkpoint steps repeat: {sorted(steps)}; give one eval per step")
    use_adh = all(not e.adherence.skipped for e in evals)
    rows: list[CheckpointRow] = []
    for e in sorted(evals, key=lambda e: e.step):
        lk = likeness(e.identity)
        adh = W_ADHERENCE * (e.adherence.normalised or 0.0) if use_adh else 0.0
        pen = collapse_penalty(e.diversity)
        row: CheckpointRow = {
            "step": e.step,
            **e.identity.as_dict(),
            **e.diversity.as_dict(),
            **e.adherence.as_dict(),
            "val_loss": e.val_loss,
            "likeness": round(lk, 4),
            "adherence_term": round(adh, 4),
            "collapse_penalty": round(pen, 4),
            "total": round(lk + adh - pen, 6),
            "chosen": False,  # the best row's becomes True below
        }
        rows.append(row)
    if all(e.identity.mean is None for e in evals):
        return _fallback_choice(rows, use_adh)
    # rounded totals so that float noise never decides; then the earlier step
    best = min(rows, key=lambda r: (-r["total"], r["step"]))
    for r in rows:
        r["chosen"] = r is best
    return CheckpointChoice(best["step"], rows, _reason(best, rows), OBJECTIVE, use_adh)


NO_FACE = (
    "no render of any checkpoint shows a face that could be compared with the references, "
    "so likeness is unmeasurable (a tiny or random base model, a LoRA type without a "
    "person such as style or effect, or no reference face)"
)


def _fallback_choice(rows: list[CheckpointRow], use_adh: bool) -> CheckpointChoice:
    """Likeness unmeasurable: lowest held-out validation loss, else the last step."""
    with_loss = [(loss, r) for r in rows if (loss := r["val_loss"]) is not None]
    if with_loss:
        loss, best = min(with_loss, key=lambda lr: (round(float(lr[0]), 9), lr[1]["step"]))
        basis = "validation_loss"
        parts = [
            (
                f"{NO_FACE}: step {best['step']} has the lowest held-out validation loss "
                f"{float(loss):.6g} of {len(with_loss)} checkpoint(s)"
            )
        ]
    else:
        best = max(rows, key=lambda r: r["step"])
        basis = "last_step"
        parts = [
            (
                f"{NO_FACE}, and no validation loss was recorded: the last step "
                f"{best['step']} is kept"
            )
        ]
    for r in rows:
        r["chosen"] = r is best
    collapsed = [r["step"] for r in rows if r["collapsed"]]
    if collapsed:
        parts.append(
            f"renders alike across prompts and seeds (possible collapse): steps {collapsed}"
        )
    objective = (
        "likeness unmeasurable (no face in any render): lowest held-out validation loss "
        "wins, earlier step on a tie"
    )
    return CheckpointChoice(best["step"], rows, "; ".join(parts), objective, use_adh, basis)


def _reason(best: CheckpointRow, rows: Sequence[CheckpointRow]) -> str:
    parts = [
        (
            f"step {best['step']} has the highest total {best['total']:.3f} "
            f"(likeness {best['likeness']:.3f}, identity mean {best['identity_mean']}, "
            f"p10 {best['identity_p10']}, faces found in {best['face_rate']:.0%} of renders)"
        )
    ]
    collapsed = [r["step"] for r in rows if r["collapsed"]]
    if collapsed:
        parts.append(f"collapsed (renders alike outside the face, overfit): steps {collapsed}")
    if best["collapsed"]:
        parts.append(
            "WARNING: every checkpoint is collapsed; retrain with fewer steps, a lower "
            "learning rate or a more varied dataset"
        )
    later = [r for r in rows if r["step"] > best["step"]]
    if later:
        parts.append(
            f"{len(later)} later checkpoint(s) score lower: training past "
            f"step {best['step']} did not help"
        )
    return "; ".join(parts)
