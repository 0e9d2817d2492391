"""`loraforge curate --type pose|expression|lighting` through the CLI and the curation service
on the local stack: the type's builder runs after selection and its items, derived files and
evidence are committed with the dataset (dataset.json `selected`, build.json, derived/)."""

from __future__ import annotations

import asyncio
import json

import cv2
import expression_media as E
import pose_media as P
from typer.testing import CliRunner

from loraforge.cli.main import app
from loraforge.runtime.storage import Bucket

from .seed import PROJECT, TENANT, LocalClip, M, seed_project
from .test_curate_cli import _env


def _clip(d, cid: str, source: str, fn) -> LocalClip:
    path = M.write_clip(d / f"{cid}.mp4", fn)  # 2.5 s at 8 fps, as seed_project records
    kf = d / f"{cid}.kf0.jpg"
    cv2.imwrite(str(kf), fn(0))
    return LocalClip(cid, source, path, kf)


async def test_curate_pose_expression_lighting_build_their_datasets(
    curation_service, settings, store, tmp_path, monkeypatch
):
    clips = [
        _clip(tmp_path, "walk-000", "source-w", P.moving(0.6, 0.2, M.FPS)),
        _clip(tmp_path, "face-000", "source-f", E.framed("astronaut", 360, 60, 0)),
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
        "--json",
    ]

    async def curate(lora_type: str, *sets: str) -> tuple[dict, dict, str]:
        args = [*base, "--type", lora_type, *[a for s in sets for a in ("--set", s)]]
        result = await asyncio.to_thread(CliRunner().invoke, app, args)
        assert result.exit_code == 0, result.output
        out = json.loads(result.stdout)
        assert out["state"] == "SUCCEEDED" and out["lora_type"] == lora_type, out
        prefix = out["report"]["key"].rsplit("/", 1)[0]
        return out, store.get_json(Bucket.DATASETS, f"{prefix}/dataset.json"), prefix

    # pose: no packaged photo shows a whole body (the astronaut is waist-up), so the full-body
    # check is off; the walker walks, the portrait stands
    _out, record, prefix = await curate(
        "pose", "require_full_body=false", 'build_options={"analysis_fps": 3, "max_frames": 6}'
    )
    build = store.get_json(Bucket.DATASETS, f"{prefix}/build.json")
    by_clip = {i["clip_id"]: i for i in build["items"]}
    assert by_clip["walk-000"]["evidence"]["action"] == "walking", by_clip["walk-000"]["evidence"]
    assert by_clip["face-000"]["evidence"]["action"] == "standing"
    assert {i["bucket"] for i in record["selected"]} == {
        "clips"
    }  # the clips themselves are the items
    kp = store.get_json(Bucket.DATASETS, f"{prefix}/derived/walk-000/keypoints.json")
    assert len(kp["frames"]) == 6 and len(kp["frames"][0]["keypoints"]) == 33

    # expression: the portrait's clip cropped to her face (the face at half the crop), its still
    # beside it; the walker's face is too small
    _out, record, prefix = await curate(
        "expression", "min_face_height_ratio=0.15", 'build_options={"min_crop_px": 96}'
    )
    (item,) = record["selected"]
    assert (
        item["bucket"] == "datasets"
        and item["source_clip_id"] == "face-000"
        and item["variant"] == "face_crop"
    )
    assert item["kind"] == "video" and item["key"] == f"{prefix}/derived/face-000/face.mp4"
    build = store.get_json(Bucket.DATASETS, f"{prefix}/build.json")
    ev = build["items"][0]["evidence"]
    still = tmp_path / "face.png"
    await asyncio.to_thread(store.download, Bucket.DATASETS, f"{prefix}/{ev['still']}", still)
    img = cv2.imread(str(still))
    assert (
        ev["expression"] == "smile"
        and 0.4 <= ev["face_fraction"] <= 0.6
        and img.shape[0] == ev["size_px"]
    )
    assert store.stat(Bucket.DATASETS, item["key"]).size > 1000

    # lighting: the walker under the temple's daylight sky, the portrait in the room
    _out, record, prefix = await curate("lighting")
    build = store.get_json(Bucket.DATASETS, f"{prefix}/build.json")
    classes = {i["clip_id"]: i["evidence"]["lighting"] for i in build["items"]}
    assert classes == {"walk-000": "midday", "face-000": "indoor"}, build["items"]
    assert build["summary"]["lighting_counts"]["midday"] == 1
