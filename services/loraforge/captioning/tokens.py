"""Token counting for the target model's text encoder, and the "is this a common token" test.

Captions are cut (with a warning) to what the text encoder reads: CLIP reads 77 tokens
including its start/end tokens (SD1.5, SDXL), umT5 reads 512 (Wan; Flux's T5 too). With a
tokenizer provisioned from a local directory we count exactly; without one we fall back to a
conservative estimate (it over-counts) so that nothing is silently cut off by the trainer.

Commonness: BPE vocabularies (CLIP) number merges in the order they were learned, i.e. by
frequency, and sentencepiece vocabularies (T5) are sorted by score; so a word that is ONE token
with a LOW id is a word the encoder saw very often. A rare trigger must not be that.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from loraforge.captioning.errors import InvalidCaption
from loraforge.runtime.errors import InvalidInput

CLIP_MAX_TOKENS = 77
UMT5_MAX_TOKENS = 512
# A single-token word whose id lies in the first 60 % of the vocabulary counts as common.
# CLIP examples: "fire" 1769, "running" 2761, "beautiful" 1215 (common); "sks" 48136 (rare).
COMMON_RANK_FRACTION = 0.6

# preset prefix -> (encoder name, max tokens). Longest prefix wins; tiny-* share the family.
_FAMILY_LIMITS: dict[str, tuple[str, int]] = {
    "sd1.5": ("clip", CLIP_MAX_TOKENS),
    "sdxl": ("clip", CLIP_MAX_TOKENS),
    "flux": ("t5", UMT5_MAX_TOKENS),
    "wan": ("umt5", UMT5_MAX_TOKENS),
}


def limit_for(preset: str | None) -> tuple[str, int]:
    """(encoder, max tokens) of a base-model preset; Wan (umT5, 512) when none is named."""
    name = (preset or "wan").lower().removeprefix("tiny-")
    for prefix in sorted(_FAMILY_LIMITS, key=len, reverse=True):
        if name.startswith(prefix):
            return _FAMILY_LIMITS[prefix]
    raise InvalidInput(
        f"unknown base model {preset!r} for caption length: use one of "
        f"{', '.join(sorted(_FAMILY_LIMITS))} (or a tiny-* preset of them)"
    )


class TextTokenizer(Protocol):
    name: str
    max_tokens: int
    exact: bool  # False for the estimate

    def count(self, text: str) -> int: ...  # including the encoder's special tokens

    def common_rank(self, word: str) -> int | None:
        """The word's rank if it is one common token of this vocabulary, else None."""
        ...


@dataclass
class EstimateTokenizer:
    """No tokenizer provisioned: over-estimate BPE counts (1 token per <= 4 letters of a word,
    1 per punctuation mark, plus start/end) so a caption that fits here fits the real one."""

    max_tokens: int = UMT5_MAX_TOKENS
    name: str = "estimate"
    exact: bool = False

    def count(self, text: str) -> int:
        n = 2
        for piece in re.findall(r"[A-Za-z]+|\d|[^\sA-Za-z\d]", text):
            n += math.ceil(len(piece) / 4) if piece[0].isalpha() else 1
        return n

    def common_rank(self, word: str) -> int | None:
        return None


