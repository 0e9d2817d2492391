"""Memory savers for big denoisers: fp8 base weights and block swap.

Both touch only *frozen* tensors; the LoRA parameters (fp32, trainable) always stay on the
compute device, so the optimizer and autograd never see a tensor change device.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F

FP8 = getattr(torch, "float8_e4m3fn", None)
FP8_MAX = 448.0  # largest finite float8_e4m3fn


# ---------------------------------------------------------------- fp8 base weights


def transformer_blocks(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The repeated blocks of a DiT (Wan, Flux) or [] (UNets)."""
    blocks: list[torch.nn.Module] = []
    for attr in ("blocks", "transformer_blocks", "single_transformer_blocks"):
        blocks += list(getattr(model, attr, None) or [])
    return blocks


class _Fp8Linear(torch.autograd.Function):
    """y = x W^T + b with W stored as fp8 x per-output-channel scale.

    Saves only the fp8 weight for backward (the base weight is frozen, so the input is not
    needed): no full-precision copy of W or of x outlives the call.
    """

    @staticmethod
    def forward(ctx, x, weight, scale, bias):
        dtype = (
            torch.get_autocast_dtype(x.device.type)
            if torch.is_autocast_enabled(x.device.type)
            else x.dtype
        )
        ctx.save_for_backward(weight, scale)
        ctx.compute_dtype, ctx.input_dtype = dtype, x.dtype
        w = weight.to(dtype) * scale.to(dtype)
        with torch.autocast(x.device.type, enabled=False):
            return F.linear(x.to(dtype), w, None if bias is None else bias.to(dtype))

    @staticmethod
    def backward(ctx, grad):
        weight, scale = ctx.saved_tensors
        w = weight.to(ctx.compute_dtype) * scale.to(ctx.compute_dtype)
        grad_x = grad.to(ctx.compute_dtype) @ w
        return grad_x.to(ctx.input_dtype), None, None, None


