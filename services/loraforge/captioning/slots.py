"""Free text (a VLM's or a chat model's description) -> template slots.

Keyword rules, not a parser: a caption needs phrases in the right place, not a grammar. A
phrase goes to the first slot whose keywords it contains; what matches none goes to `action`
when it has an -ing verb, else `details`. Identity traits are split off and dropped unless the
template asks for them; hedges are stripped on the way (text.split_phrases).
"""

from __future__ import annotations

import re

from loraforge.captioning.text import names_identity_trait, split_phrases

_RULES: list[tuple[str, re.Pattern[str]]] = [
    ("hair", re.compile(r"\b(hair|haired|bangs|ponytail|braids?|bun|curls|bald)\b", re.IGNORECASE)),
    (
        "clothing",
        re.compile(
            r"\b(wearing|wears|dressed|dress|shirt|t-shirt|blouse|jacket|coat|sweater|hoodie|suit|"
            r"jeans|skirt|trousers|pants|hat|cap|scarf|glasses|sunglasses|uniform|outfit|top|vest|"
            r"necklace|earrings)\b",
            re.IGNORECASE,
        ),
    ),
    (
        "expression",
        re.compile(
            r"\b(smil\w*|laugh\w*|grin\w*|frown\w*|serious|neutral|surprised|sad|happy|angry|"
            r"expression|talking|speaking|mouth|eyes closed)\b",
            re.IGNORECASE,
        ),
    ),
    (
        "shot",
        re.compile(
            r"\b(close-up|closeup|medium shot|wide shot|full body|upper body|portrait|"
            r"headshot|shot)\b",
            re.IGNORECASE,
        ),
    ),
    (
        "angle",
        re.compile(r"\b(view|angle|profile|from above|from below|overhead)\b", re.IGNORECASE),
    ),
    (
        "lighting",
        re.compile(
            r"\b(light|lighting|lit|sunlight|sunlit|shadows?|sunset|sunrise|"
            r"golden hour|backlit|neon|dim|bright)\b",
            re.IGNORECASE,
        ),
    ),
    (
        "environment",
        re.compile(
            r"\b(background|room|indoors?|outdoors?|street|park|office|kitchen|studio|beach|forest|"
            r"city|wall|field|sky|garden|stage|car|building|window|sea|mountains?|snow|road|cafe|"
            r"in front of|behind her|behind him)\b",
            re.IGNORECASE,
        ),
    ),
]
_SUBJECT = re.compile(
    r"^(?:an?|the|one)\s+(?:young\s+|old\s+|middle-aged\s+|little\s+)?"
    r"(woman|man|girl|boy|person|child|lady|guy|people|couple|dog|cat)\b",
    re.IGNORECASE,
)
_ING = re.compile(r"\b\w{3,}ing\b", re.IGNORECASE)
_PRONOUN_LEAD = re.compile(
    r"^(?:she|he|they|the (?:woman|man|person))\s+(?:has|have|is|are)\s+", re.IGNORECASE
)
_PRONOUN_VERB = re.compile(r"^(?:she|he|they)\s+(?=\w+s?\b)", re.IGNORECASE)
# the template says "wearing {clothing}": the value is the garment, not the verb
_CLOTHING_LEAD = re.compile(r"^(?:is\s+)?(?:wearing|wears|dressed\s+in)\s+", re.IGNORECASE)


def phrases_to_slots(text: str, *, keep_identity: bool = False) -> dict[str, str]:
    slots: dict[str, list[str]] = {}
    for phrase in split_phrases(text):
        pieces = re.split(r"\s+and\s+", phrase) if names_identity_trait(phrase) else [phrase]
        for piece in pieces:
            piece = _PRONOUN_LEAD.sub("", piece).strip()
            if not piece or (not keep_identity and names_identity_trait(piece)):
                continue
            slot = _slot_of(piece)
            if slot in ("details", "action") and _PRONOUN_VERB.match(piece):
                slot, piece = "action", _PRONOUN_VERB.sub("", piece)
            if slot == "clothing":
                piece = _CLOTHING_LEAD.sub("", piece)
            if slot == "subject" and "subject" in slots:
                slot = "details"
            if piece.lower() not in (p.lower() for p in slots.get(slot, [])):
                slots.setdefault(slot, []).append(piece)
    return {k: ", ".join(v) for k, v in slots.items()}


def _slot_of(phrase: str) -> str:
    if _SUBJECT.match(phrase) and not any(
        r.search(phrase) for s, r in _RULES if s in ("hair", "clothing")
    ):
        return "subject"
    for slot, rule in _RULES:
        if rule.search(phrase):
            return slot
    return "action" if _ING.search(phrase) else "details"
