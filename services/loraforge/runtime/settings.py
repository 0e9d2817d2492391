"""Typed settings for every loraforge process, read from `LORAFORGE_*` environment variables.

Nested groups use `__`: `LORAFORGE_NATS__URL`, `LORAFORGE_S3__SECRET_KEY`. Unknown
`LORAFORGE_*` variables are refused so that a typo never silently falls back to a default.
"""

from __future__ import annotations

import os
import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from loraforge.runtime.errors import ConfigurationError

ENV_PREFIX = "LORAFORGE_"

# Values that ship in examples and dev defaults; never acceptable once real data is at stake:
# the settings' own defaults, .env.example's and k8s/overlays/dev/secret.yaml's (a test reads
# both files and checks every credential in them is refused), and the usual stand-ins.
PLACEHOLDER_SECRETS = frozenset(
    {
        "",
        "change-me",
        "changeme",
        "minioadmin",
        "loraforge-dev-secret",
        "secret",
        "password",
        "change_me_loraforge_secret_key",
        "change-me-dev-only-secret",
        "change_me_minio_root_password",
    }
)
# A value containing one of these was copied from a template and never filled in.
PLACEHOLDER_MARKS = ("change_me", "change-me", "changeme", "dev-only", "example")
# Access keys of the same templates: with the example access key the deployment runs on the
# dev overlay's (or .env.example's) MinIO user.
PLACEHOLDER_ACCESS_KEYS = frozenset({"loraforge-dev", "change_me_loraforge", "minioadmin"})


def _placeholder(value: str) -> bool:
    low = value.strip().lower()
    return low in PLACEHOLDER_SECRETS or any(mark in low for mark in PLACEHOLDER_MARKS)


SERVICE_NAMES = ("gateway", "ingest", "curation", "captioning", "trainer", "render")
BACKEND_SERVICES = ("ingest", "curation", "captioning", "trainer", "render")


