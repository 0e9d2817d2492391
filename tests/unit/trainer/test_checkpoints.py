"""Likeness evaluation of a finished run (loraforge.trainer.checkpoints) on a tiny preset."""

from __future__ import annotations

from types import SimpleNamespace

import cv2
import imageio_ffmpeg
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from loraforge.runtime.errors import InvalidInput
from loraforge.trainer.checkpoints import (
    CheckpointEvaluator,
    EvalSettings,
    reference_candidates,
    split_extra,
    validation_prompts,
)
from loraforge.trainer.config import RunConfig
from loraforge.trainer.synthetic import TRIGGER
from loraforge.trainer.train import LORA_FILE, Trainer
from loraforge.trainer.wan import to_comfy


def test_settings_prompts_and_reference_order():
    settings, rest = split_extra(
        {"eval_previews": 2, "evaluate": False, "eval_every": 3, "rank": 4}
    )
    assert settings.previews == 2 and not settings.enabled and rest == {"eval_every": 3, "rank": 4}
    with pytest.raises(InvalidInput):
        split_extra({"eval_previews": 0})
    caps = [f"{TRIGGER}, scene {i}" for i in (3, 1, 2, 1, 0)]
    prompts = validation_prompts(TRIGGER, caps)
    assert prompts[0] == TRIGGER and len(prompts) == 4 and len(set(prompts)) == 4
    assert prompts[1:] == [f"{TRIGGER}, scene 0", f"{TRIGGER}, scene 2", f"{TRIGGER}, scene 3"]
    assert validation_prompts("", []) == ["a photo"]
    clips = [
        SimpleNamespace(keyframe_keys=["a.jpg", "a.mp4"], metrics={"angle_bucket": "profile_left"}),
        SimpleNamespace(keyframe_keys=["b.jpg"], metrics={}),
        SimpleNamespace(keyframe_keys=["c.png"], metrics={"angle_bucket": "frontal"}),
        SimpleNamespace(keyframe_keys=["d.png"], metrics={"yaw": 20.0, "pitch": -5.0}),
    ]
    got = reference_candidates(clips, 3)
    assert [c.key for c in got] == ["c.png", "d.png", "b.jpg"]  # frontal, 25 deg, unknown (45)
    assert got[0].pose == {"bucket": "frontal"}


def test_evaluator_renders_scores_and_exports_the_chosen_checkpoint(two_clips, tmp_path):
    cfg = RunConfig.parse(
        {
            "preset": "tiny-wan2.1-t2v",
            "dataset": two_clips,
            "output_dir": tmp_path / "out",
            "trigger": TRIGGER,
            "steps": 3,
            "rank": 4,
            "checkpoint_every": 1,
            "eval_every": 1,
            "seed": 1,
        }
    )
    trainer = Trainer(cfg)
    result = trainer.run()
    assert set(result.eval_losses) == {0, 1, 2, 3}
    final = trainer.lora_state()
    states = {
        int(p.name.split("-")[1]): (lambda p=p: load_file(str(p / LORA_FILE)))
        for p in result.checkpoints
    }
    states[3] = lambda: final
    assert set(states) == {1, 2, 3}
    # plant the held-out losses so that the middle checkpoint is the lowest
    losses = {0: 2.0, 1: 1.5, 2: 0.5, 3: 1.0}
    seen: list[str] = []
    ev = CheckpointEvaluator(
        trainer, EvalSettings(previews=2, inference_steps=2), progress=lambda f, m: seen.append(m)
    )
    out = ev.run(states, losses, [], validation_prompts(TRIGGER, ["a", "b"]), tmp_path / "eval")
    assert out.best_step == 2 and out.basis == "validation_loss"
    assert "likeness is unmeasurable" in out.reason and "no reference face" in out.reason
    assert [r["step"] for r in out.rows] == [1, 2, 3]
    # a video LoRA's preview: its middle frame (scored), the clip and a contact strip
    assert {s: sorted(p.name for p in ps) for s, ps in out.previews.items()} == {
        s: ["00.mp4", "00.png", "00_strip.png", "01.mp4", "01.png", "01_strip.png"]
        for s in (1, 2, 3)
    }
    png, mp4, strip_png = out.previews[2][:3]
    still = cv2.imread(str(png))
    assert png.read_bytes()[:4] == b"\x89PNG" and still.shape[:2] == (32, 32)
    count, _ = imageio_ffmpeg.count_frames_and_secs(str(mp4))
    assert count > 1  # decoded back by ffmpeg: a real clip of the pipeline's frames
    strip = cv2.imread(str(strip_png))
    assert strip.shape[:2] == (32, 32 * min(count, 8))  # every frame (up to 8) side by side
    assert (out.report_dir / "report.html").is_file() and (
        out.report_dir / "checkpoints.csv"
    ).is_file()
    assert any("step 2" in m for m in seen)
    # best = checkpoint 2's tensors in the LoRA file layout
    best = load_file(str(out.best_files["transformer"]))
    raw = load_file(str(result.checkpoints[1] / LORA_FILE))
    want = to_comfy(
        {k.split("/", 1)[1].replace(".default", ""): v for k, v in raw.items()}, trainer.args.alpha
    )
    assert set(best) == set(want) and all(torch.equal(best[k], want[k]) for k in best)
    with safe_open(str(out.best_files["transformer"]), "pt") as f:
        assert f.metadata()["loraforge.checkpoint_step"] == "2"
    # the final LoRA differs from checkpoint 2 (it trained one more step)
    last = load_file(str(result.files["transformer"]))
    assert any(not torch.equal(last[k], best[k]) for k in best if "lora" in k)


