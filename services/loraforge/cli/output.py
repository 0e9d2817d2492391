"""Shared CLI output: rich for people, `--json` for scripts, one error format for both."""

from __future__ import annotations

import json
import sys
from typing import Any, NoReturn

from rich.console import Console

console = Console(stderr=False)
err_console = Console(stderr=True)


def emit_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, sort_keys=True, default=str) + "\n")


def fail(message: str, *, as_json: bool = False, code: int = 1) -> NoReturn:
    if as_json:
        emit_json({"error": message})
    else:
        err_console.print(f"[red]error:[/red] {message}")
    raise SystemExit(code)
