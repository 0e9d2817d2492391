"""Dataset exports for trainers and hosted fine-tuning, each with a reader that validates it.

Exports work on local files (the service layer downloads clips and passes captions):
`export(fmt, items, out, **options)`; `read(fmt, path)` reads one back and checks it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from loraforge.captioning.exports import ai_toolkit, diffusion_pipe, kohya, musubi, seed, wan
from loraforge.captioning.exports.common import ExportItem, ExportResult
from loraforge.runtime.errors import InvalidInput

Exporter = Callable[..., ExportResult]  # (items, out, **options)
# (path, **options) -> (media file, or its name inside a zip; caption)
Reader = Callable[..., Sequence[tuple[Path | str, str]]]

_HANDLERS: dict[str, tuple[Exporter, Reader]] = {
    "seed": (seed.export_seed, seed.read_seed),
    "kohya": (kohya.export_kohya, kohya.read_kohya),
    "musubi": (musubi.export_musubi, musubi.read_musubi),
    "diffusion-pipe": (
        diffusion_pipe.export_diffusion_pipe,
        diffusion_pipe.read_diffusion_pipe,
    ),
    "ai-toolkit": (ai_toolkit.export_ai_toolkit, ai_toolkit.read_ai_toolkit),
    "wan-i2v-zip": (
        lambda items, out, **kw: wan.export_wan_zip(items, out, mode="i2v", **kw),
        lambda p, **kw: wan.read_wan_zip(p, mode="i2v", **kw),
    ),
    "wan-kf2v-zip": (
        lambda items, out, **kw: wan.export_wan_zip(items, out, mode="kf2v", **kw),
        lambda p, **kw: wan.read_wan_zip(p, mode="kf2v", **kw),
    ),
}
FORMATS = tuple(_HANDLERS)


def export(fmt: str, items: list[ExportItem], out: Path, **options: Any) -> ExportResult:
    if fmt not in FORMATS:
        raise InvalidInput(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")
    if not items:
        raise InvalidInput("nothing to export: the dataset has no captioned clips")
    return _HANDLERS[fmt][0](items, Path(out), **options)


def read(fmt: str, path: Path, **options: Any) -> list[tuple[Path | str, str]]:
    if fmt not in FORMATS:
        raise InvalidInput(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")
    return list(_HANDLERS[fmt][1](Path(path), **options))


__all__ = ["FORMATS", "ExportItem", "ExportResult", "export", "read"]
