"""fp8 base weights and block swap: numerics and gradients on CPU (the GPU figures live in
bench/README.md)."""

from __future__ import annotations

import copy

import pytest
import torch
from peft import LoraConfig

from loraforge.trainer.memory import (
    FP8,
    ActivationOffload,
    BlockSwapper,
    _Fp8Linear,
    checkpoint_last_blocks,
    fp8_base_weights,
    quantize_fp8,
    selective_checkpoint,
    transformer_blocks,
)
from loraforge.trainer.presets import TINY_SEED
from loraforge.trainer.wan import build_tiny

pytestmark = pytest.mark.skipif(FP8 is None, reason="torch without float8")


@pytest.mark.parametrize("std", [0.02, 0.002])
def test_scaled_fp8_is_accurate_at_any_weight_magnitude(std: float) -> None:
    g = torch.Generator().manual_seed(0)
    w = torch.randn(256, 512, generator=g) * std
    x = torch.randn(8, 512, generator=g)
    ref = x @ w.T
    q, scale = quantize_fp8(w)
    assert q.dtype == FP8 and scale.shape == (256, 1)

    def rel(y):
        return ((y - ref).norm() / ref.norm()).item()

    scaled = rel(x @ (q.float() * scale).T)
    plain = rel(x @ w.to(FP8).float().T)  # what an unscaled cast would compute
    assert scaled < 0.04
    assert scaled < plain
    if std < 0.01:  # most of the matrix falls into fp8's subnormals without a scale
        assert plain > 0.2


def test_fp8_linear_gradient_reaches_the_input_only() -> None:
    g = torch.Generator().manual_seed(1)
    w = torch.randn(64, 32, generator=g) * 0.05
    b = torch.randn(64, generator=g)
    q, scale = quantize_fp8(w)
    x = torch.randn(4, 32, generator=g, requires_grad=True)
    y = _Fp8Linear.apply(x, q, scale, b)
    y.square().sum().backward()
    x2 = x.detach().clone().requires_grad_(True)
    (torch.nn.functional.linear(x2, q.float() * scale, b)).square().sum().backward()
    torch.testing.assert_close(x.grad, x2.grad, rtol=1e-4, atol=1e-5)


def _tiny_wan_with_lora() -> torch.nn.Module:
    model = build_tiny("t2v", TINY_SEED).transformer
    model.requires_grad_(False)
    torch.manual_seed(0)
    model.add_adapter(
        LoraConfig(
            r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v"], init_lora_weights="gaussian"
        )
    )
    model.enable_gradient_checkpointing()
    model.train()
    return model


def _forward(model: torch.nn.Module) -> torch.Tensor:
    """The denoiser on a fixed small latent clip and text embedding."""
    g = torch.Generator().manual_seed(3)
    c = model.config
    x = torch.randn(1, c.in_channels, 3, 8, 8, generator=g)
    text = torch.randn(1, 16, c.text_dim, generator=g)
    return model(
        hidden_states=x, timestep=torch.tensor([500]), encoder_hidden_states=text, return_dict=False
    )[0]


def _loss_and_grads(model: torch.nn.Module) -> tuple[float, dict[str, torch.Tensor]]:
    loss = _forward(model).square().mean()
    loss.backward()
    return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def test_fp8_wan_blocks_only_and_trains() -> None:
    model = _tiny_wan_with_lora()
    n = fp8_base_weights(model)
    blocks = transformer_blocks(model)
    assert n > 0 and blocks[0].attn1.to_q.base_layer.weight.dtype == FP8
    assert model.condition_embedder.time_embedder.linear_1.weight.dtype != FP8
    _, grads = _loss_and_grads(model)
    lora_b = [gr for k, gr in grads.items() if "lora_B" in k]  # B starts at 0, so A's grad is 0
    assert lora_b and all(gr.abs().sum() > 0 for gr in lora_b)


