"""The English word list that trigger words are checked against (shipped as package data).

Why a frequency list and not a spelling dictionary: a trigger must be a token that the text
encoder has *not* already tied to a meaning. What matters is how often a word occurs in real
text (and therefore in the encoder's training captions), so the list is every lowercase
alphabetic word with a Zipf frequency >= 3.0 (about once per million words or more) taken from
`wordfreq` (built once by `python -m loraforge.captioning.build_wordlist`; wordfreq is not a
run-time dependency). 28k words, ~220 kB: common words and their inflections ("running",
"fire", "beautiful") are in; rare-token conventions ("sks", "ohwx", "s86b5p") are not.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources

_RESOURCE = "english_words.json"


@lru_cache(maxsize=1)
def english_words() -> frozenset[str]:
    text = resources.files("loraforge.captioning").joinpath("data", _RESOURCE).read_text("utf-8")
    return frozenset(json.loads(text)["words"].split())


def is_dictionary_word(word: str) -> bool:
    return word.lower() in english_words()
