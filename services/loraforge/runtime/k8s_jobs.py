"""Kubernetes Job manifests for GPU work (LoRA training and rendering), as plain dicts.

The trainer and render controllers turn a run into a Job with :func:`build_gpu_job` and hand
the dict to the kubernetes client (``BatchV1Api().create_namespaced_job(namespace, body)``;
the client accepts plain dicts). The shape is the same as the operator templates in
``k8s/jobs/train-lora.yaml`` and ``k8s/jobs/render.yaml``; ``tests/unit/deploy`` checks that
the two agree and that both validate against the Kubernetes OpenAPI schemas.

Nothing here imports the kubernetes client, so the module loads in every image.

GPU selection: NVIDIA GPU feature discovery (GFD, part of the GPU operator) labels each GPU
node with ``nvidia.com/gpu.memory``, the total memory NVML reports for the card in MiB (the
same number ``nvidia-smi`` prints). Cards sold as "24 GB" report less than 24576: RTX 4090
and RTX A5000 report 24564, A10 and A10G 23028 (ECC on GDDR6 reserves memory), L4 23034,
RTX 3090 24576. The next class down (RTX A4500, RTX 4000 Ada: "20 GB") reports about
20470. A threshold of ``Gt 24000`` would therefore shut out A10/A10G/L4 nodes, which are
the common "24 GB" cloud GPUs, so the default is ``Gt 22000``: it admits every 24 GB card
above and keeps 20 GB and smaller cards out with about 1.5 GiB of margin either side.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Final, Literal

from loraforge.runtime.errors import InvalidInput

__all__ = [
    "DEFAULT_MIN_GPU_MEMORY_MIB",
    "GPU_MEMORY_LABEL",
    "GPU_RESOURCE",
    "JOB_NAME_PREFIX",
    "MAX_RUN_ID_LENGTH",
    "InvalidJobSpec",
    "InvalidRunId",
    "JobKind",
    "build_gpu_job",
    "default_command",
    "job_name",
    "validate_run_id",
]

JobKind = Literal["train", "render"]

#: Node label written by NVIDIA GPU feature discovery: total GPU memory in MiB.
GPU_MEMORY_LABEL: Final = "nvidia.com/gpu.memory"
#: Extended resource advertised by the NVIDIA device plugin (also the usual taint key).
GPU_RESOURCE: Final = "nvidia.com/gpu"
#: Used with the ``Gt`` operator: admits 24 GB-class cards (A10/A10G 23028 MiB, L4 23034,
#: RTX 4090 24564, RTX 3090 24576) and rejects 20 GB-class ones (about 20470). See the
#: module docstring.
DEFAULT_MIN_GPU_MEMORY_MIB: Final = 22000

JOB_NAME_PREFIX: Final[dict[str, str]] = {
    "train": "loraforge-train-",
    "render": "loraforge-render-",
}
#: A Job name must fit in 63 characters: the Job controller copies it into the
#: ``batch.kubernetes.io/job-name`` label of its pods, and label values stop at 63.
MAX_RUN_ID_LENGTH: Final = 63 - max(len(p) for p in JOB_NAME_PREFIX.values())

_CONTAINER_NAME: Final[dict[str, str]] = {"train": "train", "render": "render"}
# Defaults per kind; the YAML templates in k8s/jobs/ carry the same numbers.
_KIND_DEFAULTS: Final[dict[str, dict[str, Any]]] = {
    "train": {
        "cpu_request": "4",
        "memory_request": "24Gi",
        "memory_limit": "48Gi",
        "active_deadline_seconds": 12 * 3600,
        "shm_size": "8Gi",
    },
    "render": {
        "cpu_request": "2",
        "memory_request": "16Gi",
        "memory_limit": "32Gi",
        "active_deadline_seconds": 2 * 3600,
        "shm_size": "4Gi",
    },
}

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|Ki|Mi|Gi|Ti|Pi|Ei|M|G|T|P|E)?$")

_UID: Final = 10001  # the non-root user the images create (deploy/*.Dockerfile)


class InvalidRunId(InvalidInput):
    """A run id that cannot name a Kubernetes Job."""


class InvalidJobSpec(InvalidInput):
    """A Job parameter (label, env var name, quantity, namespace) Kubernetes would reject."""


def validate_run_id(run_id: str) -> str:
    """Return ``run_id`` if it can be part of a Job name, else raise :class:`InvalidRunId`.

    The run id becomes the tail of the Job name (``loraforge-train-<run_id>``) and a label
    value, so it must be a DNS-1123 label fragment: lowercase letters, digits and '-',
    starting and ending with a letter or digit, at most :data:`MAX_RUN_ID_LENGTH` characters.
    """
    if not isinstance(run_id, str) or not run_id:
        raise InvalidRunId("run id is empty; pass the id of the run the Job works on")
    if len(run_id) > MAX_RUN_ID_LENGTH:
        raise InvalidRunId(
            f"run id {run_id!r} is {len(run_id)} characters; at most {MAX_RUN_ID_LENGTH} fit "
            "in a Kubernetes Job name after its prefix"
        )
    if not _DNS1123_LABEL.match(run_id):
        raise InvalidRunId(
            f"run id {run_id!r} cannot be part of a Kubernetes Job name: use only lowercase "
            "letters a-z, digits and '-', starting and ending with a letter or digit "
            "(DNS-1123 label)"
        )
    return run_id


def _check_kind(kind: str) -> None:
    if kind not in JOB_NAME_PREFIX:
        raise InvalidJobSpec(f"unknown GPU job kind {kind!r}; use 'train' or 'render'")


def job_name(kind: JobKind, run_id: str) -> str:
    """The deterministic Job name for a run: creating it twice fails with 409 AlreadyExists,
    which makes Job creation idempotent across controller replicas and retries."""
    _check_kind(kind)
    return JOB_NAME_PREFIX[kind] + validate_run_id(run_id)


def default_command(kind: JobKind, run_id: str) -> list[str]:
    """What the Job's container runs when the caller does not say."""
    _check_kind(kind)
    validate_run_id(run_id)
    if kind == "train":
        return ["loraforge-train", "--run", run_id]
    return ["python", "-m", "loraforge.render.worker", "--job", run_id]


