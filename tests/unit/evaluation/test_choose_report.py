from __future__ import annotations

import evaluation_media as M
import pytest

from loraforge.evaluation.adherence import AdherenceScore
from loraforge.evaluation.choose import CheckpointEval, choose_checkpoint, evaluate_checkpoint
from loraforge.evaluation.diversity import DiversityScore
from loraforge.evaluation.errors import InvalidRenders
from loraforge.evaluation.identity import IdentityScore
from loraforge.evaluation.report import write_report
from loraforge.evaluation.validation import ValidationLog, ValidationRecord

PROMPTS = [f"ohwx_woman, woman, scene {i}" for i in range(6)]


@pytest.fixture(scope="module")
def planted(backend, references):
    """step 100: another face; 200: the reference face in varied scenes; 300: the reference
    face but every render the same picture (overfit)."""
    sets = {
        100: M.renders("hopper", range(30, 36)),
        200: M.renders("astronaut", range(40, 46)),
        300: M.collapsed("astronaut", 6, seed=41),
    }
    losses = {100: 0.20, 200: 0.15, 300: 0.17}
    return [
        evaluate_checkpoint(s, r, references, backend, prompts=PROMPTS, val_loss=losses[s])
        for s, r in sets.items()
    ]


def test_planted_best_checkpoint_is_chosen(planted):
    choice = choose_checkpoint(planted)
    assert choice.step == 200
    by = {r["step"]: r for r in choice.rows}
    assert [r["step"] for r in choice.rows] == [100, 200, 300]
    assert by[300]["collapsed"] and not by[200]["collapsed"] and not by[100]["collapsed"]
    # the collapsed checkpoint has the reference face too: it loses on the penalty only
    assert by[300]["identity_mean"] > 0.5 and by[300]["collapse_penalty"] >= 1.0
    assert by[100]["likeness"] < by[200]["likeness"]
    assert by[200]["chosen"] and not by[100]["chosen"] and not by[300]["chosen"]
    assert not choice.adherence_used  # no CLIP provisioned
    assert "step 200" in choice.reason and "[300]" in choice.reason
    # the order of the evaluations does not matter
    assert choose_checkpoint(list(reversed(planted))).step == 200


def _eval(step, mean, p10=None, face_rate=1.0, collapse=0.4, collapsed=False, adherence=None):
    ident = IdentityScore(
        6, round(6 * face_rate), face_rate, mean, mean if p10 is None else p10, face_rate
    )
    div = DiversityScore(6, collapse, collapse, 0.0, collapsed, 0.85)
    adh = (
        AdherenceScore(True, "skipped")
        if adherence is None
        else AdherenceScore(False, "", adherence * 0.35, adherence * 35, adherence)
    )
    return CheckpointEval(step, ident, div, adh)


def test_ties_go_to_the_earlier_step():
    assert choose_checkpoint([_eval(300, 0.8), _eval(100, 0.8), _eval(200, 0.8)]).step == 100


def test_face_rate_and_p10_and_adherence_shape_the_objective():
    # a slightly better mean with half the renders faceless loses
    assert choose_checkpoint([_eval(100, 0.8), _eval(200, 0.85, face_rate=0.5)]).step == 100
    # the same mean with a drifting worst render loses
    assert choose_checkpoint([_eval(100, 0.8, p10=0.4), _eval(200, 0.8)]).step == 200
    # adherence decides between equal likeness ...
    c = choose_checkpoint([_eval(100, 0.8, adherence=0.5), _eval(200, 0.8, adherence=0.9)])
    assert c.step == 200 and c.adherence_used
    # ... but never outweighs a clear likeness gap (likeness first)
    assert (
        choose_checkpoint([_eval(100, 0.9, adherence=0.2), _eval(200, 0.7, adherence=1.0)]).step
        == 100
    )
    # adherence missing for one checkpoint: not used for any
    c = choose_checkpoint([_eval(100, 0.8, adherence=0.2), _eval(200, 0.8)])
    assert c.step == 100 and not c.adherence_used
    # near-collapse (below the threshold) loses against equal likeness with more variety
    assert choose_checkpoint([_eval(100, 0.8, collapse=0.84), _eval(200, 0.8)]).step == 200