def test_block_swap_gives_the_same_gradients_and_releases_weights() -> None:
    model = _tiny_wan_with_lora()
    ref = copy.deepcopy(model)
    blocks = transformer_blocks(model)
    # device == storage == CPU: the hook logic runs exactly as on a GPU, with copies.
    swapper = BlockSwapper(blocks, torch.device("cpu"))
    loss, grads = _loss_and_grads(model)
    ref_loss, ref_grads = _loss_and_grads(ref)
    assert loss == pytest.approx(ref_loss, rel=1e-6)
    assert grads.keys() == ref_grads.keys()
    for k in grads:
        torch.testing.assert_close(grads[k], ref_grads[k], rtol=1e-5, atol=1e-7)
    # Forward copied every block in; the backward's recompute ran in reverse order and
    # found the last block still resident, so it copied one fewer.
    assert swapper.copies == 2 * len(blocks) - 1
    assert swapper.resident == 0
    swapper.release_all()
    for pairs in swapper.host:
        for t, h in pairs:
            assert t.data_ptr() == h.data_ptr()
    # LoRA weights never left: the optimizer's parameters are the same tensors.
    lora = [p for blk in blocks for p in blk.parameters() if p.requires_grad]
    assert lora and all(p.grad is not None for p in lora)


@pytest.mark.parametrize("n", [0, 1])
def test_checkpoint_last_blocks_recomputes_only_those(n: int) -> None:
    model = _tiny_wan_with_lora()
    blocks = transformer_blocks(model)
    assert checkpoint_last_blocks(model, n) == n
    calls = [0] * len(blocks)
    for i, blk in enumerate(blocks):
        blk.register_forward_pre_hook(lambda m, a, i=i: calls.__setitem__(i, calls[i] + 1))
    _, grads = _loss_and_grads(model)
    # A recomputed block runs twice (forward, then again inside backward).
    assert calls == [1] * (len(blocks) - n) + [2] * n
    ref = _tiny_wan_with_lora()
    _, ref_grads = _loss_and_grads(ref)
    for k in grads:
        torch.testing.assert_close(grads[k], ref_grads[k], rtol=1e-5, atol=1e-7)


def test_checkpoint_blocks_must_cover_block_swap() -> None:
    from loraforge.runtime.errors import InvalidInput
    from loraforge.trainer.config import RunConfig, resolve

    with pytest.raises(InvalidInput, match="raise checkpoint_blocks"):
        resolve(
            RunConfig(
                preset="tiny-wan2.1-t2v",
                dataset="d",
                output_dir="o",
                block_swap=2,
                checkpoint_blocks=1,
            )
        )
    with pytest.raises(InvalidInput, match="needs gradient_checkpointing"):
        resolve(
            RunConfig(
                preset="tiny-wan2.1-t2v",
                dataset="d",
                output_dir="o",
                gradient_checkpointing=False,
                checkpoint_blocks=1,
            )
        )


def test_block_options_are_refused_for_unets() -> None:
    from loraforge.runtime.errors import InvalidInput
    from loraforge.trainer.config import RunConfig, resolve

    for option in ({"block_swap": 2}, {"checkpoint_blocks": 2}):
        with pytest.raises(InvalidInput, match="sdxl is a UNet"):
            resolve(RunConfig(preset="tiny-sdxl", dataset="d", output_dir="o", **option))


