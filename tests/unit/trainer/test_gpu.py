"""The trainer's CUDA-only paths (skipped without a GPU): block swap's copies and prefetch
stream, fp8 under bf16 autocast, the SDPA kernel choice. Self-contained (no conftest
fixtures) so it also runs on a bare GPU machine with ``--noconftest``."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def _train(dataset: Path, out: Path, **kw: object):
    from loraforge.trainer.config import RunConfig
    from loraforge.trainer.train import Trainer

    trainer = Trainer(
        RunConfig(
            preset="tiny-wan2.1-t2v",
            dataset=dataset,
            output_dir=out,
            steps=12,
            rank=4,
            learning_rate=1e-3,
            seed=5,
            device="cuda",
            optimizer="adamw",
            resolution="64x48",
            frames=9,
            **kw,
        )
    )
    return trainer, trainer.run()


def test_fp8_block_swap_and_partial_checkpointing_train_like_the_plain_run(tmp_path: Path) -> None:
    from loraforge.trainer.memory import transformer_blocks
    from loraforge.trainer.synthetic import write_video_dataset

    data = write_video_dataset(tmp_path / "data", clips=2, frames=9)
    _, plain_result = _train(data, tmp_path / "plain", gradient_checkpointing=True)
    saver, saver_result = _train(
        data,
        tmp_path / "saver",
        gradient_checkpointing=True,
        fp8_base=True,
        block_swap=2,
        checkpoint_blocks=2,
        attention="cudnn",
    )
    assert plain_result.status == saver_result.status == "succeeded"
    losses = torch.tensor(saver_result.losses)
    assert torch.isfinite(losses).all()
    # Same seed, same batches: fp8 weights move the loss curve a little, not its course.
    ref = torch.tensor(plain_result.losses)
    assert ((losses - ref).abs() / ref.abs()).max() < 0.25
    model = saver.models["transformer"]
    last = transformer_blocks(model)[-1]
    frozen = [p for p in last.parameters() if not p.requires_grad]
    lora = [p for p in last.parameters() if p.requires_grad]
    # Both blocks swapped; the backward ends on the first, so the last one's base weights are
    # back in pinned host memory. Its LoRA weights never left the GPU.
    assert frozen and all(p.device.type == "cpu" and p.is_pinned() for p in frozen)
    assert lora and all(p.device.type == "cuda" for p in lora)
    assert last.attn1.to_q.base_layer.weight.dtype == torch.float8_e4m3fn
    assert saver_result.files and all(Path(f).exists() for f in saver_result.files.values())


def test_activation_offload_lowers_peak_memory_and_keeps_gradients() -> None:
    from torch.utils.checkpoint import checkpoint

    from loraforge.trainer.memory import ActivationOffload

    torch.manual_seed(0)
    layers = torch.nn.Sequential(*[torch.nn.Linear(1024, 1024) for _ in range(8)]).cuda()
    layers.requires_grad_(False)
    x0 = torch.randn(8192, 1024, device="cuda", requires_grad=True)  # 32 MiB per block input

    def run(offload: bool) -> tuple[int, torch.Tensor]:
        x0.grad = None
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        with ActivationOffload(layers, torch.device("cuda")) if offload else torch.enable_grad():
            h = x0
            for layer in layers:
                h = checkpoint(lambda t, f=layer: torch.relu(f(t)), h, use_reentrant=False)
            loss = h.square().mean()
        loss.backward()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base, x0.grad.clone()

    plain_peak, plain_grad = run(False)
    off_peak, off_grad = run(True)
    torch.testing.assert_close(off_grad, plain_grad)
    assert off_peak < plain_peak - 4 * 32 * 2**20, (plain_peak, off_peak)


@pytest.mark.parametrize("attention", ["cudnn", "flash", "efficient"])
def test_selective_checkpointing_keeps_the_cuda_attention_kernels_output(
    attention: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On CUDA, SDPA dispatches to kernel-specific ops: each must be among the saved ones, or
    the attention would silently run again in the backward."""
    import copy

    from loraforge.trainer import memory

    monkeypatch.setattr(memory, "RECOMPUTE_INNER_DIM", 0)  # the tiny model's matmuls are small

    from peft import LoraConfig
    from torch.utils.flop_counter import FlopCounterMode

    from loraforge.trainer.kernels import attention_backend
    from loraforge.trainer.memory import selective_checkpoint
    from loraforge.trainer.presets import TINY_SEED
    from loraforge.trainer.wan import build_tiny

    model = build_tiny("t2v", TINY_SEED).transformer.to("cuda", torch.bfloat16)
    model.requires_grad_(False)
    model.add_adapter(
        LoraConfig(
            r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v"], init_lora_weights="gaussian"
        )
    )
    selective = copy.deepcopy(model)
    selective.enable_gradient_checkpointing(selective_checkpoint)

    def backward_flops(m: torch.nn.Module) -> int:
        g = torch.Generator("cuda").manual_seed(3)
        c = m.config
        x = torch.randn(
            1, c.in_channels, 3, 16, 16, generator=g, device="cuda", dtype=torch.bfloat16
        )
        text = torch.randn(1, 16, c.text_dim, generator=g, device="cuda", dtype=torch.bfloat16)
        with attention_backend(attention, torch.device("cuda")):
            out = m(
                hidden_states=x,
                timestep=torch.tensor([500], device="cuda"),
                encoder_hidden_states=text,
                return_dict=False,
            )[0]
            with FlopCounterMode(display=False) as counter:
                out.float().square().mean().backward()
        return counter.get_total_flops()

    assert backward_flops(selective) == backward_flops(model)