class _PlantedFaces:
    """A face backend that reads a planted LoRA weight from pixel (0, 0) of a render (value =
    100 x weight) and embeds a face whose angle to the reference grows with |weight - 0.9|:
    likeness peaks at the planted weight 0.9."""

    name = "planted"
    same_person_distance = 0.6
    duplicate_distance = 0.1

    def detect(self, image_bgr, embed_largest=True):
        import numpy as np

        from loraforge.curation.faces import DetectedFace
        from loraforge.curation.geometry import Box

        theta = abs(float(image_bgr[0, 0, 0]) / 100.0 - PLANTED) * 2.0
        emb = np.array([np.cos(theta), np.sin(theta), 0.0, 0.0], np.float32)
        return [DetectedFace(Box(0.0, 0.0, 4.0, 4.0), 1.0, None, emb if embed_largest else None)]


PLANTED = 0.9


def test_strength_recommendation_finds_the_planted_weight_through_adapter_scaling(
    one_clip, tmp_path
):
    import numpy as np
    from peft.tuners.lora import LoraLayer

    from loraforge.trainer.checkpoints import STRENGTH_WEIGHTS, adapter_scale
    from loraforge.trainer.train import ADAPTER

    cfg = RunConfig.parse(
        {
            "preset": "tiny-wan2.1-t2v",
            "dataset": one_clip,
            "output_dir": tmp_path / "out",
            "trigger": TRIGGER,
            "steps": 2,
            "rank": 4,
            "eval_every": 1,
            "seed": 1,
        }
    )
    trainer = Trainer(cfg)
    result = trainer.run()
    layers = [
        m for model in trainer.models.values() for m in model.modules() if isinstance(m, LoraLayer)
    ]
    base = [m.scaling[ADAPTER] for m in layers]
    # the weight scales the LoRA's contribution linearly and is restored afterwards
    lin = next(m for m in layers if isinstance(m.get_base_layer(), torch.nn.Linear))
    wt = lin.get_base_layer().weight
    x = torch.randn(2, lin.in_features, device=wt.device, dtype=wt.dtype)
    outs = {}
    with torch.no_grad():
        for w in (0.0, 0.5, 1.0):
            with adapter_scale(trainer.models.values(), w, ADAPTER) as n:
                assert n == len(layers)
                outs[w] = lin(x).float()
    assert not torch.allclose(outs[0.0], outs[1.0])
    assert torch.allclose(outs[0.5], (outs[0.0] + outs[1.0]) / 2, atol=1e-5)
    assert [m.scaling[ADAPTER] for m in layers] == base

    # renders: the effective weight, read back from the adapter's scaling, planted in pixel
    # (0, 0); noise elsewhere so that previews differ (not collapsed)
    weights_seen: list[float] = []

    def render(prompts):
        w = round(layers[0].scaling[ADAPTER] / base[0], 4)
        weights_seen.append(w)
        rng = np.random.default_rng(len(weights_seen))
        imgs = []
        for _ in range(2):
            img = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
            img[0, 0, 0] = round(100 * w)
            imgs.append(img)
        return imgs

    ref = np.zeros((32, 32, 3), np.uint8)
    ref[0, 0, 0] = round(100 * PLANTED)
    ev = CheckpointEvaluator(trainer, EvalSettings(previews=2, inference_steps=1))
    ev.render_clips = lambda prompts: [[img] for img in render(prompts)]  # stills
    final = trainer.lora_state()
    out = ev.run(
        {2: lambda: final},
        result.eval_losses,
        [(ref, None, "ref.png")],
        [TRIGGER],
        tmp_path / "eval",
        lora_type="character",
        backend=_PlantedFaces(),
    )
    assert weights_seen == [1.0] + list(STRENGTH_WEIGHTS)  # the checkpoint, then each weight
    assert out.recommended_weight == PLANTED, out.strength_reason
    assert "lowest" in out.strength_reason
    assert [r["weight"] for r in out.strength_rows] == list(STRENGTH_WEIGHTS)
    assert [r["weight"] for r in out.strength_rows if r["recommended"]] == [PLANTED]
    summary = out.summary()
    assert summary["recommended_weight"] == PLANTED and summary["strengths"] == out.strength_rows
    assert [m.scaling[ADAPTER] for m in layers] == base  # restored after the pass

    # faceless renders at every weight (tiny models, style LoRAs): the type's default weight
    class NoFaces(_PlantedFaces):
        def detect(self, image_bgr, embed_largest=True):
            return [] if image_bgr[0, 0, 0] != 90 else super().detect(image_bgr, embed_largest)

    ref[0, 0, 0] = 90
    refs_backend = NoFaces()
    ref_faces, _ = ev.references([(ref, None, "ref.png")], refs_backend)
    w, reason, rows = ev.strength(ref_faces, refs_backend, [TRIGGER], "style", weights=(0.5, 1.0))
    assert w == 0.9 and "unmeasurable" in reason and "style" in reason
    assert [r["recommended"] for r in rows] == [False, False]
    # no reference face: nothing rendered, the default (1.0 for a character)
    n = len(weights_seen)
    w, reason, rows = ev.strength(None, refs_backend, [TRIGGER], "character")
    assert (w, rows, len(weights_seen)) == (1.0, [], n) and "unmeasurable" in reason
    # turned off
    off = CheckpointEvaluator(trainer, EvalSettings(previews=2, strength=False))
    w, reason, rows = off.strength(ref_faces, refs_backend, [TRIGGER], "pose")
    assert (w, rows) == (0.7, []) and "eval_strength" in reason


