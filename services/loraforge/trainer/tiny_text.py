"""Tokenizers for the ``tiny-*`` presets, built in code (no files, no downloads).

A WordPiece model over a fixed vocabulary: a few hundred common caption words plus every
lowercase letter, digit and punctuation mark, with ``##``-continuations for each character.
Unknown words (trigger words such as ``s86b5p``) split into characters, so two different
captions never tokenize the same. The result is a ``PreTrainedTokenizerFast``, which the
diffusers pipelines call the same way as the real CLIP / T5 / UMT5 tokenizers
(``padding="max_length"``, ``truncation``, ``batch_decode``).
"""

from __future__ import annotations

import string
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<s>", "</s>"

_WORDS = [
    "a",
    "an",
    "the",
    "and",
    "or",
    "of",
    "in",
    "on",
    "at",
    "to",
    "with",
    "without",
    "from",
    "by",
    "for",
    "is",
    "are",
    "was",
    "be",
    "being",
    "while",
    "woman",
    "man",
    "person",
    "girl",
    "boy",
    "people",
    "face",
    "head",
    "hair",
    "eyes",
    "mouth",
    "smile",
    "smiling",
    "talking",
    "laughing",
    "looking",
    "camera",
    "front",
    "profile",
    "left",
    "right",
    "side",
    "view",
    "close",
    "up",
    "upper",
    "body",
    "full",
    "shot",
    "portrait",
    "indoor",
    "outdoor",
    "studio",
    "lighting",
    "light",
    "dark",
    "day",
    "night",
    "evening",
    "sunset",
    "sunrise",
    "white",
    "black",
    "red",
    "green",
    "blue",
    "yellow",
    "brown",
    "gray",
    "grey",
    "blond",
    "blonde",
    "short",
    "long",
    "wearing",
    "dress",
    "shirt",
    "jacket",
    "coat",
    "background",
    "wall",
    "room",
    "street",
    "park",
    "city",
    "forest",
    "beach",
    "sky",
    "water",
    "sitting",
    "standing",
    "walking",
    "running",
    "turning",
    "turns",
    "head",
    "movement",
    "slight",
    "slowly",
    "fast",
    "moving",
    "motion",
    "pattern",
    "square",
    "circle",
    "stripe",
    "stripes",
    "bar",
    "bars",
    "dot",
    "dots",
    "spinning",
    "rotating",
    "bouncing",
    "sliding",
    "diagonal",
    "horizontal",
    "vertical",
    "center",
    "corner",
    "frame",
    "video",
    "image",
    "photo",
    "style",
    "effect",
    "pose",
    "expression",
    "neutral",
    "serious",
    "happy",
    "sad",
    "glasses",
    "hat",
    "scene",
    "soft",
    "hard",
    "warm",
    "cool",
    "bright",
    "high",
    "low",
    "quality",
    "detailed",
    "sharp",
]


def tiny_vocab() -> dict[str, int]:
    tokens = [PAD, UNK, BOS, EOS]
    chars = list(string.ascii_lowercase + string.digits + string.punctuation)
    tokens += chars + ["##" + c for c in chars]
    for w in _WORDS:
        if w not in tokens:
            tokens.append(w)
    return {t: i for i, t in enumerate(tokens)}


def tiny_tokenizer(model_max_length: int = 77) -> PreTrainedTokenizerFast:
    """A deterministic tokenizer with ``<s> ... </s>`` around every text."""
    # heavy: imported when a tiny pipeline is built, so the family modules that import the
    # vocabulary's constants at their top do not load transformers
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = tiny_vocab()
    tok = Tokenizer(models.WordPiece(vocab=vocab, unk_token=UNK, max_input_chars_per_word=64))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Whitespace(), pre_tokenizers.Punctuation()]
    )
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A {EOS}",
        pair=f"{BOS} $A {EOS} $B {EOS}",
        special_tokens=[(BOS, vocab[BOS]), (EOS, vocab[EOS])],
    )
    tok.decoder = decoders.WordPiece()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token=PAD,
        unk_token=UNK,
        bos_token=BOS,
        eos_token=EOS,
        model_max_length=model_max_length,
    )


TINY_VOCAB_SIZE = len(tiny_vocab())
TINY_PAD_ID = 0
TINY_BOS_ID = 2
TINY_EOS_ID = 3