def test_activation_offload_moves_block_inputs_not_weights_and_keeps_gradients() -> None:
    model = _tiny_wan_with_lora()
    ref = copy.deepcopy(model)
    blocks = transformer_blocks(model)
    block_inputs: list[torch.Tensor] = []
    for blk in blocks:
        blk.register_forward_pre_hook(
            lambda m, args: (
                block_inputs.append(args[0]) if len(block_inputs) < len(blocks) else None
            )
        )
    # device == storage == CPU: the hooks run as on a GPU, with copies to "host" memory.
    offload = ActivationOffload(model, torch.device("cpu"), min_bytes=1)
    packed: list[tuple[torch.Tensor, bool]] = []  # (saved tensor, moved to host?)
    pack = offload._pack

    def spy(t: torch.Tensor) -> object:
        out = pack(t)
        packed.append((t, not isinstance(out, torch.Tensor)))
        return out

    offload._pack = spy  # type: ignore[method-assign]

    with offload:
        out = _forward(model)
    loss = out.square().mean()
    loss.backward()
    ref_loss, ref_grads = _loss_and_grads(ref)
    assert loss.item() == pytest.approx(ref_loss, rel=1e-6)
    for n, p in model.named_parameters():
        if p.requires_grad:
            torch.testing.assert_close(p.grad, ref_grads[n], rtol=1e-5, atol=1e-7)

    frozen = {t.untyped_storage().data_ptr() for t in [*model.parameters(), *model.buffers()]}
    moved = [t for t, host in packed if host]
    kept = [t for t, host in packed if not host]
    assert moved and kept  # frozen weights are saved too (for the input gradient): they stay
    assert not any(
        isinstance(t, torch.nn.Parameter) or t.untyped_storage().data_ptr() in frozen for t in moved
    )
    # every checkpointed block's input went to host memory ...
    ptrs = {t.untyped_storage().data_ptr() for t in moved}
    assert all(h.untyped_storage().data_ptr() in ptrs for h in block_inputs)
    # ... and a tensor every block saves (the text embedding) was copied once
    assert offload.copies < len(moved)


def test_selective_checkpointing_recomputes_no_matmul_or_attention(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from torch.utils.flop_counter import FlopCounterMode

    from loraforge.trainer import memory

    def backward_flops(model: torch.nn.Module) -> tuple[int, dict[str, torch.Tensor]]:
        out = _forward(model)
        with FlopCounterMode(display=False) as counter:
            out.square().mean().backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
        return counter.get_total_flops(), grads

    full = _tiny_wan_with_lora()  # whole blocks recomputed
    plain = copy.deepcopy(full)
    plain.disable_gradient_checkpointing()
    selective = copy.deepcopy(full)
    selective.enable_gradient_checkpointing(selective_checkpoint)
    calls = [0]
    for blk in transformer_blocks(selective):
        blk.register_forward_pre_hook(lambda m, a: calls.__setitem__(0, calls[0] + 1))
    full_flops, _ = backward_flops(full)
    plain_flops, plain_grads = backward_flops(plain)
    # The tiny model is 24 wide: scale the "LoRA up-projection" threshold (inner dim <= 256 is
    # recomputed) down to its rank 4, so base projections are kept and LoRA-B ones recomputed.
    monkeypatch.setattr(memory, "RECOMPUTE_INNER_DIM", 4)
    sel_flops, sel_grads = backward_flops(selective)
    assert calls[0] == 2 * len(transformer_blocks(selective))  # checkpointed: run again
    assert full_flops > plain_flops  # the recomputed forward's matmuls and attention
    # only the rank-4 up-projections run again: a sliver of a whole recompute
    assert plain_flops < sel_flops < plain_flops + 0.25 * (full_flops - plain_flops)
    for k in plain_grads:
        torch.testing.assert_close(sel_grads[k], plain_grads[k], rtol=1e-5, atol=1e-7)
    selective.zero_grad(set_to_none=True)
    monkeypatch.setattr(memory, "RECOMPUTE_INNER_DIM", 0)  # keep every matmul's output
    assert backward_flops(selective)[0] == plain_flops


def test_auto_attention_kernel_per_card_and_family() -> None:
    from loraforge.trainer.kernels import resolve_attention

    # Hopper: cuDNN first, except Flux, whose cuDNN backward crashed on an H200 (kernels.py)
    assert resolve_attention("auto", 9, "wan") == "cudnn"
    assert resolve_attention("auto", 9, "sdxl") == "cudnn"
    assert resolve_attention("auto", 9, "flux") == "flash"
    # elsewhere PyTorch's own order; an explicit choice always wins
    assert resolve_attention("auto", 8, "wan") is None
    assert resolve_attention("efficient", 9, "flux") == "efficient"
