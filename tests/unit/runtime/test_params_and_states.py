from __future__ import annotations

import pytest

from loraforge.runtime.errors import InvalidInput
from loraforge.runtime.jobs import ALLOWED_TRANSITIONS, JobState, new_job_id
from loraforge.runtime.params import IngestParams, RenderParams, TrainingParams


def test_terminal_states_allow_nothing_and_pending_cannot_succeed() -> None:
    for state in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED):
        assert ALLOWED_TRANSITIONS[state] == frozenset()
    assert JobState.SUCCEEDED not in ALLOWED_TRANSITIONS[JobState.PENDING]
    assert JobState.PENDING not in ALLOWED_TRANSITIONS[JobState.RUNNING]


def test_job_ids_from_request_ids_are_stable_and_scoped() -> None:
    assert new_job_id("k", scope="a/b/ingest") == new_job_id("k", scope="a/b/ingest")
    assert new_job_id("k", scope="a/b/ingest") != new_job_id("k", scope="other/b/ingest")
    assert new_job_id() != new_job_id()


def test_proto_zero_values_mean_defaults() -> None:
    p = IngestParams.parse(sources=["a"], min_s=0.0, max_s=0.0, fps=0.0, max_long_side=0)
    assert (p.min_s, p.max_s, p.fps, p.max_long_side) == (2.0, 5.0, 16.0, None)


@pytest.mark.parametrize(
    ("cls", "values", "fragment"),
    [
        (IngestParams, {"sources": []}, "sources"),
        (IngestParams, {"sources": ["a"], "min_s": 8.0, "max_s": 5.0}, "min_s"),
        (TrainingParams, {"dataset_id": "d", "base_preset": "sdxl", "rank": -1}, "rank"),
        (TrainingParams, {"dataset_id": "d", "base_preset": "sdxl", "bogus": 1}, "bogus"),
        (RenderParams, {"scenario_yaml": ""}, "scenario_yaml"),
    ],
)
def test_bad_parameters_name_the_field(cls, values, fragment: str) -> None:
    with pytest.raises(InvalidInput, match=fragment):
        cls.parse(**values)


def test_progress_events_and_the_job_kind_they_name() -> None:
    from loraforge.runtime.job_service import job_event_parts, progress_event

    assert progress_event("ingest") == "ingest.progress"
    assert progress_event("trainer") == "training.progress"  # beside training.completed
    assert job_event_parts("training.progress") == ("trainer", "progress")
    assert job_event_parts("trainer.succeeded") == ("trainer", "succeeded")
    assert job_event_parts("ingest.progress") == ("ingest", "progress")
