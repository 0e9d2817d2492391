"""Cache of VAE latents and text-encoder outputs, computed once and reused by later runs.

Keys are content hashes of everything that determines the tensors: the model identity
(preset name + component configs + a fingerprint of the weight files, or the tiny seed),
the media file's content hash, the bucket (resolution) and the frame indices (frame count
and sampling), or the caption text. The same clip at another resolution or frame count is
a different entry; an edited caption is a new text entry.

:class:`CacheStore` is the storage interface. :class:`LocalCacheStore` keeps safetensors
files in a directory; the trainer service will back the same interface with the object
store (``models`` bucket for text/latent caches under the tenant's prefix) - see
``ObjectStoreCacheStore`` below, which is the marked extension point.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Protocol

import torch
from safetensors.torch import load_file, save_file


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
        return load_file(str(path))

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


class ObjectStoreCacheStore:  # pragma: no cover - service-layer extension point
    """TODO(service layer): back :class:`CacheStore` with ``loraforge.runtime.storage``
    (bucket ``models``, key ``<tenant>/<project>/cache/<kind>/<key>.safetensors``, written
    with ``put_if_absent_file`` so concurrent runs never half-write an entry)."""

    def __init__(self, *_: object, **__: object) -> None:
        raise NotImplementedError(
            "the object-store cache is provided by the trainer service; use LocalCacheStore"
        )


def model_fingerprint(preset_name: str, config_hash: str, weights_dir: Path | None,
                      tiny_seed: int | None) -> str:
    h = hashlib.sha256(f"{preset_name}|{config_hash}|{tiny_seed}".encode())
    if weights_dir is not None:
        for p in sorted(weights_dir.rglob("*.safetensors")):
            st = p.stat()
            h.update(f"{p.relative_to(weights_dir)}|{st.st_size}|{int(st.st_mtime)}".encode())
    return h.hexdigest()[:24]


def media_key(model_id: str, sample_key: str, variant: str) -> str:
    return hashlib.sha256(f"media|{model_id}|{variant}|{sample_key}".encode()).hexdigest()


def text_key(model_id: str, caption: str) -> str:
    return hashlib.sha256(f"text|{model_id}|{caption}".encode()).hexdigest()
