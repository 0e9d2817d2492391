"""LoRA strength (adapter weight) recommendation.

Document 002's scale: 0.5-0.7 weak, 0.7-1.0 normal, above 1.0 strong. Too low a weight loses the
likeness; too high a weight makes every render the same (the LoRA overrides the prompt) or
breaks the image. We render the same prompts and seeds at each weight (the caller injects
``render_at(weight) -> images``: the render service, or a local diffusers pipeline), score
likeness and collapse as for checkpoints, and recommend:

    among weights that are not collapsed and find a face in >= MIN_FACE_RATE of renders,
    take the best likeness; recommend the LOWEST weight whose likeness is within ``tolerance``
    of it.

Lower is preferred because a lower weight leaves the prompt more freedom and leaves headroom to
combine this LoRA with others (document 003 resolves LoRA conflicts by lowering weights); a
gain smaller than the tolerance is within the noise of a handful of renders.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from loraforge.curation.faces import FaceBackend
from loraforge.evaluation.choose import evaluate_checkpoint, likeness
from loraforge.evaluation.diversity import COLLAPSE_THRESHOLD
from loraforge.evaluation.errors import InvalidRenders
from loraforge.evaluation.identity import ReferenceFaces
from loraforge.evaluation.images import ImageLike

DEFAULT_WEIGHTS = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2)
DEFAULT_TOLERANCE = 0.02
MIN_FACE_RATE = 0.5


def band(weight: float) -> str:
    """Document 002's naming of LoRA strengths."""
    if weight < 0.7:
        return "weak"
    if weight <= 1.0:
        return "normal"
    return "strong"


@dataclass(frozen=True)
class StrengthRecommendation:
    weight: float | None
    rows: list[dict[str, Any]]  # one per weight, ascending
    reason: str


def pick_weight(
    rows: Sequence[dict[str, Any]],
    tolerance: float = DEFAULT_TOLERANCE,
    min_face_rate: float = MIN_FACE_RATE,
) -> tuple[float | None, str]:
    """The rule in the module docstring, on rows with weight, likeness, face_rate, collapsed."""
    rows = sorted(rows, key=lambda r: r["weight"])
    ok = [r for r in rows if not r["collapsed"] and r["face_rate"] >= min_face_rate]
    if not ok:
        fallback = [r for r in rows if not r["collapsed"]]
        if not fallback:
            return None, (
                "every weight gives collapsed renders (the same picture whatever the "
                "prompt): the LoRA is overfit; use an earlier checkpoint"
            )
        r = max(fallback, key=lambda r: (r["likeness"], -r["weight"]))
        return r["weight"], (
            f"no weight finds a face in {min_face_rate:.0%} of renders; "
            f"{r['weight']} has the best likeness {r['likeness']:.3f}"
        )
    best = max(r["likeness"] for r in ok)
    chosen = next(r for r in ok if r["likeness"] >= best - tolerance)
    return chosen["weight"], (
        f"weight {chosen['weight']} ({band(chosen['weight'])}) has likeness "
        f"{chosen['likeness']:.3f}, within {tolerance} of the best {best:.3f} among "
        f"non-collapsed weights, and is the lowest such weight"
    )


def recommend_strength(
    render_at: Callable[[float], Sequence[ImageLike]],
    references: ReferenceFaces,
    backend: FaceBackend,
    weights: Sequence[float] = DEFAULT_WEIGHTS,
    tolerance: float = DEFAULT_TOLERANCE,
    collapse_threshold: float = COLLAPSE_THRESHOLD,
    min_face_rate: float = MIN_FACE_RATE,
) -> StrengthRecommendation:
    if not weights:
        raise InvalidRenders("no LoRA weights to evaluate; give e.g. 0.5 .. 1.2")
    rows = []
    for w in sorted({round(float(w), 4) for w in weights}):
        ev = evaluate_checkpoint(
            0, render_at(w), references, backend, collapse_threshold=collapse_threshold
        )
        rows.append(
            {
                "weight": w,
                "band": band(w),
                **ev.identity.as_dict(),
                **ev.diversity.as_dict(),
                "likeness": round(likeness(ev.identity), 4),
            }
        )
    weight, reason = pick_weight(rows, tolerance, min_face_rate)
    for r in rows:
        r["recommended"] = r["weight"] == weight
    return StrengthRecommendation(weight, rows, reason)
