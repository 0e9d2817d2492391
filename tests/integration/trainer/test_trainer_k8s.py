"""on_kubernetes training end to end without a cluster: the trainer service writes the run
spec and creates the Job; a fake BatchV1Api/CoreV1Api runs the Job's command
(`loraforge-train --run RUN_ID`) as a real subprocess configured only by `LORAFORGE_*`
environment variables, like a pod; the pod trains against the real object store and commits
run.json; the service relays its progress and finishes the job. Cancel deletes the Job, which
stops the pod with SIGTERM."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import struct_pb2

from loraforge.runtime.host import ServiceProcess
from loraforge.runtime.jobs import JobState
from loraforge.runtime.storage import Bucket
from loraforge.trainer.k8s_controller import TrainingJobController
from loraforge.trainer.k8s_run import KubernetesTraining
from loraforge.trainer.main import mount
from loraforge.v1 import common_pb2, trainer_pb2, trainer_pb2_grpc

from .test_trainer_service import DS, PROJECT, TENANT, _wait_terminal, seed_captioned_dataset

pytestmark = pytest.mark.timeout(300)


class _ApiError(Exception):
    def __init__(self, status: int):
        super().__init__(f"HTTP {status}")
        self.status = status


class SubprocessK8s:
    """BatchV1Api + CoreV1Api where a created Job's container command runs as a local process."""

    def __init__(self, env: dict[str, str], logs: Path):
        self.env = env
        self.logs = logs
        self.bodies: dict[str, dict[str, Any]] = {}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.deleted: list[str] = []

    def create_namespaced_job(
        self, namespace: str, body: dict[str, Any], **kw: Any
    ) -> dict[str, Any]:
        name = body["metadata"]["name"]
        if name in self.bodies:
            raise _ApiError(409)
        self.bodies[name] = body
        command = body["spec"]["template"]["spec"]["containers"][0]["command"]
        assert command[0] == "loraforge-train"
        with open(self.logs / f"{name}.log", "wb") as out:
            self.procs[name] = subprocess.Popen(
                [sys.executable, "-m", "loraforge.trainer.cli", *command[1:]],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        return body

    def read_namespaced_job_status(self, name: str, namespace: str, **kw: Any) -> dict[str, Any]:
        if name not in self.bodies:
            raise _ApiError(404)
        code = self.procs[name].poll()
        if code is None:
            return {"status": {"active": 1}}
        if code == 0:
            return {
                "status": {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}
            }
        return {
            "status": {
                "failed": 1,
                "conditions": [
                    {
                        "type": "Failed",
                        "status": "True",
                        "reason": "BackoffLimitExceeded",
                        "message": f"exit code {code}",
                    }
                ],
            }
        }

    def delete_namespaced_job(self, name: str, namespace: str, **kw: Any) -> None:
        if name not in self.bodies:
            raise _ApiError(404)
        del self.bodies[name]
        self.deleted.append(name)
        proc = self.procs[name]
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)

    def list_namespaced_pod(self, namespace: str, label_selector: str, **kw: Any) -> dict[str, Any]:
        name = label_selector.removeprefix("job-name=")
        return {"items": [{"metadata": {"name": name}}] if name in self.procs else []}

    def read_namespaced_pod_log(self, name: str, namespace: str, **kw: Any) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")


