"""Training as a Kubernetes Job: the service side against a fake API and an in-memory store,
the pod side's progress lines and the `loraforge-train --run` dispatch."""

from __future__ import annotations

import io
import json
import threading
import time
from typing import Any

import pytest

from loraforge.runtime.errors import Cancelled, InvalidInput
from loraforge.runtime.jobs import Job
from loraforge.runtime.k8s_controller import PodContext
from loraforge.runtime.storage import Bucket
from loraforge.trainer import cli, k8s_run
from loraforge.trainer.k8s_controller import TrainingJobController
from loraforge.trainer.k8s_run import KubernetesJobFailed, KubernetesTraining
from loraforge.trainer.worker import TrainingWork

from .test_cli_and_k8s import FakeK8s

JOB_ID = "j0123456789abcdef01234567"
PREFIX = f"acme/jane/runs/{JOB_ID}"
PARAMS = {"dataset_id": "ds-1", "base_preset": "tiny-sd1.5", "steps": 2, "on_kubernetes": True}


class MemoryStore:
    """The ObjectStore calls k8s_run makes, over a dict."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], Any] = {}

    def put_json(self, bucket: Bucket, key: str, value: Any) -> None:
        self.objects[(Bucket(bucket).value, key)] = json.loads(json.dumps(value))

    def get_json(self, bucket: Bucket, key: str) -> Any:
        return self.objects[(Bucket(bucket).value, key)]

    def stat(self, bucket: Bucket, key: str) -> object | None:
        return object() if (Bucket(bucket).value, key) in self.objects else None


class ScriptedK8s(FakeK8s):
    """Each status read advances one step of `script`: (Job status, pod log text so far)."""

    def __init__(
        self, script: list[tuple[dict[str, Any], str]], on_create: Any = None, gate: Any = None
    ) -> None:
        super().__init__()
        self.script = script
        self.i = -1
        self.on_create = on_create
        self.gate = gate or (lambda i: True)  # may the script advance to step i?

    def create_namespaced_job(
        self, namespace: str, body: dict[str, Any], **kw: Any
    ) -> dict[str, Any]:
        out = super().create_namespaced_job(namespace, body)
        if self.on_create:
            self.on_create(body)
        return out

    def read_namespaced_job_status(self, name: str, namespace: str, **kw: Any) -> dict[str, Any]:
        if name not in self.jobs:
            return super().read_namespaced_job_status(name, namespace)  # 404
        if self.gate(self.i + 1):
            self.i = min(self.i + 1, len(self.script) - 1)
        return {"status": self.script[self.i][0]}

    def read_namespaced_pod_log(self, name: str, namespace: str, **kw: Any) -> str:
        return self.script[max(self.i, 0)][1]


class RecordingContext:
    def __init__(self, cancel_after: int | None = None) -> None:
        self.calls: list[tuple[float, str, dict[str, Any]]] = []
        self.cancel_after = cancel_after

    async def progress(self, fraction: float, message: str = "", **result: Any) -> None:
        if self.cancel_after is not None and len(self.calls) >= self.cancel_after:
            raise Cancelled("job was cancelled")
        self.calls.append((fraction, message, result))


def _job() -> Job:
    return Job(id=JOB_ID, kind="trainer", tenant="acme", project="jane", params=PARAMS)


def _training(api: FakeK8s, store: MemoryStore) -> KubernetesTraining:
    ctl = TrainingJobController(
        api, api, "loraforge", "loraforge/trainer:1", sleep=lambda s: time.sleep(0.005)
    )
    return KubernetesTraining(store, ctl, poll_s=0.005, tick_s=0.01)  # type: ignore[arg-type]


def _progress(p: float, message: str, step: int) -> str:
    return json.dumps({"event": "progress", "progress": p, "message": message, "step": step})


COMPLETE = {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}


async def test_job_runs_relays_progress_and_answers_with_run_json() -> None:
    store = MemoryStore()
    record = {"run_prefix": PREFIX, "last_key": f"{PREFIX}/last.safetensors"}
    log1 = "loading\n" + _progress(0.3, "step 1/2, loss 0.5000", 1)
    log2 = log1 + "\n" + _progress(0.6, "step 2/2, loss 0.4000", 2)
    script = [({}, ""), ({"active": 1}, log1), ({"active": 1}, log2), (COMPLETE, log2)]

    def pod_commits(body: dict[str, Any]) -> None:  # what the pod leaves behind
        store.put_json(Bucket.LORAS, f"{PREFIX}/run.json", record)

    ctx = RecordingContext()

    def gate(i: int) -> bool:  # each stage lasts until the service relayed it once
        want = {1: "waiting for a GPU node", 2: "step 1/2", 3: "step 2/2"}.get(i)
        return want is None or any(want in m for _f, m, _r in ctx.calls)

    api = ScriptedK8s(script, on_create=pod_commits, gate=gate)
    got = await _training(api, store).run(_job(), ctx, PREFIX)
    assert got == record

    body = api.jobs[f"loraforge-train-{JOB_ID}"]
    assert body["spec"]["template"]["spec"]["containers"][0]["command"] == [
        "loraforge-train",
        "--run",
        JOB_ID,
    ]
    # The spec the pod reads: the job record with on_kubernetes off, found from the run id.
    job = k8s_run.read_spec(store, JOB_ID)  # type: ignore[arg-type]
    assert (job.id, job.tenant, job.project) == (JOB_ID, "acme", "jane")
    assert job.params["on_kubernetes"] is False and job.params["steps"] == 2
    assert (Bucket.LORAS.value, f"{PREFIX}/k8s-spec.json") in store.objects
    assert (Bucket.LORAS.value, f"_k8s/train/{JOB_ID}.json") in store.objects

    assert (0.3, "step 1/2, loss 0.5000", {"step": 1}) in ctx.calls
    assert (0.6, "step 2/2, loss 0.4000", {"step": 2}) in ctx.calls


async def test_cancel_deletes_the_job() -> None:
    api = ScriptedK8s([({"active": 1}, _progress(0.2, "step 1/9", 1))])
    ctx = RecordingContext(cancel_after=2)
    with pytest.raises(Cancelled):
        await _training(api, MemoryStore()).run(_job(), ctx, PREFIX)
    assert [name for name, _kw in api.deleted] == [f"loraforge-train-{JOB_ID}"]
    assert api.jobs == {}


async def test_failed_job_names_the_reason_and_the_pods_last_lines() -> None:
    failed = {
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
    api = ScriptedK8s(
        [
            ({"active": 1}, ""),
            (failed, "Traceback (most recent call last):\nRuntimeError: CUDA OOM"),
        ]
    )
    with pytest.raises(KubernetesJobFailed) as err:
        await _training(api, MemoryStore()).run(_job(), RecordingContext(), PREFIX)
    assert "BackoffLimitExceeded" in str(err.value) and "CUDA OOM" in str(err.value)
    assert isinstance(err.value, InvalidInput)  # fails the job at once, no redelivery


async def test_completed_job_without_run_json_fails() -> None:
    api = ScriptedK8s([(COMPLETE, "")])
    with pytest.raises(KubernetesJobFailed, match="wrote no"):
        await _training(api, MemoryStore()).run(_job(), RecordingContext(), PREFIX)


async def test_job_deleted_by_someone_else_is_cancelled() -> None:
    api = ScriptedK8s([({"active": 1}, "")])
    training = _training(api, MemoryStore())

    def delete_soon() -> None:
        time.sleep(0.05)
        api.jobs.clear()

    threading.Thread(target=delete_soon).start()
    with pytest.raises(Cancelled, match="deleted"):
        await training.run(_job(), RecordingContext(), PREFIX)


async def test_without_kubernetes_the_service_says_what_to_configure() -> None:
    work = TrainingWork(MemoryStore())  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="LORAFORGE_K8S__TRAINING_JOBS"):
        await work(_job(), RecordingContext())  # type: ignore[arg-type]


def test_from_settings_is_off_by_default_and_needs_the_api_when_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from loraforge.runtime.errors import ConfigurationError
    from loraforge.runtime.settings import Settings

    assert KubernetesTraining.from_settings(Settings(), MemoryStore()) is None  # type: ignore[arg-type]

    def no_cluster(*_a: Any, **_k: Any) -> None:
        raise RuntimeError("Service host/port is not set.")

    monkeypatch.setattr(TrainingJobController, "from_cluster", no_cluster)
    on = Settings(k8s={"training_jobs": True})
    with pytest.raises(ConfigurationError, match="LORAFORGE_K8S__TRAINING_JOBS is on"):
        KubernetesTraining.from_settings(on, MemoryStore())  # type: ignore[arg-type]


async def test_pod_context_prints_json_progress_and_stops_on_signal() -> None:
    out = io.StringIO()
    stop = threading.Event()
    ctx = PodContext(_job(), stop, out, min_interval_s=60)
    await ctx.progress(0.0, "downloading the captioned dataset")
    await ctx.progress(0.1, "step 1/4, loss 0.5", step=1)
    await ctx.progress(0.2, "step 2/4, loss 0.4", step=2)  # throttled: within min_interval_s
    # new previews are never throttled (the service relays their keys); the same ones are
    await ctx.progress(
        0.3, "step 2: rendering previews", step=2, preview_step=2, preview_keys=["k/00.png"]
    )
    await ctx.progress(
        0.35, "step 3/4, loss 0.3", step=3, preview_step=2, preview_keys=["k/00.png"]
    )
    await ctx.progress(0.8, "evaluating checkpoints")
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(e["event"], e["message"]) for e in lines] == [
        ("progress", "downloading the captioned dataset"),
        ("progress", "step 1/4, loss 0.5"),
        ("progress", "step 2: rendering previews"),
        ("progress", "evaluating checkpoints"),
    ]
    assert lines[1]["step"] == 1 and lines[1]["progress"] == 0.1
    assert lines[2]["preview_keys"] == ["k/00.png"]
    stop.set()
    with pytest.raises(Cancelled):
        await ctx.progress(0.9, "uploading the LoRA")


def test_run_mode_without_a_config_dir_runs_the_job_spec(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    calls: list[tuple[str, dict[str, Any]]] = []

    def fake_run_in_pod(run_id: str, **kw: Any) -> int:
        calls.append((run_id, kw))
        return 3

    monkeypatch.setattr(k8s_run, "run_in_pod", fake_run_in_pod)
    assert cli.main(["--run", "abc123", "--device", "cpu"]) == 3
    assert calls == [("abc123", {"device": "cpu", "models_dir": None})]
    assert cli.main(["--run", "abc123", "--steps", "5"]) == 2
    assert "only --device and --models-dir apply (not steps)" in capsys.readouterr().err
    assert cli.main(["--run", "Not_A_Run"]) == 2
    assert len(calls) == 1
