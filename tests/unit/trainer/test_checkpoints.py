"""Likeness evaluation of a finished run (loraforge.trainer.checkpoints) on a tiny preset."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
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
from safetensors import safe_open
from safetensors.torch import load_file


def test_settings_prompts_and_reference_order():
    settings, rest = split_extra({"eval_previews": 2, "evaluate": False, "eval_every": 3, "rank": 4})
    assert settings.previews == 2 and not settings.enabled and rest == {"eval_every": 3, "rank": 4}
    with pytest.raises(InvalidInput):
        split_extra({"eval_previews": 0})
    caps = [f"{TRIGGER}, scene {i}" for i in (3, 1, 2, 1, 0)]
    prompts = validation_prompts(TRIGGER, caps)
    assert prompts[0] == TRIGGER and len(prompts) == 4 and len(set(prompts)) == 4
    assert prompts[1:] == [f"{TRIGGER}, scene 0", f"{TRIGGER}, scene 2", f"{TRIGGER}, scene 3"]
    assert validation_prompts("", []) == ["a photo"]
    clips = [SimpleNamespace(keyframe_keys=["a.jpg", "a.mp4"], metrics={"angle_bucket": "profile_left"}),
             SimpleNamespace(keyframe_keys=["b.jpg"], metrics={}),
             SimpleNamespace(keyframe_keys=["c.png"], metrics={"angle_bucket": "frontal"}),
             SimpleNamespace(keyframe_keys=["d.png"], metrics={"yaw": 20.0, "pitch": -5.0})]
    got = reference_candidates(clips, 3)
    assert [c.key for c in got] == ["c.png", "d.png", "b.jpg"]  # frontal, 25 deg, unknown (45)
    assert got[0].pose == {"bucket": "frontal"}


def test_evaluator_renders_scores_and_exports_the_chosen_checkpoint(one_clip, tmp_path):
    cfg = RunConfig.parse({"preset": "tiny-wan2.1-t2v", "dataset": one_clip,
                           "output_dir": tmp_path / "out", "trigger": TRIGGER, "steps": 3,
                           "rank": 4, "checkpoint_every": 1, "eval_every": 1, "seed": 1})
    trainer = Trainer(cfg)
    result = trainer.run()
    assert set(result.eval_losses) == {0, 1, 2, 3}
    final = trainer.lora_state()
    states = {int(p.name.split("-")[1]): (lambda p=p: load_file(str(p / LORA_FILE)))
              for p in result.checkpoints}
    states[3] = lambda: final
    assert set(states) == {1, 2, 3}
    # plant the held-out losses so that the middle checkpoint is the lowest
    losses = {0: 2.0, 1: 1.5, 2: 0.5, 3: 1.0}
    seen: list[str] = []
    ev = CheckpointEvaluator(trainer, EvalSettings(previews=2, inference_steps=2),
                             progress=lambda f, m: seen.append(m))
    out = ev.run(states, losses, [], validation_prompts(TRIGGER, ["a", "b"]), tmp_path / "eval")
    assert out.best_step == 2 and out.basis == "validation_loss"
    assert "likeness is unmeasurable" in out.reason and "no reference face" in out.reason
    assert [r["step"] for r in out.rows] == [1, 2, 3]
    assert {s: len(p) for s, p in out.previews.items()} == {1: 2, 2: 2, 3: 2}
    assert all(p.read_bytes()[:4] == b"\x89PNG" for ps in out.previews.values() for p in ps)
    assert (out.report_dir / "report.html").is_file() and (out.report_dir / "checkpoints.csv").is_file()
    assert any("step 2" in m for m in seen)
    # best = checkpoint 2's tensors in the LoRA file layout
    best = load_file(str(out.best_files["transformer"]))
    raw = load_file(str(result.checkpoints[1] / LORA_FILE))
    want = to_comfy({k.split("/", 1)[1].replace(".default", ""): v for k, v in raw.items()},
                    trainer.args.alpha)
    assert set(best) == set(want) and all(torch.equal(best[k], want[k]) for k in best)
    with safe_open(str(out.best_files["transformer"]), "pt") as f:
        assert f.metadata()["loraforge.checkpoint_step"] == "2"
    # the final LoRA differs from checkpoint 2 (it trained one more step)
    last = load_file(str(result.files["transformer"]))
    assert any(not torch.equal(last[k], best[k]) for k in best if "lora" in k)
