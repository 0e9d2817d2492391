"""Plumbing of the CLIP adherence score with a tiny random CLIP built in code (no download):
the numbers mean nothing, the shapes, pairing, truncation and skipping do."""

from __future__ import annotations

import evaluation_media as M
import numpy as np
import pytest
import torch

from loraforge.curation.errors import BackendUnavailable
from loraforge.evaluation.adherence import ClipScorer, load_clip_scorer, score_adherence
from loraforge.evaluation.choose import choose_checkpoint, evaluate_checkpoint


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    from tokenizers import pre_tokenizers
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    # a byte-level vocabulary without merges: every character is a token
    chars = pre_tokenizers.ByteLevel.alphabet()
    vocab = {c: i for i, c in enumerate(chars)}
    vocab |= {c + "</w>": len(chars) + i for i, c in enumerate(chars)}
    bos, eos = len(vocab), len(vocab) + 1
    vocab |= {"<|startoftext|>": bos, "<|endoftext|>": eos}
    tok = CLIPTokenizer(vocab=vocab, merges=[])
    torch.manual_seed(0)
    cfg = CLIPConfig(
        text_config={
            "vocab_size": len(vocab),
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "max_position_embeddings": 77,
            "bos_token_id": bos,
            "eos_token_id": eos,
            "pad_token_id": eos,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": 32,
            "patch_size": 8,
        },
        projection_dim=16,
    )
    d = tmp_path_factory.mktemp("clip")
    CLIPModel(cfg).save_pretrained(d)
    ip = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    CLIPProcessor(image_processor=ip, tokenizer=tok).save_pretrained(d)
    return d


def test_without_a_model_adherence_is_skipped_with_a_note():
    assert load_clip_scorer(None) is None
    s = score_adherence(None, [M.render("astronaut", 0)], "a woman")
    assert s.skipped and "no CLIP model" in s.note and s.normalised is None


def test_missing_model_directory_is_a_configuration_error(tmp_path):
    with pytest.raises(BackendUnavailable, match=r"config\.json"):
        ClipScorer(tmp_path)


def test_scores_pair_each_render_with_its_prompt(clip_dir):
    scorer = ClipScorer(clip_dir)
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 256, (90, 120, 3), dtype=np.uint8) for _ in range(10)]
    prompts = [f"ohwx_woman in scene number {i}" for i in range(10)]
    s = score_adherence(scorer, imgs, prompts)
    assert not s.skipped and len(s.per_render) == 10
    assert all(-1.0 <= c <= 1.0 for c in s.per_render)
    # float32 scores near zero: an absolute tolerance (the mean is taken in another precision)
    assert s.mean_cosine == pytest.approx(np.mean(s.per_render), abs=1e-6)
    assert s.clip_score == pytest.approx(100 * max(s.mean_cosine, 0.0))
    assert 0.0 <= s.normalised <= 1.0
    # the pairing is render i with prompt i: the diagonal of CLIP's own similarity matrix
    from loraforge.evaluation.images import to_pil_rgb

    with torch.inference_mode():
        inp = scorer.processor(
            text=prompts, images=[to_pil_rgb(i) for i in imgs], return_tensors="pt", padding=True
        )
        out = scorer.model(**inp)
        diag = (out.logits_per_image.diagonal() / scorer.model.logit_scale.exp()).numpy()
    np.testing.assert_allclose(s.per_render, diag, atol=1e-4)


def test_long_prompts_are_truncated_and_one_prompt_serves_all(clip_dir):
    scorer = ClipScorer(clip_dir)
    imgs = M.renders("astronaut", range(3))
    s = score_adherence(scorer, imgs, "woman " * 120)  # far beyond CLIP's 77 tokens
    assert len(s.per_render) == 3
    with pytest.raises(ValueError, match="prompts"):
        scorer.cosines(imgs, ["a", "b"])


def test_adherence_enters_the_choice_when_every_checkpoint_has_it(clip_dir, backend, references):
    scorer = ClipScorer(clip_dir)
    evals = [
        evaluate_checkpoint(
            s,
            M.renders("astronaut", range(40 + s // 10, 43 + s // 10)),
            references,
            backend,
            prompts="ohwx_woman, woman",
            clip_scorer=scorer,
        )
        for s in (10, 20)
    ]
    c = choose_checkpoint(evals)
    assert c.adherence_used
    assert all(r["adherence"] is not None and r["adherence_term"] >= 0 for r in c.rows)
