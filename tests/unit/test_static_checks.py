"""Properties of the code base itself (issue 20): what the gateway imports, where project
imports sit, and that a module's dotted name is its file's path.

Fast and offline: one subprocess that imports the gateway, an AST walk over the package and
a look at the packaging configuration.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ROOT / "services"
PACKAGE = SERVICES / "loraforge"
GENERATED = PACKAGE / "v1"  # `make proto`

# The gateway image installs neither the ML nor the media stack (pyproject's `gateway` extra):
# importing the app must not reach them, not even through a module-level import of a shared
# module. Pillow is allowed (seed 004 zips are checked at upload).
GATEWAY_FORBIDDEN = (
    "torch",
    "numpy",
    "cv2",
    "dlib",
    "diffusers",
    "transformers",
    "peft",
    "onnxruntime",
    "sklearn",
    "scenedetect",
    "rapidocr_onnxruntime",
)

# Project imports inside a function: each one is an exception to "project-level imports at
# module top" with its reason (an import cycle not yet untangled, or a module whose imports
# are heavy optional libraries the importing module must load without). A list to shrink:
# an entry that no longer matches an import fails the test too, so it is removed with the
# import it excused. Keys: (importing module, module imported from).
ALLOWLIST: dict[tuple[str, str], str] = {
    ("loraforge.cli.run_cmd", "loraforge.stack.examples"): (
        "numpy, only for a run without footage (the example clips)"
    ),
    ("loraforge.cli.sweep_cmd", "loraforge.trainer.config"): "torch (trainer extra)",
    ("loraforge.cli.sweep_cmd", "loraforge.trainer.presets"): "torch (trainer extra)",
    ("loraforge.cli.sweep_cmd", "loraforge.trainer.sweep_trials"): "torch (trainer extra)",
    ("loraforge.cli.train_cmd", "loraforge.trainer.config"): "torch (trainer extra)",
    ("loraforge.cli.train_cmd", "loraforge.trainer.presets"): "torch (trainer extra)",
    ("loraforge.render.comfyui", "loraforge.trainer.flux"): (
        "torch: the CLI exports ComfyUI workflows without the ML extra"
    ),
    ("loraforge.render.comfyui", "loraforge.trainer.presets"): (
        "torch: the CLI exports ComfyUI workflows without the ML extra"
    ),
    ("loraforge.trainer.preset_table", "loraforge.trainer.presets"): (
        "torch, only when training; presets imports the table (cycle)"
    ),
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(SERVICES).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _package_files() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if GENERATED not in p.parents)


def _imported_module(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> list[str]:
    """The project modules a statement imports from (relative imports resolved)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.split(".")[0] == "loraforge"]
    if node.level:
        base = module.split(".")
        if not is_package:
            base = base[:-1]
        base = base[: len(base) - (node.level - 1)]
        if node.module:
            return [".".join([*base, node.module])]
        return [".".join([*base, a.name]) for a in node.names]  # `from . import x`
    if (node.module or "").split(".")[0] == "loraforge":
        return [node.module or ""]
    return []


def _function_level_imports() -> dict[tuple[str, str], list[str]]:
    """(module, imported) -> ["path:line", ...] for project imports inside a function body."""
    found: dict[tuple[str, str], list[str]] = {}
    for path in _package_files():
        module = _module_name(path)
        is_package = path.name == "__init__.py"
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        functions = [
            n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
        ]
        for fn in functions:
            for node in ast.walk(fn):
                if not isinstance(node, (ast.Import, ast.ImportFrom)):
                    continue
                for imported in _imported_module(node, module, is_package):
                    where = f"{path.relative_to(ROOT)}:{node.lineno}"
                    spots = found.setdefault((module, imported), [])
                    if where not in spots:  # a nested function is walked twice
                        spots.append(where)
    return found


def test_the_gateway_imports_no_ml_or_media_stack() -> None:
    code = (
        "import json, sys, loraforge.gateway.main, loraforge.gateway.app; "
        "print(json.dumps(sorted(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    loaded = {name.split(".")[0] for name in json.loads(out)}
    reached = sorted(loaded.intersection(GATEWAY_FORBIDDEN))
    assert not reached, (
        f"importing the gateway (main, app) loads {reached}: a module the gateway imports pulls "
        "them in at module level; import them inside the function that needs them, or move "
        "that function out of the modules the gateway imports"
    )


def test_project_imports_are_at_module_top() -> None:
    found = _function_level_imports()
    hidden = {k: v for k, v in found.items() if k not in ALLOWLIST}
    assert not hidden, (
        "project imports inside functions (move them to the module top; break a cycle by "
        "moving the function both sides need, not by hiding the import):\n"
        + "\n".join(f"  {m} imports {i} at {', '.join(w)}" for (m, i), w in sorted(hidden.items()))
    )
    stale = sorted(k for k in ALLOWLIST if k not in found)
    assert not stale, f"ALLOWLIST entries that match no import any more; remove them: {stale}"


def test_the_allowlist_gives_each_exception_a_reason() -> None:
    missing = sorted(k for k, why in ALLOWLIST.items() if not why.strip())
    assert not missing, f"ALLOWLIST entries without a reason: {missing}"


def test_every_module_file_is_at_its_dotted_path() -> None:
    """A traceback's path is where grep finds the module: loraforge.x.y is
    services/loraforge/x/y.py, with no packaging that maps one folder onto another name."""
    assert not (ROOT / "setup.py").exists(), "setup.py is back: packaging lives in pyproject.toml"
    assert not (ROOT / "setup.cfg").exists(), "setup.cfg is back: packaging lives in pyproject.toml"
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "package-dir" not in setuptools, "no package-dir mapping: the folder is the import name"
    assert setuptools["packages"]["find"]["where"] == ["services"]

    code = (
        "import importlib.util, json, loraforge\n"
        "names = json.loads(input())\n"
        "print(json.dumps({n: importlib.util.find_spec(n).origin for n in names}))"
    )
    packages = sorted(
        _module_name(p) for p in PACKAGE.glob("*/__init__.py") if p.parent != GENERATED
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        input=json.dumps(["loraforge", *packages]),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd="/",  # the installed package, not whatever the working directory holds
    ).stdout
    for name, origin in json.loads(out).items():
        expected = SERVICES.joinpath(*name.split("."), "__init__.py")
        assert Path(origin) == expected, f"{name} is imported from {origin}, not {expected}"
    for path in _package_files():
        assert all(
            (folder / "__init__.py").exists()
            for folder in path.parents
            if PACKAGE in (folder, *folder.parents)
        ), f"{path}: a folder above it has no __init__.py (a namespace package by accident)"
