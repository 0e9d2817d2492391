"""Seed 004's hosted API through the gateway, on the tiny flf2v preset and a real trainer:
upload a kf2v zip of 10 samples -> fine-tune with hyper_parameters -> SUCCEEDED with usage
-> checkpoints -> export one that is not the automatic pick into the library. The same upload
with 9 samples, a 6 s video or a wrong field name, and a request under 800 steps, are each
refused with the reason and store nothing."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from tests.integration.library.conftest import long_clip_bytes, zip_variant

from loraforge.runtime.storage import Bucket

pytestmark = pytest.mark.timeout(660)
PROJECT = "fine-tunes"
HP = {
    "n_epochs": 4,
    "batch_size": 9,
    "learning_rate": 1e-4,
    "split": 0.9,
    "max_split_val_dataset_sample": 5,
    "eval_epochs": 2,
    "max_pixels": 1024,
}


async def _upload(client, path: Path, name: str | None = None):
    with path.open("rb") as fh:
        return await client.post(
            "/api/v1/files",
            files={"files": (name or path.name, fh, "application/zip")},
            data={"purpose": "fine-tune", "descriptions": "a fine-tune training data file for wan"},
        )


async def _get(client, path: str):
    """A poll that survives a dropped keep-alive connection: the server shares this test's
    event loop with the training worker, and a loop starved past uvicorn's keep-alive timeout
    closes an idle connection just as the next poll reuses it."""
    for attempt in range(3):
        try:
            return await client.get(path)
        except httpx.TransportError:
            if attempt == 2:
                raise
            await asyncio.sleep(0.5)
    raise AssertionError("unreachable")


def _stored(store, tenant: str) -> dict[str, int]:
    prefix = f"{tenant}/{PROJECT}/"
    return {
        b.value: sum(1 for _ in store.list(b, prefix))
        for b in (Bucket.RAW, Bucket.CLIPS, Bucket.DATASETS, Bucket.LORAS)
    }


async def test_seed004_upload_refusals_store_nothing(gateway, store, kf2v_zip, tmp_path) -> None:
    key = await gateway.key("acme")
    async with await gateway.client() as c:
        c.headers["Authorization"] = f"Bearer {key}"
        cases = {
            "9 samples": (
                zip_variant(kf2v_zip, tmp_path / "nine.zip", keep=9),
                "9 samples; a training set needs at least 10",
            ),
            "6 s video": (
                zip_variant(
                    kf2v_zip,
                    tmp_path / "long.zip",
                    replace={"video/video_3.mp4": long_clip_bytes(tmp_path)},
                ),
                "line 3: video/video_3.mp4 is 6.00 s long; videos may be at most 5 s",
            ),
            "wrong field": (
                zip_variant(
                    kf2v_zip, tmp_path / "field.zip", rename={"first_frame_path": "first_frame"}
                ),
                "unknown field(s) first_frame; the fields are prompt, first_frame_path",
            ),
        }
        for what, (path, reason) in cases.items():
            r = await _upload(c, path)
            assert r.status_code == 400, (what, r.text)
            assert reason in r.json()["detail"], (what, r.json()["detail"])
            assert "nothing was stored" in r.json()["detail"]
        assert _stored(store, "acme") == {"raw": 0, "clips": 0, "datasets": 0, "loras": 0}
        r = await c.get("/api/v1/files")
        assert r.json()["output"]["total"] == 0


async def test_seed004_fine_tune_to_a_promoted_checkpoint(
    gateway, store, kf2v_zip, trainer_worker
) -> None:
    key = await gateway.key("acme")
    async with await gateway.client() as c:
        c.headers["Authorization"] = f"Bearer {key}"  # seed 004's header
        r = await _upload(c, kf2v_zip)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["data"]["failed_uploads"] == [] and body["request_id"]
        (up,) = body["data"]["uploaded_files"]
        assert up["name"] == kf2v_zip.name
        file_id = up["file_id"]
        info = (await c.get(f"/api/v1/files/{file_id}")).json()["output"]
        assert (info["mode"], info["samples"], info["trigger"]) == ("kf2v", 10, "s86b5p")

        # refusals of the request, before any training
        base = {
            "model": "tiny-wan2.1-flf2v",
            "training_file_ids": [file_id],
            "training_type": "efficient_sft",
            "hyper_parameters": HP,
        }
        r = await c.post(
            "/api/v1/fine-tunes",
            json={**base, "model": "wan2.1-flf2v-14b", "hyper_parameters": {**HP, "n_epochs": 40}},
        )
        assert r.status_code == 400
        assert (
            "40 epochs x ceil(9 training samples / batch_size 9) = 40 steps, under the "
            "800-step minimum" in r.json()["detail"]
        ) and "n_epochs >= 800" in r.json()["detail"]
        r = await c.post(
            "/api/v1/fine-tunes", json={**base, "hyper_parameters": {**HP, "n_epoch": 4}}
        )
        assert r.status_code == 422 and "n_epoch" in r.json()["detail"]
        r = await c.post(
            "/api/v1/fine-tunes", json={**base, "hyper_parameters": {**HP, "learning_rate": 0.5}}
        )
        assert r.status_code == 422 and "learning_rate" in r.json()["detail"]
        r = await c.post("/api/v1/fine-tunes", json={**base, "model": "tiny-wan2.1-i2v"})
        assert r.status_code == 400 and "tiny-wan2.1-flf2v" in r.json()["detail"]

        r = await c.post("/api/v1/fine-tunes", json=base)
        assert r.status_code == 200, r.text
        out = r.json()["output"]
        assert out["status"] == "PENDING" and out["finetuned_output"].startswith("ft-")
        job_id = out["job_id"]
        assert out["loraforge"]["steps"] == 4 and out["loraforge"]["validation_samples"] == 1

        deadline = asyncio.get_running_loop().time() + 540  # a loaded 2-core CI box: 5 min
        seen = ""
        while True:
            out = (await _get(c, f"/api/v1/fine-tunes/{job_id}")).json()["output"]
            if out["message"] != seen:  # where a slow run spends its time (pytest -s)
                seen = out["message"]
                print(f"{asyncio.get_running_loop().time():.1f} {out['progress']:.2f} {seen}")
            if out["status"] in ("SUCCEEDED", "FAILED", "CANCELED"):
                break
            assert asyncio.get_running_loop().time() < deadline, out
            await asyncio.sleep(1.0)
        assert out["status"] == "SUCCEEDED", out["message"]
        # 4 steps x batch 9 x (5 frames -> 2 latent frames) x (32 x 32 px / 256 per token)
        assert out["usage"] == 4 * 9 * 2 * 4
        assert out["loraforge"]["lora"] == f"{out['finetuned_output']}:1"

        r = await c.get(f"/api/v1/fine-tunes/{job_id}/checkpoints")
        cps = r.json()["output"]
        assert [cp["step"] for cp in cps] == [2, 4] and all(cp["exportable"] for cp in cps)
        (auto,) = [cp for cp in cps if cp["automatic_pick"]]
        (other,) = [cp for cp in cps if not cp["automatic_pick"]]
        assert other["val_loss"] is not None

        r = await c.get(
            f"/api/v1/fine-tunes/{job_id}/export/{other['checkpoint']}",
            params={"reason": "its previews keep the effect cleaner"},
        )
        assert r.status_code == 200, r.text
        exported = r.json()["output"]
        assert (exported["version"], exported["chosen"]) == (2, "user")

        name = out["finetuned_output"]
        lora = (await c.get(f"/v1/projects/{PROJECT}/loras/{name}/versions/latest")).json()
        assert (lora["version"], lora["step"], lora["checkpoint"]) == (
            2,
            other["step"],
            f"step-{other['step']}",
        )
        assert other["checkpoint"] == f"checkpoint-{other['step']}"
        assert lora["reason"] == "its previews keep the effect cleaner"
        assert lora["trigger"] == "s86b5p" and lora["base_preset"] == "tiny-wan2.1-flf2v"
        first = (await c.get(f"/v1/projects/{PROJECT}/loras/{name}/versions/1")).json()
        assert first["chosen"] == "automatic" and first["step"] == auto["step"]
        assert store.stat(Bucket.LORAS, lora["lora_key"]) is not None

    async with await gateway.client("globex") as other_tenant:
        for path in (
            f"/api/v1/fine-tunes/{job_id}",
            f"/api/v1/fine-tunes/{job_id}/checkpoints",
            f"/api/v1/fine-tunes/{job_id}/export/{auto['checkpoint']}",
        ):
            assert (await other_tenant.get(path)).status_code == 404, path
        assert (await other_tenant.get(f"/v1/projects/{PROJECT}/loras/{name}")).status_code == 404
