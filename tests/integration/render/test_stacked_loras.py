"""Seed 003's composition: a character LoRA and a background LoRA, each trained on a tiny preset
from its own dataset, stacked in one render at the types' default weights (character 1.0,
background 0.8: render.scenario.DEFAULT_LORA_WEIGHTS), through the real render service (NATS,
S3, gRPC), and the same scenario in process to look at the adapters inside the pipeline.

The datasets are built here from real photos by the types' own recipes: the character set is
seed 002's photo preparation (photo_prep: measured, checked, cropped around the face) of the
astronaut over three real backgrounds; the background set is curation's background policy and
builder on photos of two places (scikit-learn's temple, scikit-image's launch pad) with her
standing in them, masked out and filled in.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import cv2
import grpc
import numpy as np
import pytest

from loraforge.curation import photo_prep
from loraforge.curation.dlib_backend import DlibBackend
from loraforge.curation.people import PeopleDetector
from loraforge.render.executor import ScenarioRenderer
from loraforge.render.main import mount
from loraforge.render.scenario import DEFAULT_LORA_WEIGHTS, parse_scenario
from loraforge.runtime.host import ServiceProcess
from loraforge.runtime.jobs import JobState
from loraforge.runtime.params import LoraType
from loraforge.runtime.storage import Bucket
from loraforge.trainer.config import RunConfig
from loraforge.trainer.train import Trainer
from loraforge.v1 import common_pb2, render_pb2, render_pb2_grpc

sys.path.insert(0, str(Path(__file__).parents[2] / "unit" / "curation"))
import photo_media as pm

pytestmark = pytest.mark.timeout(300)

TENANT, PROJECT = "acme", "jane"
SCENARIO = """
name: stacked
image_preset: tiny-sdxl
shots: [{{prompt: "ohwx_woman standing in bgtemple, evening light", seed: 5}}]
output: {{width: 64, height: 64}}
steps: 1
loras:
  - {{name: hero, path: "{hero}", type: character, trigger: ohwx_woman}}
  - {{name: place, path: "{place}", type: background, trigger: bgtemple}}