def _pod_env(settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LORAFORGE_")}
    s3 = settings.s3
    env.update(
        {
            "LORAFORGE_ENV": "test",
            "LORAFORGE_S3__ENDPOINT": s3.endpoint,
            "LORAFORGE_S3__ACCESS_KEY": s3.access_key,
            "LORAFORGE_S3__SECRET_KEY": s3.secret_key.get_secret_value(),
            "LORAFORGE_S3__BUCKET_PREFIX": s3.bucket_prefix,
            "LORAFORGE_K8S__NAMESPACE": "loraforge",
        }
    )
    return env


@pytest.fixture
async def k8s_trainer(settings, store, tmp_path):
    api = SubprocessK8s(_pod_env(settings), tmp_path)
    controller = TrainingJobController(api, api, "loraforge", "loraforge/trainer:test")
    training = KubernetesTraining(store, controller, poll_s=0.2, tick_s=0.2)
    proc = ServiceProcess(
        "trainer", settings, functools.partial(mount, kubernetes=training), drain_delay_s=0
    )
    await proc.start()
    try:
        yield proc, api
    finally:
        await proc.stop()
        for p in api.procs.values():
            if p.poll() is None:
                p.kill()
            p.wait()


def _request(request_id: str, steps: int) -> trainer_pb2.StartTrainingRequest:
    extra = struct_pb2.Struct()
    extra.update({"evaluate": False})
    return trainer_pb2.StartTrainingRequest(
        scope=common_pb2.ProjectScope(tenant=TENANT, project=PROJECT),
        request_id=request_id,
        on_kubernetes=True,
        run=common_pb2.TrainingRun(
            dataset_id=DS, base_preset="tiny-wan2.1-t2v", steps=steps, rank=4, seed=1, extra=extra
        ),
    )


def _events(api: SubprocessK8s, name: str) -> list[dict[str, Any]]:
    lines = api.read_namespaced_pod_log(name, "loraforge").splitlines()
    return [json.loads(line) for line in lines if line.startswith("{")]


async def _start(service, store, tmp_path, request_id: str, steps: int):
    """A captioned dataset, then an on_kubernetes StartTraining: (channel, stub, job)."""
    seed_captioned_dataset(store, tmp_path)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{service.port}")
    stub = trainer_pb2_grpc.TrainerServiceStub(channel)
    job = await stub.StartTraining(_request(request_id, steps=steps), timeout=10)
    return channel, stub, job


async def test_job_runs_the_pipeline_in_the_pod_and_succeeds(k8s_trainer, store, tmp_path) -> None:
    service, api = k8s_trainer
    channel, _, job = await _start(service, store, tmp_path, "k8s-ok", steps=2)
    done = await _wait_terminal(service.clients.jobs, job.id, timeout=240)
    name = f"loraforge-train-{job.id}"
    assert done.state is JobState.SUCCEEDED, (done.message, api.read_namespaced_pod_log(name, ""))

    assert api.procs[name].returncode == 0
    command = api.bodies[name]["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command == ["loraforge-train", "--run", job.id]
    events = _events(api, name)
    messages = [e.get("message") for e in events if e["event"] == "progress"]
    assert "downloading the captioned dataset" in messages and "uploading the LoRA" in messages
    assert events[-1]["event"] == "result" and events[-1]["status"] == "succeeded"

    # The pod ran the service's pipeline: the same run.json, LoRAs and outcome as a local run.
    prefix = f"{TENANT}/{PROJECT}/runs/{job.id}"
    run = store.get_json(Bucket.LORAS, f"{prefix}/run.json")
    assert run["steps"] == 2 and run["job_id"] == job.id
    assert done.result["run_prefix"] == prefix
    assert done.result["last_key"] == f"{prefix}/last.safetensors"
    assert store.exists(Bucket.LORAS, f"{prefix}/last.safetensors")
    assert {"lora", "manifest"} <= {a.kind for a in done.artifacts}
    spec = store.get_json(Bucket.LORAS, f"{prefix}/k8s-spec.json")
    assert spec["job"]["params"]["on_kubernetes"] is False
    await channel.close()


async def test_cancel_deletes_the_job_and_stops_the_pod(k8s_trainer, store, tmp_path) -> None:
    service, api = k8s_trainer
    channel, stub, job = await _start(service, store, tmp_path, "k8s-cancel", steps=100_000)
    name = f"loraforge-train-{job.id}"
    jobs = service.clients.jobs
    deadline = asyncio.get_running_loop().time() + 120
    while "step" not in (await jobs.get(TENANT, PROJECT, job.id)).message:  # relayed from the pod
        assert asyncio.get_running_loop().time() < deadline, api.read_namespaced_pod_log(name, "")
        await asyncio.sleep(0.2)

    await stub.CancelJob(
        common_pb2.CancelJobRequest(
            scope=common_pb2.ProjectScope(tenant=TENANT, project=PROJECT), job_id=job.id
        ),
        timeout=10,
    )
    done = await _wait_terminal(jobs, job.id, timeout=60)
    assert done.state is JobState.CANCELLED, done.message
    assert api.deleted == [name]
    code = await asyncio.to_thread(api.procs[name].wait, 60)
    assert code == 3  # SIGTERM: stopped after the current step
    assert _events(api, name)[-1]["status"] == "cancelled"
    assert not store.exists(Bucket.LORAS, f"{TENANT}/{PROJECT}/runs/{job.id}/run.json")
    await channel.close()
