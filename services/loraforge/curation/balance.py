"""Balance a labelled set: no class takes more than its share of the dataset.

Used by the pose (action), expression and lighting builders. A LoRA trained on a set where one
class dominates learns that class as the default (seed 002: "too many smiling photos -> the
model always smiles"). Rule: with k classes present among the candidates, each class may fill
at most max(max_share, 1/k) of the target, so a set of one class (a "running" pose LoRA, a
"sunset" lighting LoRA: the ``keep`` option of those builders) is never cut, and two classes
split at most half and half. Within a class the best candidates (score, then the order given)
go first; classes take turns, so a short set stays mixed. A class that hits its cap leaves its
remaining candidates out with the reason; the target is not filled from capped classes (that
would undo the balance), and ``missing`` says which classes more input would help.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Candidate:
    item_id: str
    label: str
    score: float = 0.0


@dataclass
class Balanced:
    chosen: list[Candidate]
    capped: list[Candidate]  # left out because their class was full
    cap: int  # items per class at most
    counts: dict[str, int] = field(default_factory=dict)  # chosen per class
    missing: list[str] = field(default_factory=list)


def balance(cands: Sequence[Candidate], target: int, max_share: float) -> Balanced:
    if target < 1:
        raise ValueError("target must be at least 1")
    labels = Counter(c.label for c in cands)
    k = max(1, len(labels))
    cap = max(1, math.floor(max(max_share, 1.0 / k) * target + 1e-9))
    queues = {
        lab: sorted((c for c in cands if c.label == lab), key=lambda c: -c.score) for lab in labels
    }
    chosen: list[Candidate] = []
    taken: Counter[str] = Counter()
    # classes take turns, the best remaining candidate of each class per turn
    while len(chosen) < target:
        progressed = False
        for lab in sorted(queues, key=lambda x: (-labels[x], x)):
            if len(chosen) >= target:
                break
            if queues[lab] and taken[lab] < cap:
                chosen.append(queues[lab].pop(0))
                taken[lab] += 1
                progressed = True
        if not progressed:
            break
    chosen_ids = {c.item_id for c in chosen}
    capped = [c for c in cands if c.item_id not in chosen_ids and taken[c.label] >= cap]
    missing = []
    if len(chosen) < target:
        full = sorted(lab for lab in labels if taken[lab] >= cap)
        missing.append(
            f"{target - len(chosen)} item(s) short of the target {target}: no class may fill more "
            f"than {cap} ({max(max_share, 1.0 / k):.0%})"
            + (f" and {', '.join(full)} {'is' if len(full) == 1 else 'are'} full" if full else "")
            + "; add clips of the other classes"
        )
    return Balanced(chosen, capped, cap, dict(sorted(taken.items())), missing)
