"""`loraforge render` and `loraforge jobs` against the in-process render service, real NATS and
the test S3 server; the ComfyUI export read back and checked."""

from __future__ import annotations

import json

import pytest

from loraforge.runtime.storage import Bucket

pytestmark = pytest.mark.timeout(180)

TWO_SHOTS = """
name: clip
image_preset: tiny-sdxl
video_preset: tiny-wan2.1-flf2v
shots:
  - {prompt: "a red ball on grass", seed: 1}
  - {prompt: "a blue cube on sand", seed: 2}
transition: {frames: 5, fps: 8}
output: {width: 64, height: 64}
steps: 1
"""

WITH_LORA = """
name: hero
image_preset: sdxl
video_preset: wan2.1-flf2v-14b
shots:
  - {prompt: "s86b5p woman walking", seed: 1}
  - {prompt: "a woman sitting", seed: 2}
loras:
  - {name: jane, path: default/jane/runs/j1/last.safetensors, type: character, trigger: s86b5p}
  - {name: paint, path: default/jane/runs/j2/last.safetensors, type: style}
  - {name: moves, path: default/jane/runs/j3/last.safetensors, stage: video, weight: 0.5}
transition: {frames: 33, fps: 16}
output: {width: 832, height: 480}
"""


async def test_comfyui_export_without_a_stack(cli, tmp_path):
    scen = tmp_path / "hero.yaml"
    scen.write_text(WITH_LORA)
    out = tmp_path / "wf" / "hero.json"
    res = await cli("render", str(scen), "--comfyui-out", str(out), "--no-submit")
    assert res.exit_code == 0, res.output
    assert "shot 2" in res.output and "'s86b5p'" in res.output  # the missing-trigger warning
    wf = json.loads(out.read_text())
    by_class: dict[str, list[dict]] = {}
    for node in wf.values():
        by_class.setdefault(node["class_type"], []).append(node)
    assert (
        by_class["CheckpointLoaderSimple"][0]["inputs"]["ckpt_name"] == "sd_xl_base_1.0.safetensors"
    )
    # image-stage LoRAs only, chained; files named by adapter (trained files are all last.*)
    assert [n["inputs"]["lora_name"] for n in by_class["LoraLoader"]] == [
        "jane.safetensors",
        "paint.safetensors",
    ]
    strengths = sorted(n["inputs"]["strength_model"] for n in by_class["LoraLoader"])
    assert strengths == [0.9, 1.0]  # style default 0.9, character default 1.0
    assert [n["inputs"]["strength_model"] for n in by_class["LoraLoaderModelOnly"]] == [0.5]
    assert len(by_class["KSampler"]) == 3  # two shots + one transition
    (flf,) = by_class["WanFirstLastFrameToVideo"]
    assert flf["inputs"]["length"] == 33 and flf["inputs"]["width"] == 832
    assert [n["inputs"]["text"] for n in by_class["CLIPTextEncode"]][:1] == ["s86b5p woman walking"]
    # every link points at an existing node
    for node in wf.values():
        for value in node["inputs"].values():
            if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str):
                assert value[0] in wf

    # --json: the same check as one object; no project needed without a submit
    res = await cli("render", str(scen), "--no-submit", "--json")
    view = json.loads(res.stdout)
    assert res.exit_code == 0 and view["shots"] == 2 and view["transitions_planned"] == 1
    assert len(view["warnings"]) == 1 and "job_id" not in view


async def test_render_then_list_jobs(cli, store, tmp_path):
    scen = tmp_path / "clip.yaml"
    scen.write_text(TWO_SHOTS)
    res = await cli(
        "render",
        str(scen),
        "--project",
        "jane",
        "--tenant",
        "acme",
        "--request-id",
        "cli-r1",
        "--json",
    )
    assert res.exit_code == 0, res.output
    view = json.loads(res.stdout)
    assert view["state"] == "SUCCEEDED", view
    assert len(view["keyframes"]) == 2 and len(view["transitions"]) == 1 and view["film"]
    assert all(k.startswith(f"acme/jane/renders/{view['job_id']}/") for k in view["keyframes"])
    assert set(view["links"]) == {
        *view["keyframes"],
        *view["transitions"],
        view["film"],
        view["thumbnails"],
    }
    assert all(
        url.startswith("http") and "X-Amz-Signature" in url for url in view["links"].values()
    )
    assert store.stat(Bucket.RENDERS, view["film"]) is not None

    # the same request id: the same job, nothing rendered again; the human view lists outputs
    again = await cli(
        "render",
        str(scen),
        "--project",
        "jane",
        "--tenant",
        "acme",
        "--request-id",
        "cli-r1",
        "--no-links",
    )
    assert again.exit_code == 0, again.output
    assert view["job_id"] in again.stdout and "SUCCEEDED" in again.stdout
    assert "keyframe_01.png" in again.stdout and "clip.mp4" in again.stdout

    # jobs: the render job is listed; the services that do not answer are skipped with a note
    res = await cli("jobs", "--tenant", "acme", "--project", "jane", "--json")
    assert res.exit_code == 0, res.output
    listed = json.loads(res.stdout)
    assert [(j["service"], j["job_id"], j["state"]) for j in listed["jobs"]] == [
        ("render", view["job_id"], "SUCCEEDED")
    ]
    assert sorted(s["service"] for s in listed["skipped"]) == [
        "captioning",
        "curation",
        "ingest",
        "trainer",
    ]
    assert all("not reachable" in s["reason"] for s in listed["skipped"])

    res = await cli("jobs", "--tenant", "acme", "--kind", "render", "--state", "failed", "--json")
    assert res.exit_code == 0 and json.loads(res.stdout) == {
        "tenant": "acme",
        "project": None,
        "jobs": [],
        "skipped": [],
    }
    res = await cli("jobs", "--tenant", "acme", "--kind", "render")
    assert res.exit_code == 0 and view["job_id"] in res.stdout and "1 job(s)" in res.stdout
    res = await cli("jobs", "--kind", "painting")
    assert res.exit_code == 2 and "unknown --kind painting" in res.output


async def test_bad_scenario_and_unreachable_service(cli, tmp_path, monkeypatch):
    bad = tmp_path / "bad.yaml"
    bad.write_text(TWO_SHOTS.replace("frames: 5", "frames: 6"))
    res = await cli("render", str(bad), "--project", "jane", "--json")
    assert res.exit_code == 2
    assert "transition.frames" in json.loads(res.stdout)["error"] and "4k+1" in res.stdout

    res = await cli("render", str(tmp_path / "missing.yaml"), "--project", "jane")
    assert res.exit_code == 2 and "cannot read" in res.output

    good = tmp_path / "good.yaml"
    good.write_text(TWO_SHOTS)
    res = await cli("render", str(good), "--json")
    assert res.exit_code == 2 and "--project is required" in res.stdout

    from loraforge.stack.binaries import free_port

    monkeypatch.setenv("LORAFORGE_ENDPOINTS__RENDER", f"127.0.0.1:{free_port()}")
    res = await cli("render", str(good), "--project", "jane", "--json")
    assert res.exit_code == 1 and "not reachable" in json.loads(res.stdout)["error"]
