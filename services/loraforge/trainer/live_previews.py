"""Previews rendered during training: uploaded to ``loras/<run>/previews/step-N/`` as they
appear and announced in the job's progress (``lf.training.progress`` and the job record), so
a user can look at step 500's renders while step 900 trains and stop a run that went wrong."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from loraforge.runtime.storage import Bucket, ObjectStore
from loraforge.trainer.run.layout import preview_key


def lora_artifact(obj: Any, kind: str) -> dict[str, Any]:
    """The run record's artifact entry for an object in ``loras/`` (a stored or listed object:
    anything with ``key``, ``size`` and ``sha256``)."""
    return {
        "bucket": "loras",
        "key": obj.key,
        "kind": kind,
        "size": obj.size,
        "sha256": obj.sha256 or "",
    }


def content_type(path: Path) -> str:
    """A preview's still (NN.png), contact strip (NN_strip.png) or clip (NN.mp4)."""
    return {".mp4": "video/mp4"}.get(path.suffix, "image/png")


class LivePreviews:
    """What has been uploaded so far (touched only from the worker's event loop thread)."""

    def __init__(self) -> None:
        self.artifacts: dict[str, dict[str, Any]] = {}  # object key -> artifact record
        self.by_step: dict[int, list[str]] = {}

    def upload(
        self, store: ObjectStore, prefix: str, rendered: Mapping[int, Sequence[Path]]
    ) -> int:
        """Upload previews of steps not uploaded yet; returns how many files went up."""
        n = 0
        for step, paths in sorted(dict(rendered).items()):  # the training thread adds steps
            if step in self.by_step:
                continue
            keys = []
            for path in paths:
                key = preview_key(prefix, step, path)
                stored = store.put_file(Bucket.LORAS, key, path, content_type=content_type(path))
                self.artifacts[key] = lora_artifact(stored, "preview")
                keys.append(stored.key)
                n += 1
            self.by_step[step] = keys
        return n

    def announce(self) -> dict[str, Any]:
        """Progress fields: the newest step's previews and every step's, by step."""
        if not self.by_step:
            return {}
        newest = max(self.by_step)
        return {
            "preview_step": newest,
            "preview_keys": self.by_step[newest],
            "previews": {str(s): keys for s, keys in sorted(self.by_step.items())},
        }
