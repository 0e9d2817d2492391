"""Trigger words must be rare tokens: something the text encoder has no meaning for yet, so
that training binds the subject to it instead of fighting (or polluting) an existing word.

Rules, in order (each failure says why and proposes a generated token):
1. shape: 2-64 characters, letters, digits, '_' or '-', no spaces;
2. not an English word, whole or with its separators removed ("fire", "firefly");
3. at least one part (split at '_'/'-') that is neither an English word nor a number, so
   `ohwx_woman` and `sks_person` pass (the rare part carries the identity, the class noun
   helps the prior) while `red_fire` or `woman_2` fail;
4. with a tokenizer provisioned: neither the whole trigger nor its rare part is a single
   common token of that vocabulary (see tokens.TextTokenizer.common_rank).
"""

from __future__ import annotations

import hashlib
import re

from loraforge.captioning.errors import InvalidTrigger
from loraforge.captioning.tokens import TextTokenizer
from loraforge.captioning.wordlist import is_dictionary_word

_SHAPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{1,63}$")
_CONSONANTS = "bcdfghjkmnpqrstvwxz"
_DIGITS = "23456789"


def _problem(trigger: str, tokenizer: TextTokenizer | None) -> str | None:
    if not _SHAPE.match(trigger or ""):
        return (
            "it must be 2-64 letters, digits, '_' or '-' with no spaces "
            "(one token the caption can start with)"
        )
    low = trigger.lower()
    parts = [p for p in re.split(r"[_-]", low) if p]
    joined = "".join(parts)
    if is_dictionary_word(low) or is_dictionary_word(joined):
        return f"{joined!r} is a common English word, which the model already has a meaning for"
    rare = [p for p in parts if not p.isdigit() and not is_dictionary_word(p)]
    if not rare:
        return (
            f"every part of it ({', '.join(parts)}) is a common English word or a number; "
            "at least one part must be a made-up token"
        )
    if tokenizer is not None:
        for candidate in [low, *rare]:
            rank = tokenizer.common_rank(candidate)
            if rank is not None:
                return (
                    f"{candidate!r} is a single common token (id {rank}) of {tokenizer.name}, "
                    "so the model already knows it"
                )
    return None


def suggest_trigger(seed: str = "", tokenizer: TextTokenizer | None = None) -> str:
    """A deterministic made-up token like `s86b5p` (consonants and digits, no vowels, so it
    spells no word), checked against the same rules."""
    for attempt in range(100):
        h = hashlib.sha256(f"{seed}\0{attempt}".encode()).digest()
        chars = [
            (_CONSONANTS if i % 3 != 1 else _DIGITS)[h[i] % (19 if i % 3 != 1 else 8)]
            for i in range(6)
        ]
        candidate = "".join(chars)
        if _problem(candidate, tokenizer) is None:
            return candidate
    raise RuntimeError("could not generate a rare trigger token")  # pragma: no cover


def check_trigger(trigger: str, tokenizer: TextTokenizer | None = None) -> str | None:
    """None when the trigger is usable, else the reason it is not."""
    return _problem(trigger, tokenizer)


def validate_trigger(trigger: str, tokenizer: TextTokenizer | None = None) -> str:
    problem = _problem(trigger, tokenizer)
    if problem is not None:
        suggestion = suggest_trigger(trigger, tokenizer)
        raise InvalidTrigger(
            f"trigger {trigger!r} is not a rare token: {problem}. Use a made-up token such as "
            f"{suggestion!r} (or a rare token plus the class, like '{suggestion}_woman')"
        )
    return trigger
