"""Regenerate data/english_words.json from `wordfreq` (a build-time tool, not a dependency).

pip install wordfreq && python -m loraforge.captioning.build_wordlist
"""

from __future__ import annotations

import json
import re
from pathlib import Path

ZIPF_MIN = 3.0  # ~1 occurrence per million words: below that a word is rare enough to trigger


def build(out: Path = Path(__file__).parent / "data" / "english_words.json") -> int:
    import wordfreq  # not a dependency: run by hand to rebuild data/english_words.json

    words = sorted(
        {
            w
            for w in wordfreq.top_n_list("en", 80_000)
            if re.fullmatch(r"[a-z]{2,}", w) and wordfreq.zipf_frequency(w, "en") >= ZIPF_MIN
        }
    )
    out.write_text(
        json.dumps(
            {
                "source": (
                    f"wordfreq top_n_list('en', 80000), [a-z]{{2,}}, zipf_frequency >= {ZIPF_MIN}"
                ),
                "license": "word frequencies from wordfreq (data CC BY-SA 4.0); code Apache-2.0",
                "zipf_min": ZIPF_MIN,
                "count": len(words),
                "words": " ".join(words),
            }
        )
    )
    return len(words)


if __name__ == "__main__":
    print(build())