def test_all_collapsed_still_chooses_and_warns():
    c = choose_checkpoint(
        [
            _eval(100, 0.6, collapse=0.97, collapsed=True),
            _eval(200, 0.9, collapse=0.97, collapsed=True),
        ]
    )
    assert c.step == 200 and "WARNING" in c.reason


def test_bad_inputs_are_refused():
    with pytest.raises(InvalidRenders):
        choose_checkpoint([])
    with pytest.raises(InvalidRenders, match="repeat"):
        choose_checkpoint([_eval(100, 0.8), _eval(100, 0.7)])


def test_report_has_table_plots_and_explanation(planted, tmp_path):
    log = ValidationLog(tmp_path / "val.jsonl")
    for step, loss in [(100, 0.2), (200, 0.15), (300, 0.17)]:
        log.record(ValidationRecord(step, loss, (100, 500, 900), 0, 4))
    choice = choose_checkpoint(planted)
    files = write_report(choice, tmp_path / "report", validation=log, title="jane v1")
    assert set(files.plots) == {"identity", "collapse", "validation_loss"}
    for p in files.plots.values():
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000
    md = files.markdown.read_text()
    assert "Chosen checkpoint: step 200" in md and "| **200** |" in md
    assert "Prompt adherence was not used" in md and "identity.png" in md
    page = files.html.read_text()
    assert "step 200" in page and "<table>" in page and "collapse.png" in page
    lines = files.csv.read_text().splitlines()
    assert lines[0].startswith("step,total,likeness") and len(lines) == 4


def test_planted_choice_is_by_likeness_even_when_validation_loss_disagrees(planted):
    # faces were found, so the held-out loss does not decide: step 200 (the reference face,
    # varied) still wins with the worst loss of the three
    swapped = [
        CheckpointEval(
            e.step, e.identity, e.diversity, e.adherence, {100: 0.01, 200: 0.9, 300: 0.02}[e.step]
        )
        for e in planted
    ]
    c = choose_checkpoint(swapped)
    assert c.step == 200 and c.basis == "likeness" and "unmeasurable" not in c.reason


def _faceless(step, val_loss, collapse=0.4, collapsed=False):
    ident = IdentityScore(4, 0, 0.0, None, None, 0.0)
    return CheckpointEval(
        step, ident, DiversityScore(4, collapse, collapse, 0.0, collapsed, 0.85), val_loss=val_loss
    )


def test_no_face_anywhere_falls_back_to_the_lowest_validation_loss():
    c = choose_checkpoint(
        [
            _faceless(100, 0.31),
            _faceless(200, 0.22),
            _faceless(300, 0.25),
            _faceless(400, 0.27, collapse=0.9, collapsed=True),
        ]
    )
    assert c.step == 200 and c.basis == "validation_loss"
    assert "likeness is unmeasurable" in c.reason and "lowest held-out validation loss" in c.reason
    assert "[400]" in c.reason  # the collapse signal is still reported
    assert [r["step"] for r in c.rows if r["chosen"]] == [200]
    # a tie on the loss goes to the earlier step; a missing loss never wins
    assert (
        choose_checkpoint([_faceless(300, 0.2), _faceless(100, 0.2), _faceless(200, None)]).step
        == 100
    )
    # no loss at all: the last step is kept, and said so
    c = choose_checkpoint([_faceless(100, None), _faceless(200, None)])
    assert c.step == 200 and c.basis == "last_step" and "no validation loss" in c.reason


def test_fallback_report_is_written(tmp_path):
    c = choose_checkpoint([_faceless(1, 0.5), _faceless(2, 0.4)])
    files = write_report(c, tmp_path / "r")
    assert "Chosen checkpoint: step 2" in files.markdown.read_text()
    assert "validation_loss" in files.plots


def test_one_face_is_enough_to_choose_by_likeness():
    # a checkpoint whose renders show the face beats faceless ones with a lower loss
    c = choose_checkpoint([_faceless(100, 0.1), _eval(200, 0.7)])
    assert c.step == 200 and c.basis == "likeness"
