from __future__ import annotations

import pytest

from loraforge.evaluation.validation import ValidationLog, ValidationRecord
from loraforge.runtime.errors import InvalidInput

TS = (100, 500, 900)


def test_records_survive_a_restart_and_replace_by_step(tmp_path):
    p = tmp_path / "v" / "val.jsonl"
    log = ValidationLog(p)
    log.record(ValidationRecord(200, 0.30, TS, 7, 4, {100: 0.1, 500: 0.3, 900: 0.5}))
    log.record(ValidationRecord(100, 0.35, TS, 7, 4))
    log.record(ValidationRecord(200, 0.25, TS, 7, 4))  # re-measured after a resume
    again = ValidationLog(p)
    assert again.series() == ([100, 200], [0.35, 0.25])
    assert again.loss_at(200) == 0.25 and again.loss_at(300) is None
    assert again.records[0].timesteps == TS


def test_best_step_prefers_the_earlier_on_a_tie():
    log = ValidationLog()
    for step, loss in [(300, 0.2), (100, 0.3), (200, 0.2)]:
        log.record(ValidationRecord(step, loss, TS, 0, 4))
    assert log.best_step() == 200
    assert ValidationLog().best_step() is None


def test_a_different_protocol_is_refused():
    log = ValidationLog()
    log.record(ValidationRecord(100, 0.3, TS, 0, 4))
    with pytest.raises(InvalidInput, match="not be comparable"):
        log.record(ValidationRecord(200, 0.2, TS, 1, 4))
    with pytest.raises(InvalidInput):
        log.record(ValidationRecord(200, 0.2, (100, 500), 0, 4))