"""


def character_dataset(root: Path, backend, people) -> Path:
    """Seed 002's preparation of four photos of the astronaut (her studio portrait and three
    composites over real backgrounds): checked, and the kept ones cropped around the face."""
    img = pm.astronaut()
    mask = people.person_mask(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
    photos = {
        "studio": img,
        **{
            bg: pm.composite(img, mask, pm.background(bg, (512, 512)))
            for bg in ("coffee", "rocket", "chelsea")
        },
    }
    measures = [photo_prep.measure_photo(k, v, backend) for k, v in photos.items()]
    verdict = photo_prep.decide_set(measures, list(photos), backend.same_person_distance)
    assert len(verdict.kept) == 4, verdict.rejected
    root.mkdir(parents=True)
    for m in measures:
        crop, kind = photo_prep.crop_box(m)
        x0, y0, x1, y1 = crop.clipped(m.width, m.height)
        cv2.imwrite(str(root / f"{m.clip_id}.png"), photos[m.clip_id][y0:y1, x0:x1])
        (root / f"{m.clip_id}.txt").write_text(f"ohwx_woman, woman, short hair, {kind} photo")
    return root


def _walk_in(
    place: np.ndarray, figure: np.ndarray, alpha: np.ndarray, x: int, height: int
) -> np.ndarray:
    """The astronaut (waist-up, `height` px) standing at the bottom of a place photo."""
    w = round(figure.shape[1] * height / figure.shape[0])
    fig = cv2.resize(figure, (w, height), interpolation=cv2.INTER_AREA).astype(np.float32)
    a = cv2.resize(alpha, (w, height), interpolation=cv2.INTER_LINEAR)[..., None]
    out = place.copy()
    roi = out[-height:, x : x + w].astype(np.float32)
    out[-height:, x : x + w] = (fig * a + roi * (1 - a)).astype(np.uint8)
    return out


def background_dataset(root: Path, work: Path, backend, people) -> Path:
    """The background type's own dataset: photos of two places with the astronaut in them,
    through curation's background policy and its builder (builders/background.py: the person
    masked and filled in); the builder's inpainted frames are the training images."""
    from sklearn.datasets import load_sample_image

    from loraforge.curation.builders import build_dataset
    from loraforge.curation.pipeline import curate
    from loraforge.curation.policy import CurationPolicy

    img = pm.astronaut()
    alpha = people.person_mask(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
    temple = cv2.cvtColor(load_sample_image("china.jpg"), cv2.COLOR_RGB2BGR)
    shots = {
        "temple-a": _walk_in(cv2.resize(temple, (768, 512)), img, alpha, 80, 200),
        "temple-b": _walk_in(cv2.resize(temple[40:, 60:], (768, 512)), img, alpha, 480, 180),
        "launchpad": _walk_in(pm.background("rocket", (768, 512)), img, alpha, 500, 190),
    }
    work.mkdir(parents=True)
    paths = {}
    for name, shot in shots.items():
        paths[name] = work / f"{name}.png"
        cv2.imwrite(str(paths[name]), shot)
    # min_items: three photos, below seed 003's 100 background frames (size_range.py)
    policy = CurationPolicy.for_type(
        "background", {"min_short_side_px": 256, "build_options": {"min_items": 1}}
    )
    result = curate(list(paths.values()), policy, backend=backend, people=people)
    build = build_dataset(result, work / "out", people, backend, lambda cid: paths[cid])
    assert build is not None and len(build.items) == 3, [
        (d.clip_id, d.message) for d in build.dropped
    ]
    root.mkdir(parents=True)
    for it in build.items:
        assert it.variant == "inpainted"
        (root / f"{it.item_id}.png").write_bytes((work / "out" / it.path).read_bytes())
        (root / f"{it.item_id}.txt").write_text(f"bgtemple, {it.clip_id.split('-')[0]}, no people")
    return root


def train(dataset: Path, out: Path, trigger: str) -> Path:
    cfg = RunConfig(
        preset="tiny-sdxl",
        dataset=dataset,
        output_dir=out,
        steps=2,
        rank=4,
        alpha=4,
        learning_rate=1e-2,
        resolution=64,
        eval_every=0,
        checkpoint_every=0,
        validation_split=1.0,
        trigger=trigger,
        dataset_id=dataset.name,
    )
    return Trainer(cfg).run().files["unet"]


def adapter_weights(pipe) -> dict[str, set[float]]:
    """The weight each active adapter runs at in the UNet: PEFT's scaling / (alpha / r) per
    layer, for adapters whose trained up-projection is not zero (PEFT starts it at zero: a
    zero one would change nothing whatever its weight)."""
    from peft.tuners.lora import LoraLayer

    out: dict[str, set[float]] = {}
    for m in pipe.unet.modules():
        if isinstance(m, LoraLayer):
            for name in m.active_adapters:
                if float(m.lora_B[name].weight.abs().sum()) == 0.0:
                    continue
                base = m.lora_alpha[name] / m.r[name]
                out.setdefault(name, set()).add(round(m.scaling[name] / base, 6))
    return out


async def _wait(jobs, job_id: str, timeout: float = 240):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        job = await jobs.get(TENANT, PROJECT, job_id)
        if job.state.terminal:
            return job
        assert asyncio.get_running_loop().time() < deadline, (
            f"job stuck in {job.state}: {job.message}"
        )
        await asyncio.sleep(0.3)


async def test_character_and_background_loras_stack_at_their_type_weights(
    settings, store, tmp_path
):
    backend, people = DlibBackend(), PeopleDetector()
    hero = train(
        character_dataset(tmp_path / "character", backend, people), tmp_path / "hero", "ohwx_woman"
    )
    place = train(
        background_dataset(tmp_path / "background", tmp_path / "bg-work", backend, people),
        tmp_path / "place",
        "bgtemple",
    )
    keys = {}
    for name, path in (("hero", hero), ("place", place)):
        keys[name] = f"{TENANT}/{PROJECT}/runs/stack-{name}/last.safetensors"
        store.put_file(Bucket.LORAS, keys[name], path)
    text = SCENARIO.format(**keys)
    want = {
        "hero": DEFAULT_LORA_WEIGHTS[LoraType.CHARACTER],
        "place": DEFAULT_LORA_WEIGHTS[LoraType.BACKGROUND],
    }
    assert want == {"hero": 1.0, "place": 0.8}  # seed 003's suggested weights

    # through the service: render.json records both adapters at the types' default weights
    proc = ServiceProcess("render", settings, mount, drain_delay_s=0)
    await proc.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{proc.port}") as channel:
            stub = render_pb2_grpc.RenderServiceStub(channel)
            job = await stub.SubmitRender(
                render_pb2.SubmitRenderRequest(
                    scope=common_pb2.ProjectScope(tenant=TENANT, project=PROJECT),
                    request_id="stacked-1",
                    render=common_pb2.RenderRequest(scenario_yaml=text),
                ),
                timeout=10,
            )
            done = await _wait(proc.clients.jobs, job.id)
        assert done.state is JobState.SUCCEEDED, done.message
        record = store.get_json(Bucket.RENDERS, f"{TENANT}/{PROJECT}/renders/{job.id}/render.json")
    finally:
        await proc.stop()
    applied = record["placement"]["image"]["loras"]
    assert [(a["name"], a["type"], a["weight"], a["weight_from"]) for a in applied] == [
        ("hero", "character", 1.0, "type_default"),
        ("place", "background", 0.8, "type_default"),
    ]
    assert [lo["type"] for lo in record["scenario"]["loras"]] == ["character", "background"]

    # in process: both trained adapters are active in the UNet, each at its type's weight
    scenario = parse_scenario(text)
    files = {"hero": hero, "place": place}

    def render(sc, out: Path) -> dict[str, set[float]]:
        seen: dict[str, set[float]] = {}

        def progress(fraction: float, message: str) -> None:
            # the placed pipeline exists while the keyframe renders (it is let go after)
            if "image" in r.pipelines and "step" in message:
                seen.update(adapter_weights(r.pipelines["image"]))

        r = ScenarioRenderer(lambda lora: files[lora.name], steps=1, progress=progress)
        r.render(sc, out)
        assert seen, "the render never reported a denoising step"
        return seen

    assert render(scenario, tmp_path / "both") == {"hero": {1.0}, "place": {0.8}}
