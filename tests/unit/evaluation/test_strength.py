from __future__ import annotations

import evaluation_media as M
import pytest

from loraforge.evaluation.errors import InvalidRenders
from loraforge.evaluation.strength import band, pick_weight, recommend_strength


def test_planted_best_weight_is_recommended(backend, references):
    """0.6: too weak, the base model's generic face (another person); 0.8 and 1.0: the person in
    varied scenes (same prompts and seeds, so equal likeness: the lower weight wins); 1.2: the
    person, but every render the same picture (too strong, collapsed)."""
    calls = []
    seeds = range(40, 44)  # the same seeds as the other tests: their faces are memoised

    def render_at(w: float):
        calls.append(w)
        if w < 0.75:
            return M.renders("hopper", range(30, 34))
        if w <= 1.0:
            return M.renders("astronaut", seeds)
        return M.collapsed("astronaut", 6, seed=41)[:4]

    rec = recommend_strength(render_at, references, backend, weights=(1.2, 0.6, 1.0, 0.8))
    assert rec.weight == 0.8
    assert calls == [0.6, 0.8, 1.0, 1.2]  # each weight rendered once, in ascending order
    by = {r["weight"]: r for r in rec.rows}
    assert by[1.2]["collapsed"] and not by[0.8]["collapsed"]
    assert by[0.6]["likeness"] < by[0.8]["likeness"] == by[1.0]["likeness"]
    assert [r["weight"] for r in rec.rows if r["recommended"]] == [0.8]
    assert by[0.8]["band"] == "normal" and "lowest" in rec.reason


def _row(w, lk, collapsed=False, face_rate=1.0):
    return {"weight": w, "likeness": lk, "collapsed": collapsed, "face_rate": face_rate}


def test_tolerance_prefers_the_lower_weight():
    rows = [_row(0.7, 0.80), _row(0.9, 0.81), _row(1.1, 0.85)]
    assert pick_weight(rows, tolerance=0.02)[0] == 1.1
    assert pick_weight(rows, tolerance=0.05)[0] == 0.7
    assert pick_weight(list(reversed(rows)), tolerance=0.045)[0] == 0.9


def test_collapsed_and_faceless_weights_are_not_recommended():
    rows = [_row(0.5, 0.5, face_rate=0.25), _row(0.8, 0.7), _row(1.2, 0.9, collapsed=True)]
    assert pick_weight(rows)[0] == 0.8
    w, reason = pick_weight([_row(0.8, 0.9, collapsed=True), _row(1.0, 0.9, collapsed=True)])
    assert w is None and "overfit" in reason
    w, reason = pick_weight([_row(0.6, 0.3, face_rate=0.2), _row(0.9, 0.4, face_rate=0.3)])
    assert w == 0.9 and "no weight finds a face" in reason


def test_bands_follow_the_documents():
    assert [band(w) for w in (0.5, 0.69, 0.7, 1.0, 1.01)] == [
        "weak",
        "weak",
        "normal",
        "normal",
        "strong",
    ]


def test_no_weights_is_refused(backend, references):
    with pytest.raises(InvalidRenders):
        recommend_strength(lambda w: [], references, backend, weights=())
