"""Seed 004's whole flow through the gateway, on real NATS, S3, gRPC, a real trainer worker and
the real render service (its warm pool), tiny FLF2V preset: upload a kf2v zip of 10 samples ->
fine-tune with hyper_parameters -> SUCCEEDED with usage -> export a checkpoint that is not the
automatic pick -> deploy it with a template over `/api/v1/deployments` -> RUNNING (a render
worker holds it warm) -> call it with a first and a last frame and no prompt -> a video that
starts and ends on the inputs (decoded pixels), rendered with the filled template and the
trigger. Also: the same call over the CLI (both transports) and a batch call on NATS; a
deployment whose base model is not provisioned FAILS with the reason; the version cannot be
deleted while deployed; another tenant can neither see, call nor deploy it."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import imageio_ffmpeg
import numpy as np
import pytest
from nats.js.errors import NotFoundError
from PIL import Image
from tests.integration.library.conftest import kf2v_zip, trainer_worker  # noqa: F401 (fixtures)

from loraforge.render.executor import fit_image
from loraforge.render.main import mount as render_mount
from loraforge.runtime.events import Event
from loraforge.runtime.jobs import new_job_id
from loraforge.runtime.storage import Bucket

pytestmark = pytest.mark.timeout(600)

PROJECT = "fine-tunes"
# seed 004's hyper-parameters at test size: 4 epochs x ceil(9 / 9) = 4 steps (the 800-step
# rule is checked for real presets only), a checkpoint evaluated every 2 epochs
HP = {
    "n_epochs": 4,
    "batch_size": 9,
    "learning_rate": 1e-4,
    "split": 0.9,
    "max_split_val_dataset_sample": 5,
    "eval_epochs": 2,
    "max_pixels": 1024,
}
LORA_PROMPT = "然后她开始了s86b5p变身。"
TEMPLATE = "视频开头展示了{description}。{lora_prompt}"


def _data_url(image: Image.Image) -> str:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _frames(data: bytes, tmp: Path) -> list[np.ndarray]:
    path = tmp / "call.mp4"
    path.write_bytes(data)
    reader = imageio_ffmpeg.read_frames(str(path))
    w, h = next(reader)["size"]
    return [np.frombuffer(f, np.uint8).reshape(h, w, 3) for f in reader]


async def _output(
    http: httpx.AsyncClient, path: str, headers: dict[str, str], field: str
) -> dict[str, Any]:
    """`output` of a status call. While the trainer runs in this process the machine can stall
    the loop past a NATS timeout (a 5xx): that poll counts as not done yet; a 4xx fails."""
    r = await http.get(path, headers=headers)
    if r.status_code >= 500:
        return {field: "PENDING", "_error": r.text}
    assert r.status_code == 200, r.text
    return r.json()["output"]


async def _poll(fn, done, timeout: float = 180.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await fn()
        if done(value) or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.3)


async def _cli(*args: str, env: dict[str, str]) -> tuple[int, str]:
    """`python -m loraforge.cli.main ARGS` as a user runs it."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("LORAFORGE_", "LF_"))}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "loraforge.cli.main",
        *args,
        env={**base, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    return proc.returncode or 0, out.decode() + err.decode()


async def test_deploy_a_promoted_checkpoint_and_call_it_with_first_and_last_frame(
    make_gateway,
    store,
    bus,
    settings_env,
    kf2v_zip,  # noqa: F811 (the fixture imported above)
    trainer_worker,  # noqa: F811 (the fixture imported above)
    tmp_path: Path,
) -> None:
    from skimage import data

    stack = await make_gateway(mounts={"render": render_mount})
    bearer = {"Authorization": f"Bearer {await stack.key('acme')}"}
    other = {"Authorization": f"Bearer {await stack.key('globex')}"}
    async with httpx.AsyncClient(base_url=stack.url, timeout=30) as http:
        r = await http.get("/api/v1/deployments", headers=bearer)  # creates the compat project
        assert r.status_code == 200 and r.json()["output"]["total"] == 0

        # upload -> fine-tune -> SUCCEEDED with usage
        with kf2v_zip.open("rb") as fh:
            r = await http.post(
                "/api/v1/files",
                headers=bearer,
                data={"purpose": "fine-tune"},
                files={"files": (kf2v_zip.name, fh, "application/zip")},
            )
        assert r.status_code == 200, r.text
        (up,) = r.json()["data"]["uploaded_files"]
        r = await http.post(
            "/api/v1/fine-tunes",
            headers=bearer,
            json={
                "model": "tiny-wan2.1-flf2v",
                "training_file_ids": [up["file_id"]],
                "training_type": "efficient_sft",
                "hyper_parameters": HP,
            },
        )
        assert r.status_code == 200, r.text
        job_id = r.json()["output"]["job_id"]

        async def fine_tune() -> dict[str, Any]:
            return await _output(http, f"/api/v1/fine-tunes/{job_id}", bearer, "status")

        ft = await _poll(
            fine_tune, lambda o: o["status"] in ("SUCCEEDED", "FAILED", "CANCELED"), 360
        )
        assert ft["status"] == "SUCCEEDED" and ft["usage"] > 0, ft

        # export a checkpoint that is not the automatic pick, with the reason
        cps = (await http.get(f"/api/v1/fine-tunes/{job_id}/checkpoints", headers=bearer)).json()[
            "output"
        ]
        (picked,) = [cp for cp in cps if not cp["automatic_pick"]]
        r = await http.get(
            f"/api/v1/fine-tunes/{job_id}/export/{picked['checkpoint']}",
            headers=bearer,
            params={"reason": "its previews keep the face; the last over-bakes the effect"},
        )
        assert r.status_code == 200, r.text
        name, version = ft["finetuned_output"], r.json()["output"]["version"]
        lora_ref = f"{name}:{version}"

        # a deployment whose base model is not provisioned here: FAILED with the reason, and
        # the worker's slot stays free
        r = await http.post(
            f"/v1/projects/{PROJECT}/deployments",
            headers=bearer,
            json={"lora": lora_ref, "name": "transform-14b", "preset": "wan2.1-flf2v-14b"},
        )
        assert r.status_code == 201, r.text

        async def bad() -> dict[str, Any]:
            return (
                await http.get(f"/v1/projects/{PROJECT}/deployments/transform-14b", headers=bearer)
            ).json()

        failed = await _poll(bad, lambda d: d["status"] != "PENDING", timeout=60)
        assert failed["status"] == "FAILED" and "could not load" in failed["message"], failed
        assert (
            await http.delete(f"/v1/projects/{PROJECT}/deployments/transform-14b", headers=bearer)
        ).status_code == 200

        r = await http.post(
            "/api/v1/deployments",
            headers=bearer,
            json={
                "model_name": lora_ref,
                "capacity": 1,
                "plan": "lora",
                "aigc_config": {
                    "use_input_prompt": False,
                    "prompt": TEMPLATE,
                    "lora_prompt_default": LORA_PROMPT,
                },
                "parameters": {"width": 64, "height": 64, "frames": 5, "fps": 8, "steps": 1},
            },
        )
        assert r.status_code == 200, r.text
        out = r.json()["output"]
        deployed = out["deployed_model"]
        assert out["status"] in ("PENDING", "RUNNING") and "-ft-" in deployed

        async def status() -> dict[str, Any]:
            return await _output(http, f"/api/v1/deployments/{deployed}", bearer, "status")

        out = await _poll(status, lambda o: o["status"] != "PENDING", timeout=120)
        assert (out["status"], out["ready_capacity"]) == ("RUNNING", 1), out

        first = Image.fromarray(data.astronaut())
        last = Image.fromarray(data.chelsea())
        body = {
            "model": deployed,
            "input": {"first_frame_url": _data_url(first), "last_frame_url": _data_url(last)},
        }
        r = await http.post(
            "/api/v1/services/aigc/video-generation/video-synthesis", headers=bearer, json=body
        )
        assert r.status_code == 200, r.text
        task_id = r.json()["output"]["task_id"]

        async def task() -> dict[str, Any]:
            return await _output(http, f"/api/v1/tasks/{task_id}", bearer, "task_status")

        out = await _poll(task, lambda o: o["task_status"] in ("SUCCEEDED", "FAILED", "CANCELED"))
        assert out["task_status"] == "SUCCEEDED", out
        # the template filled: a description of the first frame, the effect text with the trigger
        prompt = out["actual_prompt"]
        assert prompt.startswith("视频开头展示了a scene") and prompt.endswith("。" + LORA_PROMPT)
        assert "s86b5p" in prompt and out["orig_prompt"] == ""
        video = (await http.get(out["video_url"])).content
        frames = _frames(video, tmp_path)
        assert len(frames) == 5
        for got, image in ((frames[0], first), (frames[-1], last)):
            want = np.asarray(fit_image(image, 64, 64)).astype(int)
            assert np.abs(got.astype(int) - want).mean() < 6  # H.264 at crf 18

        # the same call through /v1: a render job served warm (no load), SSE-able like any render
        job = (await http.get(f"/v1/projects/{PROJECT}/renders/{task_id}", headers=bearer)).json()
        assert job["result"]["warm"] is True and job["result"]["load_s"] < 0.5
        assert job["result"]["prompt"] == prompt

        # `loraforge generate` over both transports: a gateway (--api/--key) and the local stack
        first.save(tmp_path / "first.png")
        last.save(tmp_path / "last.png")
        files = ["--image", str(tmp_path / "first.png"), "--last-image", str(tmp_path / "last.png")]
        code, text = await _cli(
            "--api",
            stack.url,
            "--key",
            bearer["Authorization"][7:],
            "generate",
            deployed,
            "-p",
            PROJECT,
            *files,
            "-o",
            str(tmp_path / "remote.mp4"),
            "--json",
            env={},
        )
        assert code == 0, text
        remote = json.loads(text)
        assert remote["state"] == "SUCCEEDED" and remote["prompt"] == prompt and remote["warm"]
        assert len(_frames((tmp_path / "remote.mp4").read_bytes(), tmp_path)) == 5
        code, text = await _cli(
            "generate",
            deployed,
            "-p",
            PROJECT,
            "--tenant",
            "acme",
            *files,
            "--json",
            env=settings_env
            | {"LORAFORGE_ENDPOINTS__RENDER": f"127.0.0.1:{stack.procs['render'].port}"},
        )
        assert code == 0, text
        assert json.loads(text)["state"] == "SUCCEEDED"
        code, text = await _cli(
            "deploy",
            "list",
            "-p",
            PROJECT,
            "--tenant",
            "acme",
            "--json",
            env=settings_env
            | {"LORAFORGE_ENDPOINTS__RENDER": f"127.0.0.1:{stack.procs['render'].port}"},
        )
        assert code == 0 and [d["name"] for d in json.loads(text)["deployments"]] == [deployed], (
            text
        )

        # a batch system calls it by publishing on NATS (render.requests with the deployment)
        inputs = job["params"]
        await bus.publish(
            Event(
                type="render.requests",
                tenant="acme",
                project=PROJECT,
                data={
                    "deployment": deployed,
                    "image": inputs["image"],
                    "last_image": inputs["last_image"],
                    "seed": 7,
                    "request_id": "batch-0001",
                },
            )
        )
        batch_id = new_job_id("batch-0001", scope=f"acme/{PROJECT}/render")

        async def batch() -> dict[str, Any]:
            r = await http.get(f"/v1/projects/{PROJECT}/renders/{batch_id}", headers=bearer)
            return r.json() if r.status_code == 200 else {"state": "NOT_YET"}

        done = await _poll(batch, lambda j: j["state"] in ("SUCCEEDED", "FAILED"), timeout=120)
        assert done["state"] == "SUCCEEDED" and done["result"]["seed"] == 7, done

        # a deployed version cannot be deleted
        r = await http.delete(
            f"/v1/projects/{PROJECT}/loras/{name}/versions/{version}", headers=bearer
        )
        assert r.status_code == 409 and deployed in r.text, r.text

        # another tenant: not seen, not callable, not deployable
        assert (await http.get(f"/api/v1/deployments/{deployed}", headers=other)).status_code == 404
        r = await http.post(
            "/api/v1/services/aigc/video-generation/video-synthesis", headers=other, json=body
        )
        assert r.status_code == 404, r.text
        r = await http.post("/api/v1/deployments", headers=other, json={"model_name": lora_ref})
        assert r.status_code == 404, r.text
        assert (await http.get(f"/api/v1/tasks/{task_id}", headers=other)).status_code == 404

        # a call missing the last frame is refused with what to pass
        r = await http.post(
            f"/v1/projects/{PROJECT}/deployments/{deployed}/calls",
            headers=bearer,
            json={"image": _data_url(first)},
        )
        assert r.status_code == 400 and "last_image" in r.json()["detail"]

        r = await http.delete(f"/v1/projects/{PROJECT}/deployments/{deployed}", headers=bearer)
        assert r.status_code == 200 and r.json()["status"] == "STOPPED"
        # its calls' queue is gone, and the warm worker lets it go within a beat
        with pytest.raises(NotFoundError):
            await bus.jetstream.consumer_info(
                bus.settings.stream, f"render-call-acme-{PROJECT}-{deployed}"
            )

        async def left() -> list[str]:
            return [
                o.key
                for o in await asyncio.to_thread(
                    lambda: list(store.list(Bucket.LORAS, f"acme/{PROJECT}/deployments/"))
                )
            ]

        assert await _poll(left, lambda keys: not keys, timeout=30) == []
        r = await http.delete(
            f"/v1/projects/{PROJECT}/loras/{name}/versions/{version}", headers=bearer
        )
        assert r.status_code in (200, 204), r.text  # free again
