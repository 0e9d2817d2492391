from __future__ import annotations

import evaluation_media as M
import numpy as np

from loraforge.curation.geometry import Box
from loraforge.evaluation.diversity import COLLAPSE_THRESHOLD, score_diversity


def test_collapsed_set_is_flagged_and_diverse_set_is_not(backend):
    diverse = score_diversity(M.renders("astronaut", range(40, 46)), backend=backend)
    collapsed = score_diversity(M.collapsed("astronaut", 6, seed=41), backend=backend)
    assert not diverse.collapsed and diverse.mean_pairwise < COLLAPSE_THRESHOLD - 0.2
    assert collapsed.collapsed and collapsed.mean_pairwise > 0.95
    assert collapsed.duplicate_pair_rate > 0.9 and diverse.duplicate_pair_rate == 0.0
    # without a backend nothing is masked; the verdicts stay the same
    assert not score_diversity(M.renders("hopper", range(6))).collapsed
    assert score_diversity(M.collapsed("hopper", 6)).collapsed


def test_half_collapsed_set_sits_between():
    half = M.collapsed("astronaut", 3) + M.renders("astronaut", range(20, 23))
    s = score_diversity(half)
    d = score_diversity(M.renders("astronaut", range(20, 26)))
    c = score_diversity(M.collapsed("astronaut", 6))
    assert d.mean_pairwise < s.mean_pairwise < c.mean_pairwise


def test_face_region_is_masked_out():
    """Two renders that differ ONLY inside the face box: identical once faces are masked."""
    a = M.render("astronaut", 4)
    b = a.copy()
    box = Box(150, 120, 80, 80)
    rng = np.random.default_rng(1)
    b[120:200, 150:230] = rng.integers(0, 256, (80, 80, 3), dtype=np.uint8)
    masked = score_diversity([a, b], face_boxes=[[box], [box]])
    unmasked = score_diversity([a, b], face_boxes=[[], []])
    assert masked.mean_pairwise > 0.99
    assert unmasked.mean_pairwise < masked.mean_pairwise - 0.02


def test_single_render_cannot_be_judged():
    s = score_diversity([M.render("astronaut", 0)])
    assert s.mean_pairwise is None and not s.collapsed