def _check_quantity(name: str, value: str) -> str:
    if not isinstance(value, str) or not _QUANTITY.match(value):
        raise InvalidJobSpec(
            f"{name}={value!r} is not a Kubernetes quantity (e.g. '4', '500m', '24Gi')"
        )
    return value


def _check_labels(labels: Mapping[str, str], what: str) -> None:
    for key, value in labels.items():
        prefix, _, name = key.rpartition("/")
        if (
            not name
            or len(name) > 63
            or not _LABEL_NAME.match(name)
            or (prefix and (len(prefix) > 253 or not _DNS1123_SUBDOMAIN.match(prefix)))
        ):
            raise InvalidJobSpec(f"{what} key {key!r} is not a valid Kubernetes label key")
        if what == "label" and (
            not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.match(value)
        ):
            raise InvalidJobSpec(
                f"label {key}={value!r}: values are at most 63 characters of letters, digits, "
                "'-', '_' and '.', starting and ending with a letter or digit"
            )


def build_gpu_job(
    kind: JobKind,
    run_id: str,
    image: str,
    namespace: str,
    command: Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
    secret_name: str = "loraforge-secrets",
    *,
    config_map_name: str = "loraforge-config",
    min_gpu_memory_mib: int = DEFAULT_MIN_GPU_MEMORY_MIB,
    gpu_count: int = 1,
    cpu_request: str | None = None,
    memory_request: str | None = None,
    memory_limit: str | None = None,
    cpu_limit: str | None = None,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    service_account_name: str = "loraforge-job",
    models_pvc: str | None = "loraforge-models",
    models_mount_path: str = "/models",
    shm_size: str | None = None,
    backoff_limit: int = 2,
    active_deadline_seconds: int | None = None,
    ttl_seconds_after_finished: int = 86400,
    image_pull_policy: str = "IfNotPresent",
) -> dict[str, Any]:
    """Build a ``batch/v1`` Job for one GPU run, as a plain dict.

    The pod is scheduled only on nodes whose ``nvidia.com/gpu.memory`` label is strictly
    greater than ``min_gpu_memory_mib`` (node affinity, operator ``Gt``), tolerates
    ``nvidia.com/gpu`` NoSchedule taints, and asks for ``gpu_count`` GPUs. Settings come
    from the ConfigMap ``config_map_name`` and credentials from the Secret ``secret_name``
    (both via envFrom; ``env`` adds or overrides single variables). It runs as the images'
    non-root user with a read-only root filesystem; ``/tmp`` and ``/dev/shm`` are emptyDirs
    and the base weights PVC ``models_pvc`` (if any) is mounted read-only at
    ``models_mount_path``.

    Raises :class:`InvalidRunId` / :class:`InvalidJobSpec` (both :class:`InvalidInput`) for
    parameters Kubernetes would reject, before any API call.
    """
    name = job_name(kind, run_id)
    defaults = _KIND_DEFAULTS[kind]
    if not image or not isinstance(image, str) or any(c.isspace() for c in image):
        raise InvalidJobSpec(f"image {image!r} is not a container image reference")
    if not _DNS1123_LABEL.match(namespace or "") or len(namespace) > 63:
        raise InvalidJobSpec(f"namespace {namespace!r} is not a valid Kubernetes namespace")
    if not _DNS1123_SUBDOMAIN.match(secret_name or "") or not _DNS1123_SUBDOMAIN.match(
        config_map_name or ""
    ):
        raise InvalidJobSpec(
            f"secret {secret_name!r} / config map {config_map_name!r}: not valid object names"
        )
    if (
        isinstance(min_gpu_memory_mib, bool)
        or not isinstance(min_gpu_memory_mib, int)
        or min_gpu_memory_mib < 0
    ):
        raise InvalidJobSpec(
            f"min_gpu_memory_mib={min_gpu_memory_mib!r}: give a whole number of MiB"
        )
    if isinstance(gpu_count, bool) or not isinstance(gpu_count, int) or gpu_count < 1:
        raise InvalidJobSpec(f"gpu_count={gpu_count!r}: a GPU Job needs at least one GPU")
    cmd = list(command) if command is not None else default_command(kind, run_id)
    if not cmd or not all(isinstance(part, str) for part in cmd):
        raise InvalidJobSpec("command must be a non-empty list of strings")
    env = dict(env or {})
    for key in env:
        if not isinstance(key, str) or not _ENV_NAME.match(key):
            raise InvalidJobSpec(f"environment variable name {key!r} is not valid")
    extra_labels = dict(labels or {})
    _check_labels(extra_labels, "label")
    _check_labels(dict(annotations or {}), "annotation")

    requests = {
        "cpu": _check_quantity("cpu_request", cpu_request or defaults["cpu_request"]),
        "memory": _check_quantity("memory_request", memory_request or defaults["memory_request"]),
    }
    limits: dict[str, str] = {
        "memory": _check_quantity("memory_limit", memory_limit or defaults["memory_limit"]),
        GPU_RESOURCE: str(gpu_count),
    }
    if cpu_limit is not None:
        limits["cpu"] = _check_quantity("cpu_limit", cpu_limit)

    job_labels = {
        "app.kubernetes.io/name": JOB_NAME_PREFIX[kind].rstrip("-"),
        "app.kubernetes.io/part-of": "loraforge",
        "app.kubernetes.io/component": "gpu-job",
        "loraforge.io/kind": kind,
        "loraforge.io/run-id": run_id,
        **extra_labels,
    }

    volumes: list[dict[str, Any]] = [
        {"name": "tmp", "emptyDir": {}},
        {
            "name": "dshm",
            "emptyDir": {"medium": "Memory", "sizeLimit": shm_size or defaults["shm_size"]},
        },
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "tmp", "mountPath": "/tmp"},
        {"name": "dshm", "mountPath": "/dev/shm"},
    ]
    if models_pvc:
        volumes.append(
            {"name": "models", "persistentVolumeClaim": {"claimName": models_pvc, "readOnly": True}}
        )
        mounts.append({"name": "models", "mountPath": models_mount_path, "readOnly": True})

    container_env = [
        # Caches of torch, triton and huggingface go to the writable /tmp emptyDir.
        {"name": "HOME", "value": "/tmp"},
        {"name": "XDG_CACHE_HOME", "value": "/tmp/.cache"},
        {"name": "HF_HOME", "value": "/tmp/.cache/huggingface"},
        {"name": "LORAFORGE_MODELS__DIR", "value": models_mount_path},
        {"name": "LORAFORGE_K8S__NAMESPACE", "value": namespace},
    ]
    overridden = set(env)
    container_env = [e for e in container_env if e["name"] not in overridden]
    container_env += [{"name": k, "value": str(v)} for k, v in env.items()]

    metadata: dict[str, Any] = {"name": name, "namespace": namespace, "labels": job_labels}
    if annotations:
        metadata["annotations"] = dict(annotations)

    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata,
        "spec": {
            "backoffLimit": backoff_limit,
            "activeDeadlineSeconds": active_deadline_seconds or defaults["active_deadline_seconds"],
            "ttlSecondsAfterFinished": ttl_seconds_after_finished,
            # A pod evicted or preempted (node drain, spot reclaim) does not use up a retry;
            # exit code 2 (our entry points' "bad input": unknown preset, bad run config)
            # fails the Job at once, since a retry would fail the same way.
            "podFailurePolicy": {
                "rules": [
                    {
                        "action": "Ignore",
                        "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
                    },
                    {
                        "action": "FailJob",
                        "onExitCodes": {"operator": "In", "values": [2]},
                    },
                ]
            },
            "template": {
                "metadata": {"labels": dict(job_labels)},
                "spec": {
                    "restartPolicy": "Never",
                    "serviceAccountName": service_account_name,
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": _UID,
                        "runAsGroup": _UID,
                        "fsGroup": _UID,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "affinity": {
                        "nodeAffinity": {
                            "requiredDuringSchedulingIgnoredDuringExecution": {
                                "nodeSelectorTerms": [
                                    {
                                        "matchExpressions": [
                                            {
                                                "key": GPU_MEMORY_LABEL,
                                                "operator": "Gt",
                                                "values": [str(min_gpu_memory_mib)],
                                            }
                                        ]
                                    }
                                ]
                            }
                        }
                    },
                    "tolerations": [
                        {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}
                    ],
                    "containers": [
                        {
                            "name": _CONTAINER_NAME[kind],
                            "image": image,
                            "imagePullPolicy": image_pull_policy,
                            "command": cmd,
                            "envFrom": [
                                {"configMapRef": {"name": config_map_name}},
                                {"secretRef": {"name": secret_name}},
                            ],
                            "env": container_env,
                            "ports": [{"name": "metrics", "containerPort": 9464}],
                            "resources": {"requests": requests, "limits": limits},
                            "securityContext": {
                                "allowPrivilegeEscalation": False,
                                "readOnlyRootFilesystem": True,
                                "runAsNonRoot": True,
                                "capabilities": {"drop": ["ALL"]},
                            },
                            "volumeMounts": mounts,
                        }
                    ],
                    "volumes": volumes,
                },
            },
        },
    }