class HFTokenizer:
    """A transformers tokenizer or a raw `tokenizers.Tokenizer`, counted with special tokens."""

    exact = True

    def __init__(self, tokenizer: Any, max_tokens: int, name: str = "tokenizer"):
        self._tok = tokenizer
        self.max_tokens = max_tokens
        self.name = name

    def _ids(self, text: str, special: bool) -> list[int]:
        if hasattr(self._tok, "encode_batch"):  # tokenizers.Tokenizer
            return list(self._tok.encode(text, add_special_tokens=special).ids)
        return list(self._tok(text, add_special_tokens=special)["input_ids"])

    @property
    def vocab_size(self) -> int:
        if hasattr(self._tok, "get_vocab_size"):
            return int(self._tok.get_vocab_size())
        return len(self._tok)

    def count(self, text: str) -> int:
        return len(self._ids(text, True))

    def common_rank(self, word: str) -> int | None:
        ids = self._ids(word, False)
        if len(ids) != 1:
            return None
        # the one token must BE the word (not <unk>): strip BPE/sentencepiece word markers
        piece = self._piece(ids[0]).replace("</w>", "").replace("\u2581", "").replace("\u0120", "")
        if piece.lower() != word.lower():
            return None
        return ids[0] if ids[0] < COMMON_RANK_FRACTION * self.vocab_size else None

    def _piece(self, token_id: int) -> str:
        if hasattr(self._tok, "id_to_token"):
            return self._tok.id_to_token(token_id) or ""
        return str(self._tok.convert_ids_to_tokens(token_id) or "")


def load_tokenizer(path: str | Path, max_tokens: int | None = None) -> HFTokenizer:
    """A tokenizer provisioned in a local directory (never a hub download): a transformers
    tokenizer folder (CLIP's vocab.json + merges.txt, T5's spiece.model, or tokenizer.json)."""
    path = Path(path)
    if not path.is_dir():
        raise InvalidInput(f"tokenizer directory {path} does not exist; provision it locally")
    try:
        from transformers import AutoTokenizer

        # transformers' or tokenizers' tokenizer: HFTokenizer reads either
        tok: Any = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        limit = max_tokens or int(getattr(tok, "model_max_length", 0) or 0)
    except (ImportError, OSError, ValueError):
        if not (path / "tokenizer.json").is_file():
            raise InvalidInput(
                f"{path} holds no tokenizer (vocab.json+merges.txt, spiece.model or tokenizer.json)"
            ) from None
        from tokenizers import Tokenizer

        tok, limit = Tokenizer.from_file(str(path / "tokenizer.json")), max_tokens or 0
    if not 0 < limit <= 100_000:  # transformers says "1e30" when the folder does not tell
        limit = CLIP_MAX_TOKENS if "clip" in type(tok).__name__.lower() else UMT5_MAX_TOKENS
    return HFTokenizer(tok, limit, name=f"{type(tok).__name__}({path.name})")


@dataclass(frozen=True)
class Fitted:
    text: str
    tokens: int
    warning: str | None = None


def fit(
    text: str, tokenizer: TextTokenizer, *, what: str = "caption", separator: str = ","
) -> Fitted:
    """Cut a generated caption at phrase boundaries until it fits, warning when it was cut.
    The first phrase (the trigger, by template) is never dropped."""
    n = tokenizer.count(text)
    if n <= tokenizer.max_tokens:
        return Fitted(text, n)
    parts = list(text.split(separator))
    while len(parts) > 1 and tokenizer.count(separator.join(parts)) > tokenizer.max_tokens:
        parts.pop()
    cut = separator.join(parts).strip()
    m = tokenizer.count(cut)
    if m > tokenizer.max_tokens:
        raise InvalidInput(
            f"{what}: even its first phrase is {m} tokens, over the "
            f"{tokenizer.max_tokens}-token limit of {tokenizer.name}"
        )
    return Fitted(
        cut,
        m,
        f"{what} was {n} tokens, over the {tokenizer.max_tokens}-token limit "
        f"of {tokenizer.name}; cut to {m} tokens: {cut!r}",
    )


def check_user_length(text: str, tokenizer: TextTokenizer, *, what: str = "caption") -> int:
    """User-written captions are never cut silently: too long is an error saying by how much."""
    n = tokenizer.count(text)
    if n > tokenizer.max_tokens:
        raise InvalidCaption(
            f"{what} is {n} tokens but {tokenizer.name} reads at most {tokenizer.max_tokens}; "
            f"shorten it by about {n - tokenizer.max_tokens} tokens (drop the least important "
            "phrases at the end)"
        )
    return n
