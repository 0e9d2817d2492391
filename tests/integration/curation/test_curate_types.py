"""`loraforge curate --type`: the LoRA type's policy decides, through the CLI and the service."""

from __future__ import annotations

import asyncio
import json

import cv2
import people_media as PM
from typer.testing import CliRunner

from loraforge.cli.main import app
from loraforge.runtime.storage import Bucket

from .seed import PROJECT, TENANT, LocalClip, M, seed_project
from .test_curate_cli import _env


def _clip(d, cid: str, source: str, fn) -> LocalClip:
    path = M.write_clip(d / f"{cid}.mp4", fn)
    kf = d / f"{cid}.kf0.jpg"
    cv2.imwrite(str(kf), fn(0))
    return LocalClip(cid, source, path, kf)


async def test_curate_type_background_keeps_the_empty_scene(
    curation_service, settings, store, tmp_path, monkeypatch
):
    clips = [
        _clip(tmp_path, "land-000", "source-l", PM.landscape),
        _clip(tmp_path, "ast-000", "source-a", M.astronaut_frame),
    ]
    await asyncio.to_thread(seed_project, store, clips)
    proc, _ = await curation_service(auto_curate=False)
    for name, value in _env(settings, proc.port).items():
        monkeypatch.setenv(name, value)
    # max_people=0: a background set of empty scenes only (by default its builder fills people in)
    args = [
        "curate",
        "-p",
        PROJECT,
        "--tenant",
        TENANT,
        "--type",
        "background",
        "--target",
        "2",
        "--set",
        "min_short_side_px=256",
        "--set",
        "frames_per_clip=6",
        "--set",
        "max_people=0",
        "--build",
        "min_items=1",
        "--json",
    ]  # min_items: one clip, below seed 003's 100 frames

    result = await asyncio.to_thread(CliRunner().invoke, app, args)
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["state"] == "SUCCEEDED" and out["lora_type"] == "background"
    clips_out = {c["clip_id"]: c for c in out["clips"]}
    assert clips_out["land-000"]["decision"] == "keep" and clips_out["land-000"]["selected"]
    assert clips_out["ast-000"]["reason_codes"] == ["people_count"]
    record = store.get_json(
        Bucket.DATASETS, out["report"]["key"].replace("report.html", "dataset.json")
    )
    assert record["lora_type"] == "background" and record["policy"]["max_people"] == 0
    manifest = store.get_json(
        Bucket.DATASETS, out["report"]["key"].replace("report.html", "manifest.json")
    )
    assert manifest["lora_type"] == "background" and len(manifest["policy_hash"]) == 12
    assert record["policy_hash"] == manifest["policy_hash"] == out["policy_hash"]

    # the same clips as a character dataset: the landscape has no face, the astronaut is kept
    again = await asyncio.to_thread(
        CliRunner().invoke, app, [*args[:6], "character", *args[7:13], "--json"]
    )
    assert again.exit_code == 0, again.output
    other = json.loads(again.stdout)
    assert other["dataset_id"] != out["dataset_id"]  # the type is part of the dataset's identity
    by_id = {c["clip_id"]: c for c in other["clips"]}
    assert "no_face" in by_id["land-000"]["reason_codes"] and by_id["ast-000"]["decision"] == "keep"

    human = await asyncio.to_thread(CliRunner().invoke, app, args[:-1])
    assert f"policy: background LoRA (policy {out['policy_hash']})" in human.stdout

    bad = await asyncio.to_thread(CliRunner().invoke, app, [*args[:6], "portrait", *args[7:]])
    assert bad.exit_code != 0 and "background" in bad.output  # the valid types are listed
