"""`loraforge curate --type background|style` through the CLI and the curation service on the
local stack: the builder's derived images are committed with the dataset (derived/, build.json,
dataset.json `selected` in the datasets bucket), and `loraforge export --format kohya` exports
them (read back by the exporter)."""

from __future__ import annotations

import asyncio
import json

import builders_media as B
import cv2
import numpy as np
from typer.testing import CliRunner

from loraforge.captioning.review import CaptionReviewStore
from loraforge.cli.main import app
from loraforge.runtime.keys import ProjectRef
from loraforge.runtime.storage import Bucket

from .seed import PROJECT, TENANT, LocalClip, M, seed_project
from .test_curate_cli import _env


def _clip(d, cid: str, source: str, fn) -> LocalClip:
    path = M.write_clip(d / f"{cid}.mp4", fn)
    kf = d / f"{cid}.kf0.jpg"
    cv2.imwrite(str(kf), fn(0))
    return LocalClip(cid, source, path, kf)


async def test_curate_background_and_style_then_export_kohya(
    curation_service, settings, store, tmp_path, monkeypatch
):
    clips = [
        _clip(tmp_path, "rocket-000", "source-r", B.walker("rocket", "astronaut", 150, pan=6)[0]),
        _clip(
            tmp_path, "brick-000", "source-b", B.walker("brick", "hopper", 120, pan=6, offset=40)[0]
        ),
    ]
    await asyncio.to_thread(seed_project, store, clips)
    proc, _ = await curation_service(auto_curate=False)
    for name, value in _env(settings, proc.port).items():
        monkeypatch.setenv(name, value)
    base = [
        "curate",
        "-p",
        PROJECT,
        "--tenant",
        TENANT,
        "--target",
        "2",
        "--set",
        "min_short_side_px=256",
        "--set",
        "frames_per_clip=4",
        "--set",
        "people_frames=2",
        "--build",
        "frames_per_clip=1",
        "--build",
        "min_items=1",
        "--json",
    ]  # min_items: a test-sized set (size_range.py)

    async def curate(lora_type: str) -> tuple[dict, dict, str]:
        result = await asyncio.to_thread(CliRunner().invoke, app, [*base, "--type", lora_type])
        assert result.exit_code == 0, result.output
        out = json.loads(result.stdout)
        assert out["state"] == "SUCCEEDED" and out["lora_type"] == lora_type, out
        prefix = out["report"]["key"].rsplit("/", 1)[0]
        return out, store.get_json(Bucket.DATASETS, f"{prefix}/dataset.json"), prefix

    # background: each walker's frame with the person filled in, one per place
    out, record, prefix = await curate("background")
    items = record["selected"]
    assert {i["source_clip_id"] for i in items} == {"rocket-000", "brick-000"}, record.get("build")
    for i in items:
        assert i["bucket"] == "datasets" and i["key"].startswith(
            f"{prefix}/derived/{i['source_clip_id']}/"
        )
        assert i["variant"] == "inpainted" and i["keyframe_keys"] == [i["key"]]
        img = tmp_path / f"{i['clip_id']}.png"
        await asyncio.to_thread(store.download, Bucket.DATASETS, i["key"], img)
        assert cv2.imread(str(img)).shape == (360, 480, 3)
    build = store.get_json(Bucket.DATASETS, f"{prefix}/build.json")
    assert all(0 < it["evidence"]["fill_fraction"] <= 0.25 for it in build["items"])
    assert len(build["summary"]["scenes"]) == 2 and record["build"]["items"] == 2
    manifest = store.get_json(Bucket.DATASETS, f"{prefix}/manifest.json")
    assert {r["clip_id"]: len(r["derived_items"]) for r in manifest["clips"]} == {
        "rocket-000": 1,
        "brick-000": 1,
    }

    # kohya export of the derived images, with captions stored as the captioning stage stores them
    review = CaptionReviewStore(store, ProjectRef(TENANT, PROJECT), out["dataset_id"])
    for i in items:
        await asyncio.to_thread(
            review.save_generated, i["clip_id"], "bgplace, a launch pad at dusk"
        )
    await asyncio.to_thread(review.save_run, {"trigger": "bgplace", "lora_type": "background"})
    dest = tmp_path / "kohya"
    result = await asyncio.to_thread(
        CliRunner().invoke,
        app,
        [
            "export",
            "-p",
            PROJECT,
            "--tenant",
            TENANT,
            "--dataset",
            out["dataset_id"],
            "--format",
            "kohya",
            "--out",
            str(dest),
            "--class-noun",
            "place",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    view = json.loads(result.stdout)
    assert view["samples"] == view["validated"] == 2
    pngs = sorted(dest.rglob("*.png"))
    assert len(pngs) == 2 and all(
        p.with_suffix(".txt").read_text().startswith("bgplace") for p in pngs
    )
    assert all(np.array_equal(cv2.imread(str(p)).shape, (360, 480, 3)) for p in pngs)

    # the trainer lays the same derived images out for an image model (tiny-sdxl), with captions
    from loraforge.runtime.params import TrainingParams
    from loraforge.trainer.run.fetch import fetch_dataset

    fetched = await asyncio.to_thread(
        fetch_dataset,
        store,
        ProjectRef(TENANT, PROJECT),
        TrainingParams(dataset_id=out["dataset_id"], base_preset="tiny-sdxl"),
        tmp_path / "train" / "dataset",
    )
    assert fetched.samples == 2 and fetched.lora_type == "background"
    laid = sorted((tmp_path / "train" / "dataset" / "images").glob("*.png"))
    assert [p.stem for p in laid] == sorted(i["clip_id"] for i in items)

    # style: full frames of each shot, nothing filled in
    out, record, prefix = await curate("style")
    assert {i["variant"] for i in record["selected"]} == {"full"}
    assert (
        all(i["bucket"] == "datasets" for i in record["selected"]) and len(record["selected"]) == 2
    )
