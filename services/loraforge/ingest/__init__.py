"""Ingest: raw footage and photos in, training clips and keyframes out.

The media core (this package's modules) is pure: local files in, local files and typed results
out. The service around it handles storage, events and job state.

Exports resolve lazily: importing ``loraforge.ingest.errors`` (e.g. from the gateway, which has
no media extra) must not pull in OpenCV, PySceneDetect or numpy.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "process_source": "pipeline",
    "process_many": "pipeline",
    "IngestOptions": "options",
    "ShotOptions": "options",
    "ClipOptions": "options",
    "CutOptions": "options",
    "ArchiveLimits": "options",
    "MediaLimits": "options",
    "SourceResult": "models",
    "FileOutcome": "models",
    "Clip": "models",
    "ClipPlan": "models",
    "Shot": "models",
    "SkippedSegment": "models",
    "ProbeResult": "models",
    "extract_zip": "archive",
    "sha256_file": "hashing",
    "fetch_url": "url",
    "MediaTools": "tools",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'loraforge.ingest' has no attribute {name!r}")
    return getattr(importlib.import_module(f"loraforge.ingest.{module}"), name)
