"""``loraforge-train``: run one LoRA training, locally or as the process of a Kubernetes Job.

Local: ``loraforge-train --run-config run.yaml [--steps 1200 --rank 64 ...]``.
In a Job (``k8s_jobs.default_command``): ``loraforge-train --run RUN_ID`` runs the trainer
service's own pipeline on the run spec the service stored for RUN_ID (k8s_run.run_in_pod:
dataset download, training, evaluation, upload to ``loras/``, run.json), with settings from
the ``LORAFORGE_*`` environment; only ``--device`` and ``--models-dir`` apply there.
``--run RUN_ID --run-config-dir DIR`` instead trains the plain run config ``DIR/<RUN_ID>.json``
on local folders.

Exit codes: 0 succeeded, 2 bad input (message says what to fix), 3 cancelled (SIGTERM /
SIGINT: stops after the current step and writes a checkpoint; rerun with ``--resume latest``).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path
from typing import Any, Protocol

from loraforge.runtime.errors import InvalidInput, LoraforgeError
from loraforge.runtime.k8s_jobs import validate_run_id
from loraforge.trainer import k8s_run
from loraforge.trainer.config import RunConfig, resolve
from loraforge.trainer.train import Trainer, plan

# flag -> (RunConfig field, type, help)
_OVERRIDES: list[tuple[str, str, Any, str]] = [
    ("--preset", "preset", str, "base preset (see `loraforge presets`), e.g. wan2.1-t2v-14b"),
    ("--dataset", "dataset", str, "local dataset folder (videos/+captions/ or media + .txt)"),
    ("--output", "output_dir", str, "output folder for checkpoints and the LoRA file"),
    ("--name", "name", str, "file name stem of the LoRA (default: lora)"),
    ("--trigger", "trigger", str, "trigger word, recorded in the file's metadata"),
    ("--dataset-id", "dataset_id", str, "dataset id, recorded in the file's metadata"),
    ("--rank", "rank", int, "LoRA rank (family default if unset)"),
    (
        "--alpha",
        "alpha",
        float,
        "LoRA alpha; the update is scaled by alpha/rank (unset: the "
        "family's alpha/rank ratio at this rank)",
    ),
    ("--lr", "learning_rate", float, "learning rate"),
    ("--lr-scheduler", "lr_scheduler", str, "constant | cosine | linear"),
    ("--warmup-steps", "warmup_steps", int, "linear warm-up steps"),
    ("--steps", "steps", int, "optimizer steps (>= 800 recommended for real models)"),
    (
        "--epochs",
        "epochs",
        int,
        "passes over the training clips instead of --steps (steps = epochs x ceil(clips / batch))",
    ),
    (
        "--validation-split",
        "validation_split",
        float,
        "fraction of the clips trained on (default 0.9); the rest validates (1.0: none)",
    ),
    (
        "--max-validation-samples",
        "max_validation_samples",
        int,
        "most clips split off for validation (default 5)",
    ),
    (
        "--validation-dataset",
        "validation_dataset",
        str,
        "an explicit validation set folder (nothing is split off then)",
    ),
    ("--batch-size", "batch_size", int, "samples per micro-batch"),
    ("--grad-accum", "grad_accum", int, "micro-batches per optimizer step"),
    ("--resolution", "resolution", str, "480p | 720p | 512 | 768 | 1024 | WxH"),
    ("--frames", "frames", int, "frames per video sample, 4k+1 (Wan); 1 for image models"),
    ("--frame-sampling", "frame_sampling", str, "head | uniform | slide"),
    ("--target-fps", "target_fps", float, "resample clips to this frame rate first"),
    ("--repeats", "repeats", int, "times each sample appears per epoch"),
    ("--seed", "seed", int, "random seed (LoRA init, noise, timesteps, batch order)"),
    ("--timestep-sampling", "timestep_sampling", str, "uniform | logit_normal (flow models)"),
    ("--flow-shift", "flow_shift", float, "timestep shift for flow models"),
    ("--noise-offset", "noise_offset", float, "SD families: per-channel noise offset (~0.05)"),
    ("--expert", "expert", str, "Wan 2.2 A14B: both | high | low"),
    (
        "--checkpoint-every",
        "checkpoint_every",
        int,
        "steps between checkpoints (0: none; default about four per run)",
    ),
    (
        "--eval-every",
        "eval_every",
        int,
        "steps between validation-loss evaluations (0: none; default at every checkpoint)",
    ),
    ("--keep-checkpoints", "keep_checkpoints", int, "how many recent checkpoints to keep"),
    ("--resume", "resume", str, "'latest' or a checkpoint directory"),
    ("--cache-dir", "cache_dir", str, "latent / text-embedding cache folder"),
    ("--models-dir", "models_dir", str, "base weights folder (default LORAFORGE_MODELS__DIR)"),
    ("--device", "device", str, "auto | cpu | cuda | cuda:N"),
    ("--optimizer", "optimizer", str, "adamw | adamw8bit (8-bit needs bitsandbytes + CUDA)"),
    ("--block-swap", "block_swap", int, "transformer blocks kept on the CPU (GPU only)"),
    (
        "--checkpoint-blocks",
        "checkpoint_blocks",
        int,
        "recompute only the last N blocks (default all; needs --gradient-checkpointing)",
    ),
    ("--attention", "attention", str, "auto | cudnn | flash | efficient | math (CUDA SDPA kernel)"),
]
_BOOL_FLAGS: list[tuple[str, str, str]] = [
    (
        "--dora",
        "use_dora",
        "train DoRA (magnitude + direction); the file carries dora_scale in ComfyUI's "
        "convention, not with --fp8-base",
    ),
    (
        "--gradient-checkpointing",
        "gradient_checkpointing",
        "recompute activations (default: on for real presets on CUDA, off for tiny ones)",
    ),
    (
        "--selective-checkpointing",
        "selective_checkpointing",
        "checkpointing that keeps matmul/attention outputs, recomputes only elementwise ops",
    ),
    ("--compile-blocks", "compile_blocks", "torch.compile each transformer block (CUDA)"),
    ("--fp8-base", "fp8_base", "store frozen base Linear weights in float8 (14B models)"),
    (
        "--offload-activations",
        "offload_activations",
        "keep saved activations (block inputs) in pinned host memory (CUDA)",
    ),
]


class RunConfigSource(Protocol):
    """Where ``--run RUN_ID`` gets its run config from."""

    def fetch(self, run_id: str) -> dict[str, Any]: ...


class DirectoryRunConfigSource:
    def __init__(self, directory: Path):
        self.directory = Path(directory)

    def fetch(self, run_id: str) -> dict[str, Any]:
        path = self.directory / f"{run_id}.json"
        if not path.is_file():
            raise InvalidInput(f"no run config for run {run_id!r} at {path}")
        config: dict[str, Any] = json.loads(path.read_text())
        return config


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="loraforge-train",
        description="Train a LoRA for Wan / SDXL / Flux / SD1.5 from a captioned dataset.",
    )
    src = p.add_mutually_exclusive_group()
    src.add_argument(
        "--run-config",
        metavar="FILE",
        help="JSON or YAML run config (preset, dataset, output_dir, rank, ...)",
    )
    src.add_argument(
        "--run",
        metavar="RUN_ID",
        help="Kubernetes Job mode: run the trainer service's job RUN_ID from "
        "the run spec it stored in the object store",
    )
    p.add_argument(
        "--run-config-dir",
        metavar="DIR",
        help="with --run: train the run config DIR/<RUN_ID>.json instead",
    )
    for flag, _field, typ, help_ in _OVERRIDES:
        p.add_argument(flag, type=typ, default=None, help=help_)
    for flag, _field, help_ in _BOOL_FLAGS:
        p.add_argument(flag, action="store_true", default=None, help=help_)
    p.add_argument(
        "--print-config",
        action="store_true",
        help="print the resolved config (family defaults filled in) and exit",
    )
    return p


def _overrides(ns: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for flag, field, _t, _h in _OVERRIDES:
        v = getattr(ns, flag.lstrip("-").replace("-", "_"))
        if v is not None:
            out[field] = v
    for flag, field, _h in _BOOL_FLAGS:
        if getattr(ns, flag.lstrip("-").replace("-", "_")):
            out[field] = True
    return out


def main(argv: list[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    try:
        overrides = _overrides(ns)
        if ns.run:
            validate_run_id(ns.run)
            if not ns.run_config_dir:
                return _run_job(ns.run, overrides)
            source: RunConfigSource = DirectoryRunConfigSource(Path(ns.run_config_dir))
            data = source.fetch(ns.run)
            data.update(overrides)
            config = RunConfig.parse(data)
        elif ns.run_config:
            config = RunConfig.from_file(ns.run_config, overrides)
        else:
            config = RunConfig.parse(overrides)
        _, resolved = resolve(config)
        if ns.print_config:
            if config.epochs is not None or config.dataset.is_dir():
                resolved = planned(config)  # epochs -> steps needs the training set's size
            print(json.dumps(resolved.training_args(), indent=2, sort_keys=True))
            return 0
        return _train(config)
    except LoraforgeError as exc:
        print(f"loraforge-train: error: {exc}", file=sys.stderr)
        return 2


def planned(config: Any) -> Any:
    """The resolved config as the trainer will run it (the dataset scanned and split, epochs
    converted), without loading a model."""
    return plan(config)[1]


def _run_job(run_id: str, overrides: dict[str, Any]) -> int:
    """The pod of a Kubernetes Job: the run spec carries the parameters, not flags."""
    ignored = sorted(set(overrides) - {"device", "models_dir"})
    if ignored:
        raise InvalidInput(
            f"--run {run_id} takes its parameters from the run spec; only "
            f"--device and --models-dir apply (not {', '.join(ignored)})"
        )
    return k8s_run.run_in_pod(
        run_id, device=overrides.get("device"), models_dir=overrides.get("models_dir")
    )


def _train(config: Any) -> int:
    stop = {"flag": False}

    def on_signal(signum: int, _frame: Any) -> None:
        print(f"signal {signum}: stopping after the current step", file=sys.stderr)
        stop["flag"] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    def progress(step: int, total: int, loss: float) -> None:
        print(
            json.dumps(
                {
                    "event": "progress",
                    "step": step,
                    "total": total,
                    "progress": round(step / total, 4),
                    "loss": round(loss, 6),
                }
            ),
            flush=True,
        )

    trainer = Trainer(
        config,
        on_progress=progress,
        should_cancel=lambda _s: stop["flag"],
        log=lambda m: print(json.dumps({"event": "log", "message": m}), flush=True),
    )
    result = trainer.run()
    print(
        json.dumps(
            {
                "event": "result",
                "status": result.status,
                "step": result.step,
                "files": {k: str(v) for k, v in result.files.items()},
                "checkpoints": [str(c) for c in result.checkpoints],
                "seconds": round(result.seconds, 2),
            }
        ),
        flush=True,
    )
    return 0 if result.status == "succeeded" else 3


if __name__ == "__main__":
    sys.exit(main())
