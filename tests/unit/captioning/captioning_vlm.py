"""A tiny random-weight BLIP captioner built from config in code and saved to a local folder,
so the production loader (AutoProcessor / AutoModelForImageTextToText, local files only) runs
exactly as it would on a provisioned checkpoint."""

from __future__ import annotations

from pathlib import Path

WORDS = ["a", "woman", "wearing", "jacket", "red", "hair", "park", "smiling", "appears", "possibly"]


def build_tiny_blip(folder: Path, favour: str = "jacket") -> Path:
    import torch
    from transformers import (
        BertTokenizer,
        BlipConfig,
        BlipForConditionalGeneration,
        BlipImageProcessor,
        BlipProcessor,
    )

    folder.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    tok = BertTokenizer(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True)
    tok.bos_token = "[CLS]"
    proc = BlipProcessor(
        image_processor=BlipImageProcessor(size={"height": 32, "width": 32}), tokenizer=tok
    )
    config = BlipConfig(
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "image_size": 32,
            "patch_size": 16,
        },
        text_config={
            "vocab_size": len(vocab),
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "max_position_embeddings": 32,
            "bos_token_id": 2,
            "sep_token_id": 3,
            "pad_token_id": 0,
            "eos_token_id": 3,
        },
        projection_dim=32,
    )
    torch.manual_seed(0)
    model = BlipForConditionalGeneration(config).eval()
    # random weights babble; a large output bias on one word makes the babble deterministic
    with torch.no_grad():
        bias = model.text_decoder.cls.predictions.decoder.bias
        bias += torch.where(torch.arange(len(vocab)) == vocab.index(favour), 50.0, 0.0)
    model.save_pretrained(folder)
    proc.save_pretrained(folder)
    return folder