class Environment(StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


class _Group(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# How long a RUNNING job may go without progress (a progress report that changes what the job
# shows: fraction, message or result) while its worker keeps heartbeating, per job kind; past
# it the reaper fails the job as hung. Training reports every step but an evaluation or a
# preview render on a slow card takes a while; the others report per file, clip or frame.
PROGRESS_DEADLINES_S: dict[str, float] = {
    "ingest": 3600.0,
    "curation": 3600.0,
    "captioning": 3600.0,
    "trainer": 7200.0,
    "render": 7200.0,
}


class NatsSettings(_Group):
    url: str = "nats://127.0.0.1:14222"
    # One stream carries every pipeline event; tests give each test its own stream and root.
    stream: str = "LF"
    subject_root: str = "lf"
    jobs_bucket: str = "lf_jobs"
    duplicate_window_s: float = 120.0
    max_deliver: int = Field(default=5, ge=1)
    ack_wait_s: float = Field(default=60.0, gt=0)
    # Redelivery back-off after a failed handler; the last value repeats.
    backoff_s: tuple[float, ...] = (1.0, 5.0, 15.0, 60.0)
    connect_timeout_s: float = 2.0
    # Job heartbeat and reaper (runtime/job_service.py): the worker running a job writes a
    # beat into its record every job_beat_s; each job worker's reaper looks every
    # reap_every_s for RUNNING jobs whose beat is older than the stale bound and whose
    # request JetStream will not hand to a live replica again, and fails them. 0 derives the
    # bound: ack_wait + the longest back-off + 3 beats, the longest a dead worker's request
    # takes to reach a live replica (which then beats again).
    job_beat_s: float = Field(default=10.0, gt=0)
    job_stale_after_s: float = Field(default=0.0, ge=0)
    reap_every_s: float = Field(default=30.0, gt=0)
    # Per-kind overrides of PROGRESS_DEADLINES_S (0: no deadline for that kind), e.g.
    # LORAFORGE_NATS__PROGRESS_DEADLINE_S='{"trainer": 14400}'.
    progress_deadline_s: dict[str, Annotated[float, Field(ge=0)]] = Field(default_factory=dict)

    def progress_deadline(self, kind: str) -> float:
        """Seconds a `kind` job may run without progress before the reaper fails it (0: never);
        a kind without a default gets the longest."""
        default = PROGRESS_DEADLINES_S.get(kind, max(PROGRESS_DEADLINES_S.values()))
        return self.progress_deadline_s.get(kind, default)

    @property
    def redelivery_bound_s(self) -> float:
        """The longest a request without a verdict waits for its next delivery."""
        return self.ack_wait_s + max(self.backoff_s, default=0.0) + 3 * self.job_beat_s

    @property
    def job_stale_after(self) -> float:
        return self.job_stale_after_s or self.redelivery_bound_s

    @model_validator(mode="after")
    def _stale_bound(self) -> NatsSettings:
        if self.job_stale_after_s and self.job_stale_after_s < self.redelivery_bound_s:
            raise ValueError(
                f"job_stale_after_s={self.job_stale_after_s:g} is shorter than a redelivery "
                f"(ack_wait + longest back-off + 3 beats = {self.redelivery_bound_s:g}s): the "
                "reaper would fail jobs JetStream is about to redeliver; raise it or set 0"
            )
        return self

    @field_validator("url")
    @classmethod
    def _scheme(cls, url: str) -> str:
        if not re.match(r"^(nats|tls|ws|wss)://", url):
            raise ValueError(f"{url!r} is not a NATS URL; write it as nats://HOST:PORT")
        return url


class S3Settings(_Group):
    endpoint: str = "127.0.0.1:18333"
    access_key: str = "loraforge"
    secret_key: SecretStr = SecretStr("loraforge-dev-secret")
    secure: bool = False
    region: str = "us-east-1"
    # Prefix for bucket names, so several deployments (or tests) can share one S3 server.
    bucket_prefix: str = ""
    presign_expiry_s: int = Field(default=3600, ge=1, le=7 * 24 * 3600)
    # 16 MiB parts keep memory flat while streaming multi-GB footage.
    part_size: int = Field(default=16 * 1024 * 1024, ge=5 * 1024 * 1024)
    # The staging sweeper (storage.py: ObjectStore.sweep_staging, run by every service
    # process) removes `_staging/` objects older than this. S3 dates a multipart upload by
    # its start, so the bound covers the longest legit upload plus its commit: a 100 GB
    # source at 5 MB/s takes ~6 h; 24 h leaves room for slower links.
    staging_max_age_s: int = Field(default=24 * 3600, ge=1)
    staging_sweep_every_s: float = Field(default=900.0, gt=0)
    # Removals per pass, so a backlog never turns one pass into a long storm of deletes.
    staging_sweep_batch: int = Field(default=1000, ge=1)

    @field_validator("endpoint")
    @classmethod
    def _host_port(cls, endpoint: str) -> str:
        if "://" in endpoint or "/" in endpoint:
            raise ValueError(
                f"{endpoint!r}: give the S3 endpoint as HOST:PORT (no scheme or path); "
                "set LORAFORGE_S3__SECURE=true for TLS"
            )
        return endpoint


class ServerSettings(_Group):
    host: str = "127.0.0.1"
    grpc_port: int = Field(default=0, ge=0, le=65535)
    http_port: int = Field(default=0, ge=0, le=65535)
    # 0 disables the Prometheus endpoint (tests); the stack and containers set a port.
    metrics_port: int = Field(default=0, ge=0, le=65535)
    shutdown_grace_s: float = 5.0
    # Server-side cap on any single RPC that does not carry a tighter client deadline.
    default_rpc_timeout_s: float = 30.0
    startup_attempts: int = Field(default=5, ge=1)
    startup_backoff_s: float = 0.5


class EndpointSettings(_Group):
    """Where each backend's gRPC server is reached (gateway, CLI, other services)."""

    ingest: str = "127.0.0.1:17101"
    curation: str = "127.0.0.1:17102"
    captioning: str = "127.0.0.1:17103"
    trainer: str = "127.0.0.1:17104"
    render: str = "127.0.0.1:17105"
    gateway: str = "http://127.0.0.1:17100"

    def grpc_target(self, service: str) -> str:
        if service not in BACKEND_SERVICES:
            raise ConfigurationError(
                f"unknown service {service!r}; choose one of {', '.join(BACKEND_SERVICES)}"
            )
        target: str = getattr(self, service)
        return target


class LogSettings(_Group):
    level: str = "INFO"
    format: str = Field(default="console", pattern="^(console|json)$")


class StackSettings(_Group):
    """The no-Docker local stack (`loraforge stack up`)."""

    data_dir: Path = Path(".loraforge")
    nats_port: int = 14222
    nats_monitor_port: int = 18222
    s3_port: int = 18333
    # SeaweedFS needs master, volume and filer ports besides S3 (each also uses port+10000
    # for gRPC unless told otherwise; we assign every port explicitly).
    weed_base_port: int = 19330
    gateway_port: int = 17100
    service_base_port: int = 17101
    metrics_base_port: int = 17201


class ModelSettings(_Group):
    dir: Path = Path("models")


class CaptioningSettings(_Group):
    """Where captioning models are provisioned (all optional: measured attributes always work)."""

    vlm_dir: Path | None = None  # a transformers vision-language model on local disk
    tokenizer_dir: Path | None = None  # the target model's tokenizer, for length/rarity checks
    openai_url: str = ""  # an OpenAI-compatible chat endpoint (e.g. vLLM) with image input
    openai_model: str = ""
    openai_api_key: SecretStr = SecretStr("")


class K8sSettings(_Group):
    namespace: str = "loraforge"
    trainer_image: str = "loraforge/trainer:latest"
    render_image: str = "loraforge/render:latest"
    # The trainer service runs `on_kubernetes` jobs as GPU Jobs. Off by default: it needs the
    # Kubernetes API (in-cluster config or ~/.kube/config) and the Job RBAC of k8s/base.
    training_jobs: bool = False
    # The render service runs each render job as a GPU Job (`python -m loraforge.render.worker
    # --job ID` in the pod) instead of in its own process. Same requirements as training_jobs.
    render_jobs: bool = False


class RenderSettings(_Group):
    """Where and how renders run; a scenario's `memory:` block overrides offload and tiling.

    device: auto (CUDA when present, else CPU) | cpu | cuda | cuda:N. dtype: auto (bf16 on
    CUDA, fp32 on CPU) | bf16 | fp16 | fp32. offload: auto (chosen from the card's free memory
    and the model size: loraforge.render.device.plan_memory) | none | model | group.
    vae_tiling: auto | on | off."""

    device: str = "auto"
    dtype: Literal["auto", "bf16", "fp16", "fp32"] = "auto"
    offload: Literal["auto", "none", "model", "group"] = "auto"
    vae_tiling: Literal["auto", "on", "off"] = "auto"
    # Deployments one render worker keeps warm (pipeline loaded and placed, serving calls);
    # 1: a GPU holds one 14B Wan pipeline resident, a second would push both into offload.
    warm_slots: int = Field(default=1, ge=0, le=16)


class EgressSettings(_Group):
    """Outbound requests to URLs tenants give (URL ingest, webhooks): see runtime/egress.py."""

    # URL ingest makes the ingest worker fetch tenant-given URLs; off unless an operator
    # turns it on (most clusters have no internet access anyway).
    url_ingest: bool = False
    # Comma-separated CIDRs the guard lets through although they are not public, e.g.
    # "127.0.0.1/32" for a dev/test receiver on loopback; empty in production.
    allow: str = ""

    @field_validator("allow")
    @classmethod
    def _cidrs(cls, text: str) -> str:
        import ipaddress

        for part in (p.strip() for p in text.split(",")):
            if part:
                try:
                    ipaddress.ip_network(part, strict=False)
                except ValueError:
                    raise ValueError(
                        f"{part!r} is not an IP network; write CIDRs separated by commas, "
                        f"e.g. 127.0.0.1/32,10.0.5.0/24"
                    ) from None
        return text


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    env: Environment = Environment.DEVELOPMENT
    tenant: str = "default"
    nats: NatsSettings = NatsSettings()
    s3: S3Settings = S3Settings()
    server: ServerSettings = ServerSettings()
    endpoints: EndpointSettings = EndpointSettings()
    log: LogSettings = LogSettings()
    stack: StackSettings = StackSettings()
    models: ModelSettings = ModelSettings()
    captioning: CaptioningSettings = CaptioningSettings()
    k8s: K8sSettings = K8sSettings()
    render: RenderSettings = RenderSettings()
    egress: EgressSettings = EgressSettings()

    def model_post_init(self, __context: Any) -> None:
        if self.env is Environment.PRODUCTION:
            secret = self.s3.secret_key.get_secret_value()
            if _placeholder(secret) or len(secret) < 12:
                raise ConfigurationError(
                    "LORAFORGE_S3__SECRET_KEY is a placeholder (an example value from "
                    ".env.example or k8s/overlays/dev) or shorter than 12 characters; "
                    "production needs the real object-store secret (from a Secret or .env)"
                )
            access = self.s3.access_key.strip().lower()
            if access in PLACEHOLDER_ACCESS_KEYS or any(m in access for m in PLACEHOLDER_MARKS):
                raise ConfigurationError(
                    f"LORAFORGE_S3__ACCESS_KEY is the example value {self.s3.access_key!r} from "
                    ".env.example or k8s/overlays/dev; production needs its own object-store user"
                )
            openai = self.captioning.openai_api_key.get_secret_value()
            if openai and _placeholder(openai):
                raise ConfigurationError(
                    "LORAFORGE_CAPTIONING__OPENAI_API_KEY is a placeholder; set the real key or "
                    "leave it empty"
                )
            _check_production_egress(self.egress.allow)


def _check_production_egress(allow: str) -> None:
    """Production never lets tenant URLs reach loopback (the object store's filer, every
    service port) or link-local (cloud metadata credentials), whatever the allow-list says."""
    import ipaddress

    danger = (
        ipaddress.ip_network("127.0.0.0/8"),
        ipaddress.ip_network("169.254.0.0/16"),
        ipaddress.ip_network("::1/128"),
        ipaddress.ip_network("fe80::/10"),
        ipaddress.ip_network("0.0.0.0/8"),
    )
    for part in (p.strip() for p in allow.split(",")):
        if part:
            net = ipaddress.ip_network(part, strict=False)
            for bad in danger:
                if net.version == bad.version and net.overlaps(bad):
                    raise ConfigurationError(
                        f"LORAFORGE_EGRESS__ALLOW: {part} includes {bad} (loopback, link-local or "
                        f"unspecified), which production never opens to tenant URLs; list only the "
                        f"private networks of real receivers (e.g. 10.0.5.0/24)"
                    )


def load_settings(**overrides: Any) -> Settings:
    """Read settings from the environment, refusing unknown LORAFORGE_ variables.

    Raises ConfigurationError listing every problem, never a bare validation traceback.
    """
    known = _known_env_names()
    unknown = sorted(k for k in os.environ if k.startswith(ENV_PREFIX) and not _is_known(k, known))
    if unknown:
        raise ConfigurationError(
            f"unknown setting(s) {', '.join(unknown)}; valid names look like "
            f"{ENV_PREFIX}NATS__URL or {ENV_PREFIX}S3__ENDPOINT (see README, 'Settings')"
        )
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"{ENV_PREFIX}{'__'.join(str(p) for p in err['loc']).upper()}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigurationError(f"invalid settings: {problems}") from None


def _known_env_names() -> dict[str, type[BaseModel] | None]:
    names: dict[str, type[BaseModel] | None] = {}
    for name, field in Settings.model_fields.items():
        ann = field.annotation
        group = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
        names[f"{ENV_PREFIX}{name.upper()}"] = group
    return names


def _is_known(key: str, known: dict[str, type[BaseModel] | None]) -> bool:
    if key in known:
        return True
    head, sep, rest = key.partition("__")
    group = known.get(head)
    if not sep or group is None:
        return False
    return rest.lower() in group.model_fields
