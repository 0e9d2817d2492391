"""Which scaled-dot-product-attention kernel the denoiser's attention runs on.

At 480x832x81 a Wan 1.3B training step is ~80% attention FLOPs (32,760 tokens). On Hopper
cuDNN's fused attention is the fastest SDPA kernel PyTorch ships, so ``auto`` puts it
first there; elsewhere PyTorch's own order stands. The exception is Flux: on an H200
(2026-12-04, torch 2.11.0+cu130) cuDNN's attention backward at Flux's 1024^2 shape (24 heads,
512 text + 4096 image tokens) hit an illegal memory access, where flash ran (0.89 s/step) and
so did the memory-efficient kernel (1.14 s/step); ``auto`` puts flash first for Flux. The
context must cover the backward too: gradient checkpointing recomputes attention inside
``loss.backward()``.
"""

from __future__ import annotations

import contextlib
from typing import Any, Literal

import torch

from loraforge.trainer.memory import transformer_blocks

AttentionBackend = Literal["auto", "cudnn", "flash", "efficient", "math"]


def _order(choice: str) -> list[Any]:
    from torch.nn.attention import SDPBackend as B

    fallback = [B.FLASH_ATTENTION, B.EFFICIENT_ATTENTION, B.MATH]
    first = {
        "cudnn": B.CUDNN_ATTENTION,
        "flash": B.FLASH_ATTENTION,
        "efficient": B.EFFICIENT_ATTENTION,
        "math": B.MATH,
    }[choice]
    return [first, *[b for b in fallback if b != first]]


#: families whose attention ``auto`` does not run on cuDNN on Hopper (see the module docstring)
AUTO_FLASH_FAMILIES = frozenset({"flux"})


def attention_backend(
    choice: str, device: torch.device, family: str | None = None
) -> contextlib.AbstractContextManager[Any]:
    """A context that makes SDPA prefer ``choice`` (falling back when it cannot run)."""
    if device.type != "cuda":
        return contextlib.nullcontext()
    kernel = resolve_attention(choice, torch.cuda.get_device_capability(device)[0], family)
    if kernel is None:
        return contextlib.nullcontext()
    from torch.nn.attention import sdpa_kernel

    context: contextlib.AbstractContextManager[Any] = sdpa_kernel(_order(kernel), set_priority=True)
    return context


def resolve_attention(choice: str, cc_major: int, family: str | None = None) -> str | None:
    """The kernel to put first on a CUDA card of compute capability ``cc_major``, or None
    for PyTorch's own order."""
    if choice != "auto":
        return choice
    if cc_major != 9:
        return None
    return "flash" if family in AUTO_FLASH_FAMILIES else "cudnn"


def compile_blocks(model: torch.nn.Module) -> int:
    """``torch.compile`` each transformer block's forward (not its hooks).

    Fuses the elementwise work between the matmuls (Wan's fp32 norms and modulation), which
    is a sizeable share of a step once attention runs on cuDNN. Only ``forward`` is
    compiled so block swap's hooks stay eager Python. Returns the number of blocks.
    """
    blocks = transformer_blocks(model)
    for blk in blocks:
        blk.forward = torch.compile(blk.forward)
    return len(blocks)
