"""How much one Wan transformer block keeps for its backward, by checkpointing mode.

    .venv/bin/python bench/saved_activations.py                 # Wan 2.1 1.3B block, 480x832x81
    .venv/bin/python bench/saved_activations.py --preset wan2.1-t2v-14b

Counts bytes, not time, so it runs on the CPU: one real-size block (random weights, bf16 with
fp32 LoRA of the family's default rank and targets, bf16 autocast as on a GPU) on a short
clip, and scales per token to the asked frame count (every saved tensor is linear in tokens:
SDPA keeps its output and log-sum-exp, not the attention matrix). Modes:

- none: every tensor autograd saves during the block's forward (no checkpointing);
- selective: the outputs of the ops selective checkpointing keeps (matmuls but LoRA's
  up-projections, attention) plus the block's inputs (``memory.keep_op_output``);
- full: the block's inputs only (it is recomputed whole).

It leaves out what every mode has (weights, optimizer state, the one block being
recomputed during the backward), so the columns compare the modes, not a whole step.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from loraforge.trainer.dataset import parse_resolution
from loraforge.trainer.memory import keep_op_output
from loraforge.trainer.presets import get_preset
from train_step import _full_denoiser


def _nbytes(tensors: Any) -> int:
    seen, total = set(), 0
    for t in tree_flatten(tensors)[0]:
        if isinstance(t, torch.Tensor) and t.untyped_storage().data_ptr() not in seen:
            seen.add(t.untyped_storage().data_ptr())
            total += t.untyped_storage().nbytes()
    return total


class _SavedOpOutputs(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.outputs: list[Any] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[override]
        out = func(*args, **(kwargs or {}))
        if keep_op_output(func, args):
            self.outputs.append(out)
        return out


def measure(name: str, latent_frames: int) -> tuple[dict[str, int], int]:
    """(bytes per mode for one block at ``latent_frames``, its token count)."""
    from peft import LoraConfig

    p = get_preset(name)
    torch.manual_seed(0)
    with torch.device("cpu"):
        _, model = _full_denoiser(name, num_layers=1)  # one block is enough; they are all alike
    model.to(torch.bfloat16)
    model.requires_grad_(False)
    model.add_adapter(
        LoraConfig(
            r=p.defaults.rank,
            lora_alpha=p.defaults.alpha,
            target_modules=list(p.defaults.target_modules),
        )
    )
    for q in model.parameters():
        if q.requires_grad:
            q.data = q.data.float()
    w, h = parse_resolution(p.defaults.resolution, p.stride, p.family)
    args: dict[str, Any] = {}
    model.blocks[0].register_forward_pre_hook(lambda m, a: args.setdefault("a", a))
    x = torch.randn(1, 16, latent_frames, h // 8, w // 8, dtype=torch.bfloat16)
    text = torch.randn(1, 512, model.config.text_dim, dtype=torch.bfloat16)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        model(
            hidden_states=x,
            timestep=torch.tensor([500]),
            encoder_hidden_states=text,
            return_dict=False,
        )
    block_args = [
        a.detach().requires_grad_(a.is_floating_point()) if isinstance(a, torch.Tensor) else a
        for a in args["a"]
    ]
    frozen = {t.untyped_storage().data_ptr() for t in [*model.parameters(), *model.buffers()]}
    tokens = block_args[0].shape[1]

    saved: list[torch.Tensor] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        if t.untyped_storage().data_ptr() not in frozen:
            saved.append(t)
        return t

    block = model.blocks[0]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            block(*block_args)
        kept = _SavedOpOutputs()
        with torch.no_grad(), kept:
            block(*block_args)
    inputs = _nbytes([a for a in block_args if isinstance(a, torch.Tensor)])
    return {
        "none": _nbytes(saved),
        "selective": _nbytes(kept.outputs) + inputs,
        "full": inputs,
    }, tokens


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="wan2.1-t2v-1.3b", help="a real Wan preset")
    ap.add_argument("--frames", type=int, default=81, help="frames to scale to (4k+1)")
    ap.add_argument(
        "--sample-latent-frames",
        type=int,
        default=2,
        help="latent frames of the clip actually run on the CPU",
    )
    args = ap.parse_args(argv)
    p = get_preset(args.preset)
    if p.family != "wan" or p.tiny:
        ap.error("a real Wan preset, e.g. wan2.1-t2v-1.3b")
    got, tokens = measure(args.preset, args.sample_latent_frames)
    w, h = parse_resolution(p.defaults.resolution, p.stride, p.family)
    target = ((args.frames - 1) // 4 + 1) * (h // 16) * (w // 16)
    scale = target / tokens
    n_blocks = 40 if "14b" in args.preset else 30
    print(
        f"# {args.preset}, one block measured at {tokens} tokens, scaled to {w}x{h}x{args.frames} "
        f"= {target} tokens; {n_blocks} blocks"
    )
    print("| mode | per block MiB | all blocks GiB |")
    print("|---|---:|---:|")
    for mode in ("none", "selective", "full"):
        per = got[mode] * scale
        print(f"| {mode} | {per / 2**20:.0f} | {per * n_blocks / 2**30:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
