"""Tiny tokenizers built in code (no download): a WordLevel vocabulary ordered by frequency,
the way BPE merges and sentencepiece scores are, wrapped like a provisioned tokenizer."""

from __future__ import annotations

from tokenizers import Tokenizer, models, pre_tokenizers, processors

from loraforge.captioning.tokens import HFTokenizer

# ids are ranks: low id = frequent. "ohwx" is deliberately a frequent token here.
COMMON = [
    "<s>",
    "</s>",
    "<unk>",
    ",",
    "a",
    "the",
    "woman",
    "person",
    "ohwx",
    "fire",
    "smiling",
    "front",
    "view",
    "daylight",
    "static",
    "camera",
    "red",
    "jacket",
    "hair",
    "wearing",
]
RARE = [f"tok{i}" for i in range(40)] + ["zqxv"]


def tiny_tokenizer(max_tokens: int = 77) -> HFTokenizer:
    vocab = {w: i for i, w in enumerate(COMMON + RARE)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace()])
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", 0), ("</s>", 1)]
    )
    return HFTokenizer(tok, max_tokens, name="tiny-wordlevel")
