"""GPU Job templates and loraforge.runtime.k8s_jobs.build_gpu_job: same shape, valid for
Kubernetes, scheduled only on >= 24 GB-class GPUs, non-root, bounded."""

from __future__ import annotations

import sys

import pytest
from deploy_support import JOB_TEMPLATES, fill_template, k8s_validate

from loraforge.runtime.errors import InvalidInput
from loraforge.runtime.k8s_jobs import (
    DEFAULT_MIN_GPU_MEMORY_MIB,
    GPU_MEMORY_LABEL,
    MAX_RUN_ID_LENGTH,
    InvalidJobSpec,
    InvalidRunId,
    build_gpu_job,
    job_name,
    validate_run_id,
)

IMAGES = {"train": "loraforge/trainer:latest", "render": "loraforge/render:latest"}
KINDS = ("train", "render")


def _built(kind, run_id="abc123", **kw):
    return build_gpu_job(kind, run_id, IMAGES[kind], "loraforge", **kw)


def _gpu_job_invariants(job, kind, run_id, min_mib=DEFAULT_MIN_GPU_MEMORY_MIB):
    assert job["apiVersion"] == "batch/v1" and job["kind"] == "Job"
    assert job["metadata"]["name"] == f"loraforge-{kind}-{run_id}"
    spec = job["spec"]
    assert spec["backoffLimit"] >= 0
    assert spec["activeDeadlineSeconds"] > 0
    assert spec["ttlSecondsAfterFinished"] > 0
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["automountServiceAccountToken"] is False

    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ]
    assert terms == [
        {
            "matchExpressions": [
                {"key": "nvidia.com/gpu.memory", "operator": "Gt", "values": [str(min_mib)]}
            ]
        }
    ]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod[
        "tolerations"
    ]

    psc = pod["securityContext"]
    assert psc["runAsNonRoot"] is True and psc["runAsUser"] != 0
    assert psc["seccompProfile"] == {"type": "RuntimeDefault"}
    (c,) = pod["containers"]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert {"cpu", "memory"} <= set(c["resources"]["requests"])
    assert "memory" in c["resources"]["limits"]
    sc = c["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"]["drop"] == ["ALL"]
    assert sc["readOnlyRootFilesystem"] is True
    assert {"secretRef": {"name": "loraforge-secrets"}} in c["envFrom"]
    assert {"configMapRef": {"name": "loraforge-config"}} in c["envFrom"]
    assert {m["mountPath"] for m in c["volumeMounts"]} >= {"/tmp", "/dev/shm"}
    labels = spec["template"]["metadata"]["labels"]
    assert (
        labels["loraforge.io/run-id"] == run_id
        and labels["app.kubernetes.io/part-of"] == "loraforge"
    )


@pytest.mark.parametrize("kind", KINDS)
def test_template_filled_with_a_run_id_is_a_valid_gpu_job(kind):
    job = fill_template(kind, "abc123")
    k8s_validate(job)
    _gpu_job_invariants(job, kind, "abc123")
    assert "RUN_ID" not in str(job)


def test_templates_run_what_the_runtime_expects():
    train = fill_template("train", "r-42")["spec"]["template"]["spec"]["containers"][0]
    assert train["command"] == ["loraforge-train", "--run", "r-42"]
    render = fill_template("render", "r-42")["spec"]["template"]["spec"]["containers"][0]
    assert render["command"] == ["python", "-m", "loraforge.render.worker", "--job", "r-42"]


@pytest.mark.parametrize("kind", KINDS)
def test_build_gpu_job_matches_the_template_exactly(kind):
    assert _built(kind, "abc123") == fill_template(kind, "abc123"), (
        f"build_gpu_job({kind!r}) and {JOB_TEMPLATES[kind].name} drifted apart"
    )


