"""The effect's one motion description, distilled from draft captions.

The hosted Wan recipe: a VLM drafts a caption per clip, the phrases that recur across drafts
become the shared template, a person checks it. Every sample then carries the SAME motion text,
so the trigger binds to one motion and the varying part (subject, background) stays promptable.

Method: document frequency of normalized phrases (how many drafts contain each phrase); the
phrases present in at least `min_share` of the drafts form the description, in the order they
first appear. When no whole phrase recurs, the longest word n-gram (2-8 words) that does is used.
"""

from __future__ import annotations

import math
from collections import Counter

from loraforge.captioning.errors import InvalidCaption
from loraforge.captioning.text import normalize, split_phrases


def distill_motion(drafts: list[str], *, min_share: float = 0.5) -> str:
    texts = [t for t in drafts if t and t.strip()]
    if len(texts) < 2:
        raise InvalidCaption(
            "distilling the effect's motion needs at least 2 draft captions; "
            "give the motion text yourself (--motion)"
        )
    need = max(2, math.ceil(min_share * len(texts)))
    per_draft = [split_phrases(t) for t in texts]
    df: Counter[str] = Counter()
    first_seen: dict[str, tuple[int, int, str]] = {}
    for d, phrases in enumerate(per_draft):
        for i, p in enumerate(phrases):
            key = normalize(p)
            if key and key not in {normalize(q) for q in phrases[:i]}:
                df[key] += 1
                first_seen.setdefault(key, (d, i, p))
    common = [k for k, c in df.items() if c >= need]
    if common:
        common.sort(key=lambda k: first_seen[k][:2])
        return ", ".join(first_seen[k][2] for k in common)
    best = _best_ngram([normalize(t) for t in texts], need)
    if best is None:
        raise InvalidCaption(
            f"the {len(texts)} draft captions share no motion phrase (none recurs in {need} of "
            "them); give the effect's motion text yourself (--motion)"
        )
    return best


def _best_ngram(texts: list[str], need: int) -> str | None:
    for n in range(8, 1, -1):
        df: Counter[str] = Counter()
        for t in texts:
            words = t.split()
            df.update({" ".join(words[i : i + n]) for i in range(len(words) - n + 1)})
        hits = [(c, g) for g, c in df.items() if c >= need]
        if hits:
            return max(hits)[1]
    return None


def remove_shared(text: str, shared: str) -> str:
    """A draft's phrases minus those already in the shared motion text (no duplicates)."""
    shared_keys = {normalize(p) for p in split_phrases(shared)}
    return ", ".join(p for p in split_phrases(text) if normalize(p) not in shared_keys)
