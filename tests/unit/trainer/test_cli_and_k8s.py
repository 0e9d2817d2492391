"""loraforge-train entry point; the Kubernetes Job controller against a fake API."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from loraforge.runtime.k8s_jobs import build_gpu_job
from loraforge.trainer import cli
from loraforge.trainer.k8s_controller import JobStatus, LogCursor, TrainingJobController


def test_help_describes_every_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    parser = cli.build_parser()
    for action in parser._actions:
        assert action.help, action.option_strings
        for flag in action.option_strings:
            assert flag in text


def test_print_config_merges_file_and_flags(
    tmp_path: Path, one_clip: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "run.yaml"
    cfg.write_text(
        f"preset: tiny-wan2.1-t2v\ndataset: {one_clip}\noutput_dir: {tmp_path}\nrank: 4\n"
    )
    assert cli.main(["--run-config", str(cfg), "--rank", "16", "--print-config"]) == 0
    resolved = json.loads(capsys.readouterr().out)
    assert resolved["rank"] == 16 and resolved["objective"] == "flow"
    assert resolved["target_modules"][0] == "attn1.to_q"


def test_bad_input_exits_2_with_reason(
    tmp_path: Path, one_clip: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(
        [
            "--preset",
            "tiny-wan2.1-t2v",
            "--dataset",
            str(one_clip),
            "--output",
            str(tmp_path),
            "--frames",
            "8",
            "--print-config",
        ]
    )
    assert code == 2
    assert "4k+1" in capsys.readouterr().err
    assert cli.main(["--preset", "nope", "--dataset", "x", "--output", "y"]) == 2
    assert "valid presets" in capsys.readouterr().err


def test_run_mode_reads_config_and_trains(
    tmp_path: Path, one_image: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "abc123.json").write_text(
        json.dumps(
            {
                "preset": "tiny-sd1.5",
                "dataset": str(one_image),
                "output_dir": str(tmp_path / "out"),
                "steps": 2,
                "rank": 2,
                "name": "run-abc123",
            }
        )
    )
    assert cli.main(["--run", "abc123", "--run-config-dir", str(tmp_path)]) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [e["step"] for e in events if e["event"] == "progress"] == [1, 2]
    assert events[-1]["status"] == "succeeded"
    assert (tmp_path / "out" / "run-abc123.safetensors").is_file()


class _ApiError(Exception):
    def __init__(self, status: int):
        super().__init__(f"HTTP {status}")
        self.status = status


class FakeK8s:
    """Just the BatchV1Api / CoreV1Api methods the controller uses, over dicts."""

    def __init__(self) -> None:
        self.jobs: dict[str, dict[str, Any]] = {}
        self.statuses: list[dict[str, Any]] = []
        self.log_text = ""
        self.deleted: list[tuple[str, dict[str, Any]]] = []

    def create_namespaced_job(
        self, namespace: str, body: dict[str, Any], **kw: Any
    ) -> dict[str, Any]:
        name = body["metadata"]["name"]
        if name in self.jobs:
            raise _ApiError(409)
        self.jobs[name] = body
        return body

    def read_namespaced_job_status(self, name: str, namespace: str, **kw: Any) -> dict[str, Any]:
        if name not in self.jobs:
            raise _ApiError(404)
        status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        return {"status": status}

    def delete_namespaced_job(self, name: str, namespace: str, **kw: Any) -> None:
        if name not in self.jobs:
            raise _ApiError(404)
        del self.jobs[name]
        self.deleted.append((name, kw))

    def list_namespaced_pod(self, namespace: str, label_selector: str, **kw: Any) -> dict[str, Any]:
        return {"items": [{"metadata": {"name": "pod-1"}}]}

    def read_namespaced_pod_log(self, name: str, namespace: str, **kw: Any) -> str:
        return self.log_text


def test_controller_create_watch_cancel() -> None:
    api = FakeK8s()
    ctl = TrainingJobController(api, api, "loraforge", "loraforge/trainer:1", sleep=lambda s: None)
    body = ctl.create("run-7")
    assert body == build_gpu_job("train", "run-7", "loraforge/trainer:1", "loraforge")
    assert body["spec"]["template"]["spec"]["containers"][0]["command"] == [
        "loraforge-train",
        "--run",
        "run-7",
    ]
    ctl.create("run-7")  # idempotent: 409 means it is already there
    assert list(api.jobs) == ["loraforge-train-run-7"]

    api.statuses = [
        {},
        {"active": 1},
        {"active": 1},
        {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]},
    ]
    seen: list[JobStatus] = []
    lines: list[str] = []
    logs = iter(["", '{"event": "progress", "step": 1}', '{"event": "progress", "step": 1}\nok'])

    def next_log(*_a: Any, **_k: Any) -> str:
        return next(logs, "x\ny\nz")

    api.read_namespaced_pod_log = next_log  # type: ignore[method-assign]
    final = ctl.watch("run-7", on_status=seen.append, on_log=lines.append)
    assert final.state == "SUCCEEDED"
    assert [s.state for s in seen] == ["PENDING", "RUNNING", "SUCCEEDED"]
    assert lines[:2] == ['{"event": "progress", "step": 1}', "ok"]

    api.statuses = [
        {
            "failed": 3,
            "conditions": [
                {
                    "type": "Failed",
                    "status": "True",
                    "reason": "BackoffLimitExceeded",
                    "message": "3 tries",
                }
            ],
        }
    ]
    assert ctl.status("run-7") == JobStatus("FAILED", "BackoffLimitExceeded: 3 tries")
    assert ctl.cancel("run-7") is True
    assert api.deleted[0][1]["propagation_policy"] == "Foreground"
    assert ctl.cancel("run-7") is False
    assert ctl.status("run-7").state == "CANCELLED"


def test_generated_job_validates_against_kubernetes_schema() -> None:
    kv = pytest.importorskip("kubernetes_validate")
    ctl = TrainingJobController(FakeK8s(), FakeK8s(), "loraforge", "loraforge/trainer:1")
    job = ctl.manifest("run-7", env={"LORAFORGE_LOG__LEVEL": "DEBUG"})
    kv.validate(job, kv.latest_version(), strict=True)


def test_log_cursor_returns_each_line_once_across_overlapping_windows() -> None:
    cursor = LogCursor()
    # 01.500000001 is after 01.5, though "…01.5Z" sorts after it as text (Kubernetes trims
    # trailing zeros of the fraction)
    first = [
        "2026-11-23T12:00:01.5Z a",
        "2026-11-23T12:00:01.5Z b",
        "2026-11-23T12:00:01.500000001Z c",
    ]
    assert cursor.take(first) == ["a", "b", "c"]
    again = first + ["2026-11-23T12:00:02Z d", "2026-11-23T12:00:02Z d"]
    assert cursor.take(again) == ["d", "d"]  # the window overlaps; two equal lines both count
    assert cursor.take(
        [
            "2026-11-23T12:00:01.4Z old",
            "2026-11-23T12:00:02Z d",
            "2026-11-23T12:00:02Z d",
            "2026-11-23T12:00:02.000000001Z e",
        ]
    ) == ["e"]


def test_watch_asks_for_a_window_and_follows_a_retried_pod() -> None:
    api = FakeK8s()
    ctl = TrainingJobController(api, api, "loraforge", "img", sleep=lambda s: None)
    ctl.create("run-9")
    api.statuses = [
        {"active": 1},
        {"active": 1},
        {"active": 1},
        {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]},
    ]
    pods = [[{"metadata": {"name": "p1", "creation_timestamp": "2026-11-23T12:00:00Z"}}]] * 2 + [
        [
            {"metadata": {"name": "p2", "creation_timestamp": "2026-11-23T12:05:00Z"}},
            {"metadata": {"name": "p1", "creation_timestamp": "2026-11-23T12:00:00Z"}},
        ]
    ] * 2
    logs = {
        "p1": "2026-11-23T12:00:10Z one\n2026-11-23T12:00:20Z two",
        "p2": "2026-11-23T12:05:10Z retry-1",
    }
    calls: list[tuple[str, dict[str, Any]]] = []

    def list_pods(namespace: str, label_selector: str, **kw: Any) -> dict[str, Any]:
        return {"items": pods.pop(0) if len(pods) > 1 else pods[0]}

    def read_log(name: str, namespace: str, **kw: Any) -> str:
        calls.append((name, kw))
        return logs[name]

    api.list_namespaced_pod = list_pods  # type: ignore[method-assign]
    api.read_namespaced_pod_log = read_log  # type: ignore[method-assign]
    lines: list[str] = []
    assert ctl.watch("run-9", on_log=lines.append).state == "SUCCEEDED"
    # the retried pod's first lines are not skipped because the old pod had more
    assert lines == ["one", "two", "retry-1"]
    assert [c[0] for c in calls] == ["p1", "p1", "p2", "p2"]
    assert all(kw["timestamps"] for _, kw in calls)
    assert "since_seconds" not in calls[0][1] and calls[1][1]["since_seconds"] >= 60
    assert "since_seconds" not in calls[2][1]  # a new pod is read from its start
