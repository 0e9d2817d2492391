"""Cache of VAE latents and text-encoder outputs, computed once and reused by later runs.

Keys are content hashes of everything that determines the tensors: the model identity
(preset name + component configs + a fingerprint of the weight files, or the tiny seed),
the media file's content hash, the bucket (resolution) and the frame indices (frame count
and sampling), or the caption text. The same clip at another resolution or frame count is
a different entry; an edited caption is a new text entry.

:class:`CacheStore` is the storage interface. :class:`LocalCacheStore` keeps safetensors
files in a directory; :class:`ObjectStoreCacheStore` (what the trainer service uses) puts
the object store behind such a directory, so later runs and sweeps on any replica or
Kubernetes pod reuse the entries.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Protocol

import torch
from safetensors.torch import load_file, save_file

from loraforge.runtime.errors import LoraforgeError
from loraforge.runtime.storage import Bucket

log = logging.getLogger(__name__)


class CacheStore(Protocol):
    def get(self, kind: str, key: str) -> dict[str, torch.Tensor] | None: ...

    def put(self, kind: str, key: str, tensors: dict[str, torch.Tensor]) -> None: ...


class LocalCacheStore:
    """``<root>/<kind>/<key[:2]>/<key>.safetensors``, written atomically (temp + rename)."""

    def __init__(self, root: Path | str):
        self.root = Path(root)
        self.hits = 0
        self.misses = 0

    def _path(self, kind: str, key: str) -> Path:
        return self.root / kind / key[:2] / f"{key}.safetensors"

    def get(self, kind: str, key: str) -> dict[str, torch.Tensor] | None:
        path = self._path(kind, key)
        if not path.is_file():
            self.misses += 1
            return None
        self.hits += 1
        tensors: dict[str, Any] = load_file(str(path))
        return tensors

    def put(self, kind: str, key: str, tensors: dict[str, torch.Tensor]) -> None:
        path = self._path(kind, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        os.close(fd)
        try:
            save_file({k: v.contiguous() for k, v in tensors.items()}, tmp)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


class MemoryCacheStore:
    """No persistence (``cache_dir`` not set)."""

    def __init__(self) -> None:
        self.data: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
        self.hits = 0
        self.misses = 0

    def get(self, kind: str, key: str) -> dict[str, torch.Tensor] | None:
        got = self.data.get((kind, key))
        if got is None:
            self.misses += 1
        else:
            self.hits += 1
        return got

    def put(self, kind: str, key: str, tensors: dict[str, torch.Tensor]) -> None:
        self.data[(kind, key)] = tensors


class ObjectStoreCacheStore:
    """The object store as the shared cache, a local directory in front of it.

    Entries live in the ``models`` bucket under ``<prefix>/<kind>/<key[:2]>/<key>.safetensors``
    (the trainer service uses ``<tenant>/cache``: every run and sweep of a tenant shares its
    latents, and tenants never see each other's). Keys are content hashes, so an entry never
    changes: writes are put-if-absent, and a concurrent run that wrote the same entry first
    wins harmlessly. Reads fill the local directory, so one run reads each entry once.
    A failing object store never fails a run: the entry is recomputed (a miss).
    """

    def __init__(self, store: Any, prefix: str, local_dir: Path | str):
        self.store = store
        self.prefix = prefix.strip("/")
        self.local = LocalCacheStore(local_dir)
        self.hits = 0  # read from the object store
        self.local_hits = 0
        self.misses = 0
        self.uploads = 0

    def object_key(self, kind: str, key: str) -> str:
        return f"{self.prefix}/{kind}/{key[:2]}/{key}.safetensors"

    def get(self, kind: str, key: str) -> dict[str, torch.Tensor] | None:
        got = self.local.get(kind, key)
        if got is not None:
            self.local_hits += 1
            self._publish(kind, key)  # a local copy from before this store had it
            return got
        path = self.local._path(kind, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".part")
        os.close(fd)
        try:
            if self.store.stat(Bucket.MODELS, self.object_key(kind, key)) is None:
                self.misses += 1
                return None
            self.store.download(Bucket.MODELS, self.object_key(kind, key), tmp)
            tensors: dict[str, Any] = load_file(tmp)
            os.replace(tmp, path)
        except (LoraforgeError, OSError, ValueError, RuntimeError) as exc:
            log.warning(
                "cache entry %s/%s unreadable from the object store (%s): recomputing",
                kind,
                key,
                exc,
            )
            self.misses += 1
            return None
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        self.hits += 1
        return tensors

    def put(self, kind: str, key: str, tensors: dict[str, torch.Tensor]) -> None:
        self.local.put(kind, key, tensors)
        self._publish(kind, key)

    def _publish(self, kind: str, key: str) -> None:
        try:
            _, wrote = self.store.put_if_absent_file(
                Bucket.MODELS, self.object_key(kind, key), self.local._path(kind, key)
            )
        except (LoraforgeError, OSError) as exc:
            log.warning("cache entry %s/%s not uploaded (%s): it stays local", kind, key, exc)
            return
        self.uploads += int(wrote)


def model_fingerprint(
    preset_name: str, config_hash: str, weights_dir: Path | None, tiny_seed: int | None
) -> str:
    h = hashlib.sha256(f"{preset_name}|{config_hash}|{tiny_seed}".encode())
    if weights_dir is not None:
        for p in sorted(weights_dir.rglob("*.safetensors")):
            st = p.stat()
            h.update(f"{p.relative_to(weights_dir)}|{st.st_size}|{int(st.st_mtime)}".encode())
    return h.hexdigest()[:24]


# Bumped when the pixels a sample becomes change for the same file (2: EXIF orientation is
# applied to photos), so no latent of the old preprocessing is reused.
MEDIA_PREPROCESSING = 2


def media_key(model_id: str, sample_key: str, variant: str) -> str:
    return hashlib.sha256(
        f"media|{MEDIA_PREPROCESSING}|{model_id}|{variant}|{sample_key}".encode()
    ).hexdigest()


def text_key(model_id: str, caption: str) -> str:
    return hashlib.sha256(f"text|{model_id}|{caption}".encode()).hexdigest()
