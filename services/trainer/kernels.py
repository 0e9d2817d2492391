"""Which scaled-dot-product-attention kernel the denoiser's attention runs on.

At 480x832x81 a Wan 1.3B training step is ~80% attention FLOPs (32,760 tokens). On Hopper
cuDNN's fused attention is the fastest SDPA kernel PyTorch ships, so ``auto`` puts it
first there; elsewhere PyTorch's own order stands. The context must cover the backward
too: gradient checkpointing recomputes attention inside ``loss.backward()``.
"""

from __future__ import annotations

import contextlib
from typing import Literal

import torch

AttentionBackend = Literal["auto", "cudnn", "flash", "efficient", "math"]


def _order(choice: str) -> list:
    from torch.nn.attention import SDPBackend as B

    fallback = [B.FLASH_ATTENTION, B.EFFICIENT_ATTENTION, B.MATH]
    first = {"cudnn": B.CUDNN_ATTENTION, "flash": B.FLASH_ATTENTION,
             "efficient": B.EFFICIENT_ATTENTION, "math": B.MATH}[choice]
    return [first, *[b for b in fallback if b != first]]


def attention_backend(choice: str, device: torch.device) -> contextlib.AbstractContextManager:
    """A context that makes SDPA prefer ``choice`` (falling back when it cannot run)."""
    if device.type != "cuda":
        return contextlib.nullcontext()
    if choice == "auto":
        major, _ = torch.cuda.get_device_capability(device)
        if major != 9:
            return contextlib.nullcontext()
        choice = "cudnn"
    from torch.nn.attention import sdpa_kernel

    return sdpa_kernel(_order(choice), set_priority=True)


def compile_blocks(model: torch.nn.Module) -> int:
    """``torch.compile`` each transformer block's forward (not its hooks).

    Fuses the elementwise work between the matmuls (Wan's fp32 norms and modulation), which
    is a sizeable share of a step once attention runs on cuDNN. Only ``forward`` is
    compiled so block swap's hooks stay eager Python. Returns the number of blocks.
    """
    from loraforge.trainer.memory import transformer_blocks

    blocks = transformer_blocks(model)
    for blk in blocks:
        blk.forward = torch.compile(blk.forward)  # type: ignore[method-assign]
    return len(blocks)
