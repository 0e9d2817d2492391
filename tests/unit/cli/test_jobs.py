"""loraforge.cli.jobs without a server: the error policy of `call` and how `follow` polls."""

from __future__ import annotations

import json

import grpc
import pytest

from loraforge.cli import jobs
from loraforge.v1 import common_pb2


class _Failure(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str):
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


def _raise(code: grpc.StatusCode, details: str = "why"):
    def method(request, timeout):
        raise _Failure(code, details)

    return method


@pytest.mark.parametrize(
    ("code", "exit_code", "says"),
    [
        (grpc.StatusCode.UNAVAILABLE, 1, "loraforge stack up"),
        (grpc.StatusCode.DEADLINE_EXCEEDED, 1, "LORAFORGE_ENDPOINTS__CAPTIONING"),
        (grpc.StatusCode.INVALID_ARGUMENT, 2, "why"),
        (grpc.StatusCode.INTERNAL, 1, "INTERNAL: why"),
    ],
)
def test_call_maps_failures_to_exit_codes(code, exit_code, says, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        jobs.call(_raise(code), object(), service="captioning", target="h:1", as_json=True)
    assert exc.value.code == exit_code
    assert says in json.loads(capsys.readouterr().out)["error"]


def test_call_passes_a_deadline() -> None:
    seen = {}

    def method(request, timeout):
        seen["timeout"] = timeout
        return "job"

    assert jobs.call(method, object(), service="x", target="h:1", as_json=False) == "job"
    assert seen["timeout"] == jobs.RPC_TIMEOUT_S


def _job(state: int, progress: float = 0.0) -> common_pb2.Job:
    return common_pb2.Job(id="j1", state=state, progress=progress, message=f"at {progress}")


class _Stub:
    def __init__(self, jobs_: list[common_pb2.Job], interrupt: bool = False):
        self.jobs, self.interrupt, self.requests = list(jobs_), interrupt, []

    def GetJob(self, request, timeout):
        self.requests.append(request)
        if self.interrupt:
            raise KeyboardInterrupt
        return self.jobs.pop(0)


def test_follow_polls_until_the_job_ends(monkeypatch) -> None:
    monkeypatch.setattr(jobs, "POLL_S", 0.0)
    stub = _Stub([])
    scope = jobs.scope("acme", "jane")
    for as_json in (True, False):
        stub.jobs = [
            _job(common_pb2.JOB_STATE_RUNNING, 0.5),
            _job(common_pb2.JOB_STATE_SUCCEEDED, 1.0),
        ]
        done = jobs.follow(
            stub,
            scope,
            _job(common_pb2.JOB_STATE_PENDING),
            service="x",
            target="h:1",
            as_json=as_json,
        )
        assert jobs.job_state(done) == "SUCCEEDED" and jobs.is_terminal(done)
    assert stub.requests[0].job_id == "j1" and stub.requests[0].scope.project == "jane"


def test_follow_gives_up_at_its_timeout_and_draws_into_a_given_bar(monkeypatch) -> None:
    monkeypatch.setattr(jobs, "POLL_S", 0.0)
    updates = []

    class Bar:
        def update(self, task, **kw):
            updates.append((task, kw["completed"]))

    stub = _Stub([_job(common_pb2.JOB_STATE_RUNNING, 0.3)] * 1000)
    job = jobs.follow(
        stub,
        jobs.scope("acme", "jane"),
        _job(common_pb2.JOB_STATE_RUNNING, 0.1),
        service="x",
        target="h:1",
        as_json=False,
        timeout_s=0.0,
        progress=(Bar(), 7),
    )
    assert jobs.job_state(job) == "RUNNING" and updates[0] == (7, pytest.approx(0.1))


def test_ctrl_c_stops_following_and_says_the_job_keeps_running(monkeypatch, capsys) -> None:
    monkeypatch.setattr(jobs, "POLL_S", 0.0)
    with pytest.raises(SystemExit) as exc:
        jobs.follow(
            _Stub([], interrupt=True),
            jobs.scope("acme", "jane"),
            _job(common_pb2.JOB_STATE_RUNNING),
            service="captioning",
            target="h:1",
            as_json=True,
        )
    assert exc.value.code == 130
    error = json.loads(capsys.readouterr().out)["error"]
    assert "keeps running" in error and "CancelJob" in error and "j1" in error


def test_preview_note_says_each_rendered_step_once() -> None:
    from google.protobuf import struct_pb2

    job = _job(common_pb2.JOB_STATE_RUNNING, 0.5)
    announced: set[int] = set()
    assert jobs.preview_note(jobs.job_result(job), announced) is None  # no result yet
    result = struct_pb2.Struct()
    result.update(
        {
            "step": 500,
            "preview_step": 500,
            "preview_keys": [f"acme/jane/runs/j1/previews/step-500/{i:02d}.png" for i in range(4)],
        }
    )
    job.result.CopyFrom(result)
    assert jobs.preview_note(jobs.job_result(job), announced) == (
        "previews of step 500: loras/acme/jane/runs/j1/previews/step-500/ (4 images)"
    )
    assert jobs.preview_note(jobs.job_result(job), announced) is None