def quantize_fp8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(fp8 weight, fp32 scale of shape [out, 1]) with each row scaled to fp8's range.

    A plain cast would flush most of a typical weight matrix (std ~0.02) into fp8's
    subnormals; scaling each output row to its absolute maximum keeps ~2 significant digits.
    """
    w = weight.detach().float()
    scale = (w.abs().amax(dim=1, keepdim=True) / FP8_MAX).clamp(min=1e-12)
    return (w / scale).to(FP8), scale


def fp8_base_weights(model: torch.nn.Module) -> int:
    """Store the frozen ``nn.Linear`` weights of the transformer blocks as scaled fp8.

    Only inside the blocks (over 95% of a DiT's parameters): the embedders outside them
    cast their inputs to their own weight dtype (diffusers' Wan time embedder does), and
    they are small. Returns the number of layers converted.
    """
    if FP8 is None:
        warnings.warn("this torch has no float8 dtype; fp8_base ignored", stacklevel=2)
        return 0
    n = 0
    for module in (m for blk in (transformer_blocks(model) or [model]) for m in blk.modules()):
        if type(module) is not torch.nn.Linear or module.weight.requires_grad:
            continue
        q, scale = quantize_fp8(module.weight)
        module.weight = torch.nn.Parameter(q, requires_grad=False)
        module.register_buffer("fp8_scale", scale.to(q.device))

        def forward(x: torch.Tensor, _m: torch.nn.Linear = module) -> torch.Tensor:
            return _Fp8Linear.apply(x, _m.weight, _m.fp8_scale, _m.bias)

        module.forward = forward  # a bound forward, replaced
        n += 1
    return n


# ---------------------------------------------------------------- block swap


class BlockSwapper:
    """Keep the frozen weights of some blocks in (pinned) host memory between uses.

    A block's weights are copied in by a forward pre-hook and the block that was resident
    before it is released at that moment, never in a forward post-hook: under gradient
    checkpointing the backward pass recomputes a block and then runs its backward with
    tensors saved during the recompute, which must still be on the device. Blocks run in
    order forward and in reverse order during backward, so the hook also prefetches the
    neighbour in the direction of travel on a side stream.
    """

    def __init__(
        self,
        blocks: Iterable[torch.nn.Module],
        device: torch.device,
        storage: torch.device | str = "cpu",
    ):
        self.blocks = list(blocks)
        self.device = torch.device(device)
        cuda = self.device.type == "cuda"
        self.stream = torch.cuda.Stream(self.device) if cuda else None
        # Frozen tensors per block, each with its host copy; trainable ones are left alone.
        self.host: list[list[tuple[torch.Tensor, torch.Tensor]]] = []
        for blk in self.blocks:
            pairs = []
            for t in [*blk.parameters(), *blk.buffers()]:
                if t.requires_grad:
                    t.data = t.data.to(self.device)
                    continue
                h = t.data.to(storage)
                if cuda and h.device.type == "cpu":
                    h = h.pin_memory()
                t.data = h
                pairs.append((t, h))
            self.host.append(pairs)
        self.resident: int | None = None
        self.last: int | None = None
        self.pending: dict[int, tuple[list[torch.Tensor], torch.cuda.Event | None]] = {}
        self.copies = 0
        self.handles = [
            blk.register_forward_pre_hook(self._pre_hook(i)) for i, blk in enumerate(self.blocks)
        ]

    def _copy(self, i: int) -> tuple[list[torch.Tensor], torch.cuda.Event | None]:
        self.copies += 1
        if self.stream is None:
            return [h.to(self.device, copy=True) for _, h in self.host[i]], None
        with torch.cuda.stream(self.stream):
            out = [h.to(self.device, non_blocking=True) for _, h in self.host[i]]
            ev = torch.cuda.Event()
            ev.record(self.stream)
        return out, ev

    def _release(self, i: int) -> None:
        for t, h in self.host[i]:
            t.data = h

    def _pre_hook(self, i: int):
        def hook(module: torch.nn.Module, args: object) -> None:
            direction = 1 if self.last is None or i >= self.last else -1
            self.last = i
            if self.resident == i:
                return
            if self.resident is not None:
                self._release(self.resident)
            tensors, ev = self.pending.pop(i) if i in self.pending else self._copy(i)
            if ev is not None:
                current = torch.cuda.current_stream(self.device)
                current.wait_event(ev)
                for g in tensors:
                    g.record_stream(current)  # allocated on the copy stream, used here
            for (t, _), g in zip(self.host[i], tensors, strict=False):
                t.data = g
            self.resident = i
            self.pending.clear()
            j = i + direction
            if self.stream is not None and 0 <= j < len(self.blocks):
                self.pending[j] = self._copy(j)

        return hook

    def release_all(self) -> None:
        if self.resident is not None:
            self._release(self.resident)
        self.resident = self.last = None
        self.pending.clear()

    def remove(self) -> None:
        """Undo: every block back on the device, hooks removed."""
        for h in self.handles:
            h.remove()
        for pairs in self.host:
            for t, host_copy in pairs:
                t.data = host_copy.to(self.device)
        self.host = [[] for _ in self.blocks]
        self.pending.clear()


def enable_block_swap(
    model: torch.nn.Module, n_blocks: int, device: torch.device
) -> BlockSwapper | None:
    """Move everything but the last ``n_blocks`` blocks' frozen weights to ``device``.

    Call on a model that may still be on the CPU (so a 14B model never has to fit on the
    GPU whole); the swapped weights go to pinned host memory.
    """
    if device.type != "cuda":
        warnings.warn("block_swap only saves memory on a GPU; ignored on CPU", stacklevel=2)
        model.to(device)
        return None
    blocks = transformer_blocks(model)
    if not blocks:
        raise ValueError(f"{type(model).__name__} has no transformer blocks to swap")
    chosen = blocks[-n_blocks:] if n_blocks < len(blocks) else blocks
    swapper = BlockSwapper(chosen, device)  # first: moves the chosen blocks' weights to host
    keep = {id(t) for blk in chosen for t in [*blk.parameters(), *blk.buffers()]}
    for t in [*model.parameters(), *model.buffers()]:
        if id(t) not in keep:
            t.data = t.data.to(device)

    # A forward without autograd (validation loss, previews) has no backward to walk the
    # blocks back out, so its last block would stay on the card until the next training
    # step: release it when the whole model's forward ends. (Safe at the model level: no
    # tensor is saved for a backward, unlike in a block's post-hook under checkpointing.)
    def release_after_inference(module: torch.nn.Module, args: object, output: object) -> None:
        if not torch.is_grad_enabled():
            swapper.release_all()

    swapper.handles.append(model.register_forward_hook(release_after_inference))
    return swapper


# ---------------------------------------------------------------- selective checkpointing


def _saved_ops() -> frozenset:
    aten = torch.ops.aten
    names = (
        "mm",
        "addmm",
        "bmm",
        "_scaled_dot_product_cudnn_attention",
        "_scaled_dot_product_flash_attention",
        "_scaled_dot_product_efficient_attention",
        "_scaled_dot_product_flash_attention_for_cpu",
        "_scaled_dot_product_fused_attention_overrideable",
    )
    return frozenset(getattr(aten, n).default for n in names if hasattr(aten, n))


SAVED_OPS = _saved_ops()
# A matmul whose inner dimension is this small is recomputed, not kept: LoRA's up-projection
# (inner dimension = rank) writes an output as big as the layer's for rank/width of its FLOPs.
# Every base projection of Wan, Flux, SDXL and SD1.5 has an inner dimension of 320 or more.
RECOMPUTE_INNER_DIM = 256


def _inner_dim(op: Any, args: tuple[Any, ...]) -> int | None:
    aten = torch.ops.aten
    a = (
        args[1]
        if op is aten.addmm.default
        else args[0]
        if op in (aten.mm.default, aten.bmm.default)
        else None
    )
    return a.shape[-1] if isinstance(a, torch.Tensor) else None


def keep_op_output(op: Any, args: tuple[Any, ...]) -> bool:
    """Whether selective checkpointing keeps this op's output (else it is recomputed)."""
    if op not in SAVED_OPS:
        return False
    inner = _inner_dim(op, args)
    return inner is None or inner > RECOMPUTE_INNER_DIM


def _keep_matmuls_and_attention(ctx: Any, op: Any, *args: Any, **kwargs: Any) -> Any:
    from torch.utils.checkpoint import CheckpointPolicy

    return (
        CheckpointPolicy.MUST_SAVE
        if keep_op_output(op, args)
        else CheckpointPolicy.PREFER_RECOMPUTE
    )


def _selective_context() -> Any:
    from torch.utils.checkpoint import create_selective_checkpoint_contexts

    return create_selective_checkpoint_contexts(_keep_matmuls_and_attention)


def selective_checkpoint(module: torch.nn.Module, *args: Any) -> Any:
    """diffusers' ``gradient_checkpointing_func`` with PyTorch's selective activation
    checkpointing: the outputs of matmuls and attention (the FLOPs) are kept, and only the
    elementwise work between them (norms, modulation, RoPE, activations, LoRA scaling) runs
    again in the backward. It holds more memory than recomputing whole blocks and less than
    no checkpointing, and recomputes almost no FLOPs."""
    from torch.utils.checkpoint import checkpoint

    return checkpoint(module.__call__, *args, use_reentrant=False, context_fn=_selective_context)


# ---------------------------------------------------------------- partial checkpointing


def checkpoint_last_blocks(model: torch.nn.Module, n_blocks: int) -> int:
    """Recompute only the last ``n_blocks`` transformer blocks; keep the others' activations.

    Call after ``enable_gradient_checkpointing()``. Trades memory for the recompute time
    (a whole forward when every block is checkpointed) on cards with room to spare. The
    last blocks are the ones chosen because block swap swaps the last blocks, and a swapped
    block must be recomputed (its weights leave the device after its forward). UNets have
    no repeated blocks: left fully checkpointed. Returns the number recomputed.
    """
    blocks = transformer_blocks(model)
    if not blocks or n_blocks >= len(blocks):
        return len(blocks)
    chosen = {id(b) for b in blocks[len(blocks) - n_blocks :]} if n_blocks else set()
    for m in model.modules():
        recompute = getattr(m, "_gradient_checkpointing_func", None)
        if recompute is None:
            continue

        def partial(fn, *args, _recompute=recompute):
            return _recompute(fn, *args) if id(fn) in chosen else fn(*args)

        # diffusers calls this attribute for each checkpointed block
        m._gradient_checkpointing_func = partial
    return n_blocks


# ---------------------------------------------------------------- activation offload


class ActivationOffload:
    """Keep the tensors autograd saves during a forward pass in (pinned) host memory.

    Use it as a context manager around the forward (the backward runs outside). Under
    gradient checkpointing, torch saves each checkpointed block's *inputs* through the hooks
    of the enclosing context (the block's own activations go through the checkpoint's
    inner hooks and are recomputed), so what moves is one hidden state per block: for Wan
    14B at 480x832x81 those are most of the memory left after fp8 + block swap. Parameters
    and buffers of ``model`` stay put (autograd saves frozen weights for the input
    gradient), and so do small tensors; a tensor saved by several blocks (the text
    embedding, the timestep projection, RoPE) is copied once per forward.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        device: torch.device,
        min_bytes: int = 1 << 20,
        storage: str = "cpu",
    ):
        self.device = torch.device(device)
        if self.device.type == "cuda" and self.device.index is None:
            # tensors report "cuda:0": compare against the same spelling
            self.device = torch.device("cuda", torch.cuda.current_device())
        self.min_bytes = min_bytes
        self.storage = storage
        self.model = model
        self.pin = self.device.type == "cuda" and storage == "cpu"
        self.copies = 0
        self.bytes = 0
        self._hooks: Any = None
        self._seen: dict[tuple, torch.Tensor] = {}

    def _pack(self, t: torch.Tensor) -> Any:
        if (
            isinstance(t, torch.nn.Parameter)
            or t.device != self.device
            or t.numel() * t.element_size() < self.min_bytes
            or t.untyped_storage().data_ptr() in self._frozen
        ):
            return t
        key = (
            t.untyped_storage().data_ptr(),
            t.storage_offset(),
            tuple(t.shape),
            t.stride(),
            t.dtype,
            t._version,
        )
        host = self._seen.get(key)
        if host is None:
            host = torch.empty(t.shape, dtype=t.dtype, device=self.storage, pin_memory=self.pin)
            # stream-ordered: the device memory is not reused before this copy has run
            host.copy_(t, non_blocking=self.pin)
            self._seen[key] = host
            self.copies += 1
            self.bytes += t.numel() * t.element_size()
        return (self.device, host)

    @staticmethod
    def _unpack(packed: Any) -> torch.Tensor:
        if isinstance(packed, torch.Tensor):
            return packed
        device, host = packed
        return host.to(device, non_blocking=True)

    def __enter__(self) -> ActivationOffload:
        self._frozen = {
            t.untyped_storage().data_ptr()
            for t in [*self.model.parameters(), *self.model.buffers()]
        }
        self._seen = {}
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._hooks.__exit__(*exc)
        self._seen = {}
