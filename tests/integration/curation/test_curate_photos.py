"""`loraforge curate` on a person's photos (seed 002) through the CLI and the service: the
dataset's items are the crops, rejections carry their reasons, the CLI says how many photos to
add; below seed 002's minimum the job fails with the count to add."""

from __future__ import annotations

import asyncio
import hashlib
import json

import cv2
import photo_media as pm
from typer.testing import CliRunner

from loraforge.cli.main import app
from loraforge.runtime.storage import Bucket

from .seed import PROJECT, TENANT, clip_entry, put_manifest
from .test_curate_cli import _env


def seed_photos(store, tmp_path) -> dict[str, str]:
    """Photos stored as ingest stores photo uploads: one item per source, a manifest beside it."""
    from loraforge.curation import photo_prep
    from loraforge.curation.dlib_backend import DlibBackend
    from loraforge.curation.people import PeopleDetector

    img = pm.astronaut()
    lm = photo_prep.measure_photo("a", img, DlibBackend()).landmarks
    mask = PeopleDetector().person_mask(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
    photos = {
        "studio": img,
        "cafe": pm.composite(img, mask, pm.background("coffee", (512, 512))),
        "launch": pm.composite(img, mask, pm.background("rocket", (512, 512))),
        "blink": pm.close_eyes(img, lm),
        "burst": pm.second_shot(img),
    }
    keys = {}
    for cid, photo in photos.items():
        path = tmp_path / f"{cid}.png"
        cv2.imwrite(str(path), photo)
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        base = f"{TENANT}/{PROJECT}/clips/{sha[:16]}"
        keys[cid] = f"{base}/{cid}.png"
        store.put_file(Bucket.CLIPS, keys[cid], path, content_type="image/png")
        entry = clip_entry(
            cid, keys[cid], path, [keys[cid]], kind="photo", frames=1, fps=0.0, size=(512, 512)
        )
        put_manifest(store, TENANT, PROJECT, sha, "photo", [entry])
    return keys


async def test_curate_photos_gives_crops_reasons_and_the_count_to_add(
    curation_service, settings, store, tmp_path, monkeypatch
):
    await asyncio.to_thread(seed_photos, store, tmp_path)
    proc, _ = await curation_service(auto_curate=False)
    for name, value in _env(settings, proc.port).items():
        monkeypatch.setenv(name, value)
    base = ["curate", "-p", PROJECT, "--tenant", TENANT, "--set", "min_short_side_px=256"]
    args = [*base, "--set", 'build_options={"min_items": 2}']

    result = await asyncio.to_thread(CliRunner().invoke, app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["state"] == "SUCCEEDED"
    record = store.get_json(
        Bucket.DATASETS, out["report"]["key"].replace("report.html", "dataset.json")
    )
    items = {it["clip_id"]: it for it in record["selected"]}
    assert set(items) == {"studio", "cafe", "launch"}, record["build"]
    for it in items.values():  # the crops, stored with the dataset
        assert it["bucket"] == "datasets" and it["variant"] == "portrait"
        assert it["key"].endswith(f"/derived/{it['clip_id']}/crop.png")
        crop = store.get_bytes(Bucket.DATASETS, it["key"])
        assert crop[:8] == b"\x89PNG\r\n\x1a\n"
    build = store.get_json(
        Bucket.DATASETS, out["report"]["key"].replace("report.html", "build.json")
    )
    dropped = {d["clip_id"]: d for d in build["dropped"]}
    assert (
        dropped["blink"]["code"] == "eyes_closed"
        and dropped["blink"]["evidence"]["eye_aspect_ratio"] < 0.2
    )
    assert (
        dropped["burst"]["code"] == "look_alike" and dropped["burst"]["evidence"]["of"] == "studio"
    )
    size = record["build"]["summary"]["size_range"]
    assert (size["count"], size["status"], size["recommended"]) == (
        3,
        "below_recommended",
        [20, 30],
    )
    assert any("add about 17 more photos" in line for line in out["missing"])
    # the same in the manifest and the report
    manifest = store.get_json(
        Bucket.DATASETS, out["report"]["key"].replace("report.html", "manifest.json")
    )
    assert manifest["build"]["summary"]["size_range"]["status"] == "below_recommended"
    report = store.get_bytes(Bucket.DATASETS, out["report"]["key"]).decode()
    assert "add about 17 more photos" in report and "look_alike" in report

    # seed 002's own minimum (10): the job fails and says how many to add
    failed = await asyncio.to_thread(CliRunner().invoke, app, [*base, "--json"])
    assert failed.exit_code != 0
    error = json.loads(failed.stdout)["error"]
    assert "FAILED" in error.upper() and "3 usable photos, below the minimum of 10" in error, error
    assert "add at least 7 more photos" in error
    assert (
        "left out by the builder: " in error
        and "eyes_closed 1" in error
        and "look_alike 1" in error
    )
