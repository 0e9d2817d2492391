"""A run's local checkpoints <-> ``loras/<run>/checkpoints/step-N/``.

The LoRA stays for every step (the evaluation scores them all); the resume state (optimizer,
scheduler, RNG: as big as the LoRA twice over) only for the newest step, so a redelivered job
(a crashed worker, an evicted pod) resumes from there. A step's files go up before its
``adapter.safetensors``, which marks the step as uploaded.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from loraforge.runtime.storage import Bucket, ObjectStore
from loraforge.trainer.live_previews import lora_artifact
from loraforge.trainer.run.layout import (
    checkpoint_key,
    checkpoint_step,
    checkpoints_prefix,
    step_of,
)
from loraforge.trainer.train import LORA_FILE, STATE_FILE

LORA_CONTENT_TYPE = "application/octet-stream"
RESUME_FILES = (STATE_FILE, "run_config.json")

# step -> a loader of that step's LoRA tensors (CheckpointEvaluator.run's ``states``)
StateLoaders = dict[int, Callable[[], Mapping[str, torch.Tensor]]]


class CheckpointSync:
    """Uploads the Trainer's checkpoints under ``root`` to the run's folder ``prefix``;
    ``uploaded`` (step -> artifact) is what the object store has, this delivery's and any
    earlier one's. Not thread-safe: one call at a time (the worker's ticks run in order)."""

    def __init__(self, store: ObjectStore, prefix: str, root: Path):
        self.store = store
        self.prefix = prefix
        self.root = root  # step-NNNNNNNN/ folders, as the Trainer writes them
        self.uploaded: dict[int, dict[str, Any]] = {}

    def artifacts(self) -> list[dict[str, Any]]:
        """The uploaded checkpoints' artifacts, by step."""
        return [self.uploaded[s] for s in sorted(self.uploaded)]

    def resume(self) -> int | None:
        """Find what an earlier delivery of this job uploaded and download the newest step
        that has its resume state into ``root``; that step (None: start from scratch)."""
        self.uploaded = self._remote()
        for step in sorted(self.uploaded, reverse=True):
            if self.store.stat(Bucket.LORAS, self._key(step, STATE_FILE)) is None:
                continue
            dest = self.root / f"step-{step:08d}"
            for name in (*RESUME_FILES, LORA_FILE):
                if self.store.stat(Bucket.LORAS, self._key(step, name)) is not None:
                    self.store.download(Bucket.LORAS, self._key(step, name), dest / name)
            return step
        return None

    def upload_new(self) -> None:
        """Upload the local steps not uploaded yet; drop the resume state of the step before."""
        for step, folder in sorted(self._local().items()):
            if step in self.uploaded or not (folder / LORA_FILE).is_file():
                continue
            try:
                stored = self._upload_step(step, folder)
            except FileNotFoundError:  # pruned (keep_checkpoints) while we looked
                continue
            self.uploaded[step] = lora_artifact(stored, "checkpoint")
            previous = max((s for s in self.uploaded if s < step), default=None)
            if previous is not None:  # the only older step that still has its state
                self.store.delete(Bucket.LORAS, self._key(previous, STATE_FILE))

    def loaders(self, before: int, downloads: Path) -> StateLoaders:
        """step -> loader of its LoRA tensors for every checkpoint before step ``before``: the
        local file, else (pruned locally) the uploaded one, downloaded into ``downloads``."""
        paths = {step: folder / LORA_FILE for step, folder in self._local().items()}
        states: StateLoaders = {}
        for step in sorted(set(paths) | set(self.uploaded)):
            if step >= before:
                continue

            def load(step: int = step) -> Mapping[str, torch.Tensor]:
                path = paths.get(step)
                if path is None or not path.is_file():
                    path = self.store.download(
                        Bucket.LORAS,
                        self.uploaded[step]["key"],
                        downloads / f"step-{step}.safetensors",
                    )
                tensors: Mapping[str, torch.Tensor] = load_file(str(path))
                return tensors

            states[step] = load
        return states

    def _upload_step(self, step: int, folder: Path) -> Any:
        for name in RESUME_FILES:
            if (folder / name).is_file():
                self.store.put_file(Bucket.LORAS, self._key(step, name), folder / name)
        # the step's LoRA in the family's layout (train.py: _save_checkpoint), which the
        # library promotes when a user picks this checkpoint
        for export in sorted(folder.glob("*.safetensors")):
            if export.name != LORA_FILE:
                self.store.put_file(
                    Bucket.LORAS,
                    self._key(step, export.name),
                    export,
                    content_type=LORA_CONTENT_TYPE,
                )
        return self.store.put_file(
            Bucket.LORAS,
            self._key(step, LORA_FILE),
            folder / LORA_FILE,
            content_type=LORA_CONTENT_TYPE,
        )

    def _local(self) -> dict[int, Path]:
        """step -> its folder under ``root``."""
        if not self.root.is_dir():
            return {}
        found = {step_of(d.name): d for d in self.root.glob("step-*")}
        return {step: d for step, d in found.items() if step is not None}

    def _remote(self) -> dict[int, dict[str, Any]]:
        found: dict[int, dict[str, Any]] = {}
        for obj in self.store.list(Bucket.LORAS, checkpoints_prefix(self.prefix)):
            step = checkpoint_step(self.prefix, obj.key, LORA_FILE)
            if step is not None:
                found[step] = lora_artifact(obj, "checkpoint")
        return found

    def _key(self, step: int, name: str) -> str:
        return checkpoint_key(self.prefix, step, name)
