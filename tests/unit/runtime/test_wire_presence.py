"""Proto3 `optional` numbers at the gRPC boundary: a field that is set (0 included) is
validated as sent, an unset one takes the domain default."""

from __future__ import annotations

from typing import Any

import pytest

from loraforge.gateway.clients import BackendClients
from loraforge.gateway.models import CurationStart, IngestStart, TrainingStart
from loraforge.runtime.errors import InvalidInput
from loraforge.runtime.params import CurationParams, IngestParams, TrainingParams
from loraforge.runtime.servicers import present_fields
from loraforge.trainer.servicer import RUN_NUMBERS, training_params_from_wire
from loraforge.v1 import common_pb2, ingest_pb2, trainer_pb2

DEFAULTS = TrainingParams(dataset_id="d", base_preset="tiny-sdxl")


def _start(**run: Any) -> trainer_pb2.StartTrainingRequest:
    return trainer_pb2.StartTrainingRequest(
        run=common_pb2.TrainingRun(dataset_id="d", base_preset="tiny-sdxl", **run)
    )


def test_unset_training_numbers_take_the_defaults() -> None:
    params = training_params_from_wire(_start())
    assert params == DEFAULTS
    # unset stays unset: the trainer fills in the preset family's defaults (trainer/config.py)
    assert (params.rank, params.alpha, params.learning_rate, params.steps, params.seed) == (
        None,
        None,
        None,
        None,
        None,
    )


@pytest.mark.parametrize(
    "field", ["rank", "alpha", "learning_rate", "steps", "resolution", "frames"]
)
def test_an_explicit_zero_is_refused_and_names_the_field(field: str) -> None:
    with pytest.raises(InvalidInput, match=field):
        training_params_from_wire(_start(**{field: 0}))


def test_set_training_numbers_pass_through_as_sent() -> None:
    values = {
        "rank": 8,
        "alpha": 4,
        "learning_rate": 5e-4,
        "steps": 40,
        "resolution": 256,
        "frames": 9,
        "seed": 7,
    }
    params = training_params_from_wire(_start(**values))
    assert {k: getattr(params, k) for k in values} == values
    assert training_params_from_wire(_start(seed=0, rank=1)).seed == 0  # 0 is a real seed


def test_every_training_run_number_has_presence() -> None:
    run = common_pb2.TrainingRun()
    for name in RUN_NUMBERS:
        assert run.HasField(name) is False
    assert present_fields(common_pb2.TrainingRun(rank=0, steps=3), *RUN_NUMBERS) == {
        "rank": 0,
        "steps": 3,
    }


def test_ingest_and_curation_numbers_follow_presence() -> None:
    names = ("min_s", "max_s", "fps", "max_long_side")
    unset = ingest_pb2.StartIngestRequest(sources=["a"])
    assert IngestParams.parse(sources=["a"], present=present_fields(unset, *names)) == IngestParams(
        sources=["a"]
    )
    zero = ingest_pb2.StartIngestRequest(sources=["a"], max_long_side=0)
    with pytest.raises(InvalidInput, match="max_long_side"):
        IngestParams.parse(sources=["a"], present=present_fields(zero, *names))
    with pytest.raises(InvalidInput, match="target_size"):
        CurationParams.parse(present={"target_size": 0})


class _Recorder(BackendClients):
    """BackendClients without channels: records the request instead of sending it."""

    def __init__(self) -> None:
        super().__init__({})
        self.sent: list[Any] = []

    async def _call(self, kind: str, method: str, request: Any) -> Any:
        self.sent.append(request)
        return common_pb2.Job(
            id="j", kind=kind, tenant="acme", project="jane", state=common_pb2.JOB_STATE_PENDING
        )


async def test_gateway_sends_only_the_numbers_the_client_gave() -> None:
    clients = _Recorder()
    await clients.start_training(
        "acme", "jane", TrainingStart(dataset_id="d", preset="sdxl", rank=8, seed=0)
    )
    run = clients.sent[-1].run
    assert present_fields(run, *RUN_NUMBERS) == {"rank": 8, "seed": 0}
    await clients.start_ingest("acme", "jane", IngestStart(sources=["a"], fps=8))
    assert present_fields(clients.sent[-1], "min_s", "max_s", "fps", "max_long_side") == {"fps": 8}
    await clients.start_curation("acme", "jane", CurationStart())
    assert not clients.sent[-1].HasField("target_size")
