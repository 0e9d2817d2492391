"""`loraforge curate` against the in-process curation service and the test S3 server."""

from __future__ import annotations

import asyncio
import hashlib
import json

import cv2
from typer.testing import CliRunner

from loraforge.cli.main import app
from loraforge.runtime.storage import Bucket

from .seed import PROJECT, TENANT, M, seed_project


def _env(settings, port: int) -> dict[str, str]:
    s3 = settings.s3
    return {
        "LORAFORGE_ENV": "test",
        "LORAFORGE_S3__ENDPOINT": s3.endpoint,
        "LORAFORGE_S3__ACCESS_KEY": s3.access_key,
        "LORAFORGE_S3__SECRET_KEY": s3.secret_key.get_secret_value(),
        "LORAFORGE_S3__BUCKET_PREFIX": s3.bucket_prefix,
        "LORAFORGE_ENDPOINTS__CURATION": f"127.0.0.1:{port}",
    }


async def test_curate_command_uploads_references_and_lists_every_clip(
    curation_service, settings, store, local_clips, tmp_path, monkeypatch
):
    used = [c for c in local_clips if c.clip_id in {"ast-000", "two-000"}]
    await asyncio.to_thread(seed_project, store, used)
    proc, _ = await curation_service(auto_curate=False)
    for name, value in _env(settings, proc.port).items():
        monkeypatch.setenv(name, value)
    photo = tmp_path / "me.png"
    cv2.imwrite(str(photo), M.astronaut())
    sha = hashlib.sha256(photo.read_bytes()).hexdigest()
    args = [
        "curate",
        "--project",
        PROJECT,
        "--tenant",
        TENANT,
        "--reference",
        str(photo),
        "--target",
        "3",
        "--set",
        "min_short_side_px=256",
        "--set",
        "frames_per_clip=6",
        "--json",
    ]

    result = await asyncio.to_thread(CliRunner().invoke, app, args)
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["state"] == "SUCCEEDED"
    assert store.exists(Bucket.RAW, f"{TENANT}/{PROJECT}/references/{sha}.png")
    clips = {c["clip_id"]: c for c in out["clips"]}
    assert set(clips) == {c.clip_id for c in used}
    assert (
        clips["two-000"]["decision"] == "reject"
        and "people_count" in clips["two-000"]["reason_codes"]
    )
    assert clips["ast-000"]["decision"] == "keep" and clips["ast-000"]["selected"]
    assert out["counts"]["rejected"] == sum(c["decision"] == "reject" for c in clips.values())
    assert out["rejection_counts"]["people_count"] >= 1
    assert out["report"]["key"].endswith(f"/datasets/{out['dataset_id']}/report.html")
    record = store.get_json(
        Bucket.DATASETS, out["report"]["key"].replace("report.html", "dataset.json")
    )
    assert record["reference_keys"] == [f"{TENANT}/{PROJECT}/references/{sha}.png"]

    # human output; the reference is already stored and not uploaded twice
    again = await asyncio.to_thread(CliRunner().invoke, app, args[:-1])
    assert again.exit_code == 0, again.output
    assert "rejected" in again.stdout and "people_count" in again.stdout
    assert f"datasets/{out['dataset_id']}/report.html" in again.stdout


async def test_curate_command_reports_a_bad_override(curation_service, settings, monkeypatch):
    proc, _ = await curation_service(auto_curate=False)
    for name, value in _env(settings, proc.port).items():
        monkeypatch.setenv(name, value)
    result = await asyncio.to_thread(
        CliRunner().invoke,
        app,
        ["curate", "-p", PROJECT, "--tenant", TENANT, "--set", "max_people=0"],
    )
    assert result.exit_code == 2
    assert "max_people" in result.output
