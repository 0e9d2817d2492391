"""An in-memory stand-in for the object store (the calls the library makes), and a finished
training run as the trainer commits it (run.json + files), for the library's rules."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from loraforge.runtime.errors import InvalidInput, NotFound
from loraforge.runtime.storage import Bucket, StoredObject


class MemoryStore:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], bytes] = {}

    def _k(self, bucket: Any, key: str) -> tuple[str, str]:
        return Bucket(bucket).value, key

    def put_bytes(self, bucket: Any, key: str, data: bytes, content_type: str = "") -> StoredObject:
        self.objects[self._k(bucket, key)] = bytes(data)
        return StoredObject(Bucket(bucket).value, key, len(data), hashlib.sha256(data).hexdigest())

    def put_json(self, bucket: Any, key: str, value: Any) -> StoredObject:
        return self.put_bytes(bucket, key, json.dumps(value, default=str).encode())

    def put_file(
        self, bucket: Any, key: str, path: Path, *, sha256: str | None = None, **_: Any
    ) -> StoredObject:
        data = Path(path).read_bytes()
        if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
            raise InvalidInput("sha256 mismatch")
        return self.put_bytes(bucket, key, data)

    def put_if_absent_file(
        self, bucket: Any, key: str, path: Path, **kw: Any
    ) -> tuple[StoredObject, bool]:
        st = self.stat(bucket, key)
        return (st, False) if st is not None else (self.put_file(bucket, key, path, **kw), True)

    def stat(self, bucket: Any, key: str) -> StoredObject | None:
        data = self.objects.get(self._k(bucket, key))
        return None if data is None else StoredObject(Bucket(bucket).value, key, len(data))

    def get_bytes(self, bucket: Any, key: str) -> bytes:
        try:
            return self.objects[self._k(bucket, key)]
        except KeyError:
            raise NotFound(key) from None

    def get_json(self, bucket: Any, key: str) -> Any:
        return json.loads(self.get_bytes(bucket, key))

    def download(self, bucket: Any, key: str, path: Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.get_bytes(bucket, key))
        return path

    def list(self, bucket: Any, prefix: str, recursive: bool = True):
        b = Bucket(bucket).value
        for (ob, key), data in sorted(self.objects.items()):
            if ob == b and key.startswith(prefix):
                yield StoredObject(b, key, len(data))

    def delete(self, bucket: Any, key: str) -> None:
        self.objects.pop(self._k(bucket, key), None)


TENANT, PROJECT, RUN = "acme", "fx", "run0001"


def write_run(
    store: MemoryStore,
    *,
    run_id: str = RUN,
    steps: int = 8,
    best: int = 4,
    exported: tuple[int, ...] = (4, 6, 8),
    tenant: str = TENANT,
    project: str = PROJECT,
) -> dict[str, Any]:
    """A finished run: checkpoints at 2, 4, 6, 8 (LoRA exports only at `exported`), best and
    last files, the evaluation rows and validation losses."""
    prefix = f"{tenant}/{project}/runs/{run_id}"
    for s in (2, 4, 6, 8):
        store.put_bytes("loras", f"{prefix}/checkpoints/step-{s}/adapter.safetensors", b"raw%d" % s)
        if s in exported:
            store.put_bytes(
                "loras", f"{prefix}/checkpoints/step-{s}/lora.safetensors", b"comfy-step-%d" % s
            )
    store.put_bytes("loras", f"{prefix}/best.safetensors", b"comfy-step-%d" % best)
    store.put_bytes("loras", f"{prefix}/last.safetensors", b"comfy-step-%d" % steps)
    record = {
        "job_id": run_id,
        "run_prefix": prefix,
        "steps": steps,
        "best_step": best,
        "best_reason": f"lowest validation loss at step {best}",
        "best_key": f"{prefix}/best.safetensors",
        "last_key": f"{prefix}/last.safetensors",
        "files": {
            "best": {"transformer": f"{prefix}/best.safetensors"},
            "last": {"transformer": f"{prefix}/last.safetensors"},
        },
        "base_preset": "tiny-wan2.1-flf2v",
        "family": "wan",
        "lora_type": "effect",
        "trigger": "s86b5p",
        "recommended_weight": 0.9,
        "strength_reason": "default",
        "dataset_id": "ds-1",
        "dataset_hash": "abc",
        "training_args": {"rank": 4, "steps": steps},
        "metrics": {"eval_losses": {"2": 0.5, "4": 0.3, "6": 0.35, "8": 0.4}},
        "evaluation": {
            "basis": "validation loss",
            "checkpoints": [
                {"step": s, "val_loss": v} for s, v in ((2, 0.5), (4, 0.3), (6, 0.35), (8, 0.4))
            ],
            "previews": {"6": [f"{prefix}/previews/step-6/00.png"]},
        },
        "checkpoints": {
            str(s): f"{prefix}/checkpoints/step-{s}/adapter.safetensors" for s in (2, 4, 6, 8)
        },
    }
    store.put_json("loras", f"{prefix}/run.json", record)
    return record


@pytest.fixture
def mem_store() -> MemoryStore:
    return MemoryStore()