@pytest.mark.parametrize("kind", KINDS)
def test_build_gpu_job_with_options_stays_valid(kind):
    job = _built(
        kind,
        "0f8e2c1a-9b7d-4e6f-a1b2-c3d4e5f60718",
        command=["loraforge-train", "--run", "x"],
        env={"LORAFORGE_LOG__LEVEL": "DEBUG", "HF_HOME": "/scratch/hf"},
        min_gpu_memory_mib=40000,
        cpu_request="8",
        memory_request="32Gi",
        memory_limit="64Gi",
        cpu_limit="16",
        labels={"loraforge.io/tenant": "acme"},
        annotations={"loraforge.io/requested-by": "someone@example.com"},
        models_pvc=None,
    )
    k8s_validate(job)
    _gpu_job_invariants(job, kind, "0f8e2c1a-9b7d-4e6f-a1b2-c3d4e5f60718", min_mib=40000)
    c = job["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in c["env"]}
    assert env["LORAFORGE_LOG__LEVEL"] == "DEBUG" and env["HF_HOME"] == "/scratch/hf"
    assert [e["name"] for e in c["env"]].count("HF_HOME") == 1
    assert c["resources"]["limits"]["cpu"] == "16"
    assert "/models" not in {m["mountPath"] for m in c["volumeMounts"]}
    assert job["spec"]["template"]["metadata"]["labels"]["loraforge.io/tenant"] == "acme"


def test_default_threshold_admits_24gb_class_cards_and_rejects_20gb():
    # NVML totals in MiB as GPU feature discovery labels them.
    admitted = {
        "A10/A10G": 23028,
        "L4": 23034,
        "RTX 4090": 24564,
        "RTX 3090": 24576,
        "A100 40GB": 40960,
    }
    rejected = {"RTX A4500": 20470, "RTX 4000 Ada": 20475, "T4": 15360, "A4000": 16376}
    assert GPU_MEMORY_LABEL == "nvidia.com/gpu.memory"
    assert all(mib > DEFAULT_MIN_GPU_MEMORY_MIB for mib in admitted.values())  # operator Gt
    assert all(mib <= DEFAULT_MIN_GPU_MEMORY_MIB for mib in rejected.values())


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "ABC123",
        "run_1",
        "-abc",
        "abc-",
        "a.b",
        "a b",
        "ü",
        "x" * (MAX_RUN_ID_LENGTH + 1),
        "../x",
    ],
)
def test_invalid_run_ids_are_refused_with_invalid_input(bad):
    with pytest.raises(InvalidRunId) as info:
        build_gpu_job("train", bad, IMAGES["train"], "loraforge")
    assert isinstance(info.value, InvalidInput)
    assert "run id" in str(info.value)


def test_longest_run_id_still_fits_a_job_name():
    run_id = "a" * MAX_RUN_ID_LENGTH
    assert validate_run_id(run_id) == run_id
    for kind in KINDS:
        assert len(job_name(kind, run_id)) <= 63
        k8s_validate(_built(kind, run_id))


@pytest.mark.parametrize(
    "kw",
    [
        {"kind": "infer"},
        {"namespace": "Bad_NS"},
        {"image": ""},
        {"min_gpu_memory_mib": "24000"},
        {"gpu_count": 0},
        {"cpu_request": "four"},
        {"env": {"1BAD": "x"}},
        {"labels": {"loraforge.io/x": "not valid!"}},
        {"command": []},
    ],
)
def test_invalid_parameters_are_refused_with_invalid_input(kw):
    args = {"kind": "train", "run_id": "abc", "image": IMAGES["train"], "namespace": "loraforge"}
    args.update(kw)
    with pytest.raises(InvalidJobSpec) as info:
        build_gpu_job(**args)
    assert isinstance(info.value, InvalidInput)


def test_module_does_not_import_the_kubernetes_client():
    import importlib
    import subprocess

    code = (
        "import sys; import loraforge.runtime.k8s_jobs as m; "
        "m.build_gpu_job('train', 'x1', 'img:1', 'ns'); "
        "assert 'kubernetes' not in sys.modules, 'kubernetes client was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    importlib.import_module("loraforge.runtime.k8s_jobs")
