"""The CLI's error policy and job following without a server: gRPC statuses become the
project's errors, each error one exit code, and how `follow` polls."""

from __future__ import annotations

import json

import grpc
import pytest

from loraforge.cli import jobs, output
from loraforge.cli.backend import RPC_TIMEOUT_S, GrpcBackend, Job, call
from loraforge.runtime.errors import LoraforgeError
from loraforge.runtime.settings import load_settings
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
        (grpc.StatusCode.NOT_FOUND, 2, "NOT_FOUND: why"),  # as a gateway's 404
        (grpc.StatusCode.INTERNAL, 1, "INTERNAL: why"),
    ],
)
def test_call_maps_failures_to_exit_codes(code, exit_code, says, capsys, monkeypatch) -> None:
    with pytest.raises(LoraforgeError) as exc:
        call(_raise(code), object(), service="captioning", target="h:1")
    assert output.exit_code(exc.value) == exit_code and says in str(exc.value)
    # the one place that prints it: JSON on stdout with --json
    monkeypatch.setattr(output, "wants_json", lambda: True)
    with pytest.raises(SystemExit) as done:
        output.fail(str(exc.value), code=output.exit_code(exc.value))
    assert done.value.code == exit_code
    assert says in json.loads(capsys.readouterr().out)["error"]


def test_call_passes_a_deadline() -> None:
    seen = {}

    def method(request, timeout):
        seen["timeout"] = timeout
        return "job"

    assert call(method, object(), service="x", target="h:1") == "job"
    assert seen["timeout"] == RPC_TIMEOUT_S


def _job(state: str, progress: float = 0.0) -> Job:
    return Job(
        id="j1",
        service="captioning",
        kind="captioning",
        state=state,
        project="jane",
        tenant="acme",
        progress=progress,
        message=f"at {progress}",
    )


class _Backend:
    """What `follow` asks of a backend: `get` (answers in turn) and `cancel_hint` (the local
    stack's)."""

    where, tenant = "test", "acme"

    def __init__(self, answers: list[Job], interrupt: bool = False):
        self.answers, self.interrupt, self.asked = list(answers), interrupt, []

    def get(self, kind: str, project: str, job_id: str) -> Job:
        self.asked.append((kind, project, job_id))
        if self.interrupt:
            raise KeyboardInterrupt
        return self.answers.pop(0)

    def cancel_hint(self, job: Job) -> str:
        return GrpcBackend(load_settings(), "acme").cancel_hint(job)


def test_follow_polls_until_the_job_ends(monkeypatch) -> None:
    monkeypatch.setattr(jobs, "POLL_S", 0.0)
    backend = _Backend([])
    for quiet in (True, False):
        monkeypatch.setattr(jobs, "wants_json", lambda quiet=quiet: quiet)
        backend.answers = [_job("RUNNING", 0.5), _job("SUCCEEDED", 1.0)]
        done = jobs.follow(backend, _job("PENDING"))  # type: ignore[arg-type]
        assert done.state == "SUCCEEDED" and done.terminal
    assert backend.asked[0] == ("captioning", "jane", "j1")


def test_follow_gives_up_at_its_timeout_and_draws_into_a_given_bar(monkeypatch) -> None:
    monkeypatch.setattr(jobs, "POLL_S", 0.0)
    updates = []

    class Bar:
        def update(self, task, **kw):
            updates.append((task, kw["completed"]))

    backend = _Backend([_job("RUNNING", 0.3)] * 1000)
    job = jobs.follow(
        backend,  # type: ignore[arg-type]
        _job("RUNNING", 0.1),
        timeout_s=0.0,
        progress=(Bar(), 7),  # type: ignore[arg-type]
    )
    assert job.state == "RUNNING" and updates[0] == (7, pytest.approx(0.1))


def test_ctrl_c_stops_following_and_says_the_job_keeps_running(monkeypatch) -> None:
    monkeypatch.setattr(jobs, "POLL_S", 0.0)
    monkeypatch.setattr(jobs, "wants_json", lambda: True)
    with pytest.raises(output.Interrupted) as exc:
        jobs.follow(_Backend([], interrupt=True), _job("RUNNING"))  # type: ignore[arg-type]
    assert output.exit_code(exc.value) == 130
    error = str(exc.value)
    assert "keeps running" in error and "CancelJob" in error and "j1" in error


def test_preview_note_says_each_rendered_step_once() -> None:
    from google.protobuf import struct_pb2

    job = common_pb2.Job(id="j1", state=common_pb2.JOB_STATE_RUNNING, progress=0.5)
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
