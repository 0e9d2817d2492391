"""The GPU side of render against real NATS and S3: `python -m loraforge.render.worker` as a
real process consuming the render queue; a render as a Kubernetes Job whose pod (a fake
BatchV1Api running the Job's command as a local process) renders and commits render.json;
the user's keyframe from the raw bucket as the first frame of an I2V video; bad input images
refused at submission with the reason."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import io
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import grpc
import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image

from loraforge.render.executor import fit_image
from loraforge.render.k8s_run import KubernetesRender, RenderJobController
from loraforge.render.main import mount
from loraforge.runtime.events import Delivery, Event
from loraforge.runtime.host import ServiceProcess
from loraforge.runtime.jobs import JobState
from loraforge.runtime.storage import Bucket
from loraforge.v1 import common_pb2, render_pb2, render_pb2_grpc

from ..trainer.test_trainer_k8s import SubprocessK8s, _pod_env

pytestmark = pytest.mark.timeout(300)

TENANT, PROJECT = "acme", "jane"
I2V = """
video_preset: tiny-wan2.1-i2v
pairing: each
output: {{width: 64, height: 64}}
steps: 1
transition: {{frames: 5, fps: 8, prompt: "she looks up"}}
shots:
  - {{prompt: "an astronaut portrait", image: "{key}"}}
"""


def _upload_photo(store, name: str = "astronaut") -> tuple[str, Image.Image]:
    import skimage.data

    photo = Image.fromarray(getattr(skimage.data, name)())
    buf = io.BytesIO()
    photo.save(buf, format="PNG")
    data = buf.getvalue()
    key = f"{TENANT}/{PROJECT}/sources/{hashlib.sha256(data).hexdigest()}.png"
    store.put_bytes(Bucket.RAW, key, data, content_type="image/png")
    return key, photo


def _first_frame(path: Path) -> np.ndarray:
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    w, h = meta["size"]
    frame = np.frombuffer(next(reader), dtype=np.uint8).reshape(h, w, 3).astype(np.int16)
    reader.close()
    return frame


def _check_i2v(store, record: dict[str, Any], photo: Image.Image, tmp_path: Path) -> None:
    video = store.download(Bucket.RENDERS, record["transitions"][0], tmp_path / "t.mp4")
    err = np.abs(_first_frame(video) - np.asarray(fit_image(photo, 64, 64), dtype=np.int16)).mean()
    assert err < 6, f"the first frame is not the uploaded photo (mean error {err:.1f})"


def _start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """`python -m loraforge.render.worker`, configured only by LORAFORGE_* variables."""
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "loraforge.render.worker"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


async def test_worker_entry_point_renders_a_queued_request(
    settings, settings_env, store, bus, tmp_path
):
    key, photo = _upload_photo(store)
    done: list[Event] = []

    async def record(event: Event, delivery: Delivery) -> None:
        done.append(event)

    await bus.subscribe("test-completed", "render.completed", record)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("LORAFORGE_")},
        **settings_env,
        "LORAFORGE_RENDER__DEVICE": "cpu",
    }
    log = tmp_path / "worker.log"
    worker = _start_worker(env, log)
    try:
        await bus.publish(
            Event(
                type="render.requests",
                tenant=TENANT,
                project=PROJECT,
                data={"request_id": "batch-i2v", "scenario_yaml": I2V.format(key=key)},
            )
        )
        for _ in range(900):
            if done or worker.poll() is not None:
                break
            await asyncio.sleep(0.2)
        assert done, f"no render.completed; worker log:\n{log.read_text()[-3000:]}"
        record_key = f"{TENANT}/{PROJECT}/renders/{done[0].data['job_id']}/render.json"
        rendered = store.get_json(Bucket.RENDERS, record_key)
        assert rendered["placement"]["video"]["weights_device"] == "cpu"
        assert "image" not in rendered["placement"]  # the keyframe was the user's photo
        _check_i2v(store, rendered, photo, tmp_path)
        worker.send_signal(signal.SIGTERM)  # the one shutdown path: consumers, then NATS
        assert worker.wait(timeout=30) == 0, log.read_text()[-2000:]
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()


class RenderPods(SubprocessK8s):
    """The trainer test's fake Kubernetes API, running render Jobs' commands."""

    def create_namespaced_job(
        self, namespace: str, body: dict[str, Any], **kw: Any
    ) -> dict[str, Any]:
        name = body["metadata"]["name"]
        command = body["spec"]["template"]["spec"]["containers"][0]["command"]
        assert command[:3] == ["python", "-m", "loraforge.render.worker"]
        if name in self.bodies:
            return super().create_namespaced_job(namespace, body)  # 409
        self.bodies[name] = body
        with open(self.logs / f"{name}.log", "wb") as out:
            self.procs[name] = subprocess.Popen(
                [sys.executable, *command[1:]], env=self.env, stdout=out, stderr=subprocess.STDOUT
            )
        return body


@pytest.fixture
async def k8s_render(settings, store, tmp_path):
    api = RenderPods({**_pod_env(settings), "LORAFORGE_RENDER__DEVICE": "cpu"}, tmp_path)
    controller = RenderJobController(api, api, "loraforge", "loraforge/render:test")
    proc = ServiceProcess(
        "render",
        settings,
        functools.partial(
            mount, kubernetes=KubernetesRender(store, controller, poll_s=0.2, tick_s=0.2)
        ),
        drain_delay_s=0,
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


async def _submit(port: int, scenario: str, request_id: str = "") -> common_pb2.Job:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = render_pb2_grpc.RenderServiceStub(channel)
        return await stub.SubmitRender(
            render_pb2.SubmitRenderRequest(
                scope=common_pb2.ProjectScope(tenant=TENANT, project=PROJECT),
                request_id=request_id,
                render=common_pb2.RenderRequest(scenario_yaml=scenario),
            ),
            timeout=20,
        )


async def test_render_runs_as_a_kubernetes_job(k8s_render, store, tmp_path):
    proc, api = k8s_render
    key, photo = _upload_photo(store)
    job = await _submit(proc.port, I2V.format(key=key), "k8s-i2v")
    for _ in range(900):
        current = await proc.clients.jobs.get(TENANT, PROJECT, job.id)
        if current.state.terminal:
            break
        await asyncio.sleep(0.2)
    logs = "\n".join(p.read_text(errors="replace")[-2000:] for p in tmp_path.glob("*.log"))
    assert current.state is JobState.SUCCEEDED, f"{current.message}\n{logs}"
    name = f"loraforge-render-{job.id}"
    assert list(api.bodies) == [name]
    pod = api.bodies[name]["spec"]["template"]["spec"]
    assert pod["containers"][0]["command"][-2:] == ["--job", job.id]
    assert (
        pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
            "nodeSelectorTerms"
        ][0]["matchExpressions"][0]["key"]
        == "nvidia.com/gpu.memory"
    )
    assert current.result["transitions"]
    _check_i2v(store, {"transitions": current.result["transitions"]}, photo, tmp_path)


async def test_bad_input_images_are_refused_at_submission(k8s_render, store):
    proc, api = k8s_render
    store.put_bytes(Bucket.RAW, f"{TENANT}/{PROJECT}/sources/notes.png", b"not a picture")
    cases = {
        f"{TENANT}/{PROJECT}/sources/notes.png": "not an image",
        f"{TENANT}/{PROJECT}/sources/missing.png": "does not exist",
        f"other/{PROJECT}/sources/x.png": "raw bucket",
    }
    for key, reason in cases.items():
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await _submit(proc.port, I2V.format(key=key))
        assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert reason in err.value.details(), err.value.details()
    assert not api.bodies  # no Job was created for any of them