def test_previews_rendered_during_training_are_what_the_evaluation_scores(one_clip, tmp_path):
    """`on_eval` renders each evaluated step while training; the run trains exactly as one
    without it, and the evaluation afterwards scores those files instead of rendering again."""

    def config(out):
        return RunConfig.parse(
            {
                "preset": "tiny-wan2.1-t2v",
                "dataset": one_clip,
                "output_dir": out,
                "trigger": TRIGGER,
                "steps": 3,
                "rank": 4,
                "checkpoint_every": 2,
                "eval_every": 2,
                "seed": 1,
            }
        )

    import random

    import numpy as np

    def global_rngs():  # what a checkpoint saves besides the trainer's own noise generator
        return torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate()

    def reseed():
        torch.manual_seed(0), np.random.seed(0), random.seed(0)

    reseed()
    plain = Trainer(config(tmp_path / "plain"))
    plain.run()
    plain_rngs = global_rngs()

    reseed()
    trainer = Trainer(config(tmp_path / "live"))
    settings = EvalSettings(previews=2, inference_steps=2)
    prompts = validation_prompts(TRIGGER, ["a", "b"])
    live = CheckpointEvaluator(trainer, settings)

    def on_eval(step):  # draws from every global generator, as a renderer may
        torch.rand(3), np.random.rand(), random.random()
        live.render_step(step, prompts, tmp_path / "eval")

    trainer.on_eval = on_eval
    result = trainer.run()
    assert sorted(live.rendered) == [2, 3]  # the eval interval and the final step
    for k, v in plain.lora_state().items():  # rendering drew no training randomness
        assert torch.equal(trainer.lora_state()[k], v), k
    # and left the global generators as a run without previews leaves them (checkpoints
    # save those, so a resumed run continues the same streams)
    live_rngs = global_rngs()
    assert torch.equal(live_rngs[0], plain_rngs[0])
    assert (live_rngs[1] == plain_rngs[1]).all() and live_rngs[2] == plain_rngs[2]

    # the live renders equal a render of the same step afterwards (so reusing them is exact)
    final = trainer.lora_state()
    again = CheckpointEvaluator(trainer, settings)
    again.load_state(final)
    import cv2

    fresh = again.render_step(3, prompts, tmp_path / "again")
    pngs = [(a, b) for a, b in zip(fresh, live.rendered[3], strict=True) if a.suffix == ".png"]
    assert len(pngs) == 4  # two stills, two contact strips
    assert all((cv2.imread(str(a)) == cv2.imread(str(b))).all() for a, b in pngs)

    ev = CheckpointEvaluator(trainer, settings, rendered=live.rendered)
    renders: list[int] = []
    ev.render = lambda p: renders.append(1) or live.render(p)  # type: ignore[method-assign]
    ckpt = result.checkpoints[0]
    out = ev.run(
        {2: lambda: load_file(str(ckpt / LORA_FILE)), 3: lambda: final},
        result.eval_losses,
        [],
        prompts,
        tmp_path / "eval",
    )
    assert out.previews == {2: live.rendered[2], 3: live.rendered[3]}
    # only the strength pass renders (no reference face: it is skipped), no preview again
    assert renders == []


def test_users_validation_prompts_get_the_trigger_and_are_checked():
    assert validation_prompts(
        TRIGGER, ["a caption"], custom=("a woman on a beach", f"{TRIGGER.upper()} dancing")
    ) == [f"{TRIGGER}, a woman on a beach", f"{TRIGGER.upper()} dancing"]
    assert validation_prompts("", [], custom=("a cat",)) == ["a cat"]
    settings, rest = split_extra({"eval_prompts": [" a cat "], "rank": 4})
    assert settings.prompts == ("a cat",) and rest == {"rank": 4}
    for bad, says in (("a cat", "list of prompts"), ([""], "empty"), (["x" * 501], "at most")):
        with pytest.raises(InvalidInput, match=says):
            split_extra({"eval_prompts": bad})
