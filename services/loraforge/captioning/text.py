"""Caption text hygiene: hedging words, VLM boilerplate, identity traits, phrase splitting.

Why no hedging: a caption is a statement of what IS in the clip; "appears to be smiling"
teaches the model the words "appears to be" instead of the smile, and training captions with
uncertainty words leak them into prompts. Generated text gets them stripped; text a person
writes gets refused with the words named (we do not rewrite what a person wrote).

Why no identity traits in character captions: whatever a caption names becomes promptable and
stops being part of the trigger. Face shape, eye and skin colour are what the trigger must
learn, so they are left out by default (a template can opt back in).
"""

from __future__ import annotations

import re

HEDGE_WORDS = (
    "appears",
    "appear",
    "appearing",
    "seems",
    "seem",
    "seemingly",
    "possibly",
    "possible",
    "likely",
    "probably",
    "might",
    "perhaps",
    "maybe",
    "apparently",
    "presumably",
)
_HEDGE_RE = re.compile(r"\b(" + "|".join(HEDGE_WORDS) + r")\b", re.IGNORECASE)

# Rewrites applied in order: the copula survives ("appears to be smiling" -> "is smiling").
_STRIP_RULES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"\bit\s+(?:appears|seems)\s+(?:that\s+)?", re.IGNORECASE), ""),
    (re.compile(r"\b(?:appears|seems)\s+to\s+be\b", re.IGNORECASE), "is"),
    (re.compile(r"\b(?:appear|seem)\s+to\s+be\b", re.IGNORECASE), "are"),
    (re.compile(r"\b(?:appears|seems|appear|seem|appearing)\s+to\s+", re.IGNORECASE), ""),
    (re.compile(r"\b(?:might|may|could)\s+be\b", re.IGNORECASE), "is"),
    (
        re.compile(
            r"\b(?:is|are)\s+(?:likely|probably|possibly|perhaps|apparently|presumably)\s+",
            re.IGNORECASE,
        ),
        "is ",
    ),
    (re.compile(r"\bwhat\s+(?:looks|seems|appears)\s+(?:like|to\s+be)\s+", re.IGNORECASE), ""),
    (
        re.compile(
            r"\b(?:possibly|likely|probably|perhaps|maybe|apparently|presumably|seemingly)\b,?\s*",
            re.IGNORECASE,
        ),
        "",
    ),
    (re.compile(r"\bmight\s+", re.IGNORECASE), ""),
]

_BOILERPLATE = re.compile(
    r"^\s*(?:in\s+)?(?:this|the)\s+(?:video|image|clip|photo|picture|frame|scene)s?\s*"
    r"(?:shows|depicts|features|captures|presents|we\s+see)?\s*[:,]?\s*"
    r"|^\s*(?:an?\s+)?(?:photo|picture|image|video|close-up photo)\s+of\s+"
    r"|^\s*there\s+is\s+|^\s*we\s+see\s+",
    re.IGNORECASE,
)

_IDENTITY = re.compile(
    r"\b(?:(?:blue|brown|green|hazel|grey|gray|dark|light|amber)[- ]eyed?s?\b"
    r"|eye\s+colou?r|(?:fair|pale|dark|tan|tanned|olive|light|brown|black|white)[- ]skin(?:ned)?"
    r"|skin\s+(?:tone|colou?r)|complexion|(?:round|oval|square|heart[- ]shaped|long|narrow)\s+face"
    r"|face\s+shape|cheekbones|jawline|freckles|ethnicity"
    r"|asian|caucasian|african|hispanic|latina|latino)\b",
    re.IGNORECASE,
)


def find_hedges(text: str) -> list[str]:
    return sorted({m.group(1).lower() for m in _HEDGE_RE.finditer(text)})


def strip_hedges(text: str) -> str:
    for pattern, repl in _STRIP_RULES:
        text = pattern.sub(repl, text)
    return tidy(text)


def tidy(text: str) -> str:
    text = re.sub(r"\s+", " ", text)
    text = re.sub(r"\s+([,.;:])", r"\1", text)
    text = re.sub(r"([,;])\s*(?=[,;])", "", text)
    return text.strip(" ,;.")


def split_phrases(text: str) -> list[str]:
    """Sentences and comma-separated phrases, cleaned: the unit captions are built from."""
    text = _BOILERPLATE.sub("", text.strip())
    out: list[str] = []
    for sentence in re.split(r"(?<=[.!?])\s+|\n+", text):
        sentence = _BOILERPLATE.sub("", sentence)
        for phrase in re.split(r"[,;]\s*|\s+while\s+|\s+as\s+", sentence):
            phrase = tidy(strip_hedges(phrase))
            phrase = re.sub(r"^(?:and|with|then|also)\s+", "", phrase, flags=re.IGNORECASE)
            phrase = _dedupe_words(phrase)
            if phrase and re.search(r"[A-Za-z]", phrase):
                out.append(
                    phrase[0].lower() + phrase[1:] if phrase[:2] != phrase[:2].upper() else phrase
                )
    return out


def _dedupe_words(phrase: str) -> str:
    """'jacket jacket jacket' -> 'jacket' (small models repeat themselves)."""
    words, out = phrase.split(), list[str]()
    for w in words:
        if not out or out[-1].lower() != w.lower():
            out.append(w)
    return " ".join(out)


def names_identity_trait(phrase: str) -> bool:
    return bool(_IDENTITY.search(phrase))


def normalize(phrase: str) -> str:
    """Comparison key of a phrase: lowercase words only."""
    return " ".join(re.findall(r"[a-z0-9]+", phrase.lower()))
