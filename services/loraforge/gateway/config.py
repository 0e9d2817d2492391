"""Gateway knobs that are not (yet) in `runtime.settings`: limits, rate, token lifetimes.

They are constructor arguments of the app (tests shrink them); `main.py` uses the defaults.
"""

from __future__ import annotations

from dataclasses import dataclass

from loraforge.runtime.settings import Settings


@dataclass(frozen=True)
class GatewayConfig:
    # Streamed multipart uploads through the gateway; bigger files use presigned PUT.
    max_upload_bytes: int = 2 * 1024**3
    # Presigned PUTs are checked at commit time against this cap.
    max_presigned_upload_bytes: int = 50 * 1024**3
    # Every other request body (JSON): scenario YAML may be up to 1 MB.
    max_body_bytes: int = 2 * 1024 * 1024
    # Token bucket per tenant (all its keys and review tokens together): sustained requests
    # per second and burst size.
    rate_per_s: float = 20.0
    rate_burst: int = 60
    # API keys a tenant may hold at once: a CI system, a render farm, a few people and their
    # rotations fit in 20; a leaked key cannot mint more than that.
    max_keys_per_tenant: int = 20
    # Download links (LoRAs, reports, previews) expire quickly; upload links live longer.
    download_url_ttl_s: int = 900
    upload_url_ttl_s: int = 3600
    # Review-page tokens: 30 minutes, a review of ~100 clips at ~15 s each (they were 1 h;
    # API keys do not expire). An expired page asks for a new link.
    page_token_ttl_s: int = 1800
    # How long an API-key lookup is cached in process. Revocation does not wait for it: every
    # replica watches the key records and forgets a revoked key at once (auth.KeyCache); the
    # ttl bounds only what a replica whose watch was down may have missed.
    key_cache_ttl_s: float = 10.0
    # Webhooks (webhooks.py): per-attempt timeout and attempts of one call (exponential
    # back-off between them).
    webhook_timeout_s: float = 5.0
    webhook_attempts: int = 5
    webhook_backoff_s: float = 0.5
    # Calls of one tenant in flight at once (across its hooks): enough for a few receivers
    # answering in ~1 s to keep up with training progress (one event every few seconds per job).
    webhook_concurrency_per_tenant: int = 4
    # Circuit breaker: this many calls in a row failing every attempt (~30 s each with the
    # defaults) open a hook for the cool-down, which doubles per opening in a row (max 10 min).
    webhook_breaker_failures: int = 3
    webhook_cooldown_s: float = 30.0
    # Calls one hook's outbox holds (one KV record): 100 calls of ~2-5 KB (a final call
    # carries the job) stay well under NATS's 1 MB message limit, and cover a receiver down
    # while a few dozen jobs finish (their progress calls are dropped first).
    webhook_backlog: int = 100
    # SSE: how often the job record is polled, and the keep-alive comment interval.
    sse_poll_s: float = 0.5
    sse_keepalive_s: float = 15.0
    # Open SSE streams per tenant (per replica): a dashboard following a training run, its
    # captioning and a few renders in a few browser tabs stays under 20; beyond it, webhooks.
    sse_streams_per_tenant: int = 20


def gateway_bucket(settings: Settings) -> str:
    """The gateway's own KV bucket (API keys, projects, webhooks), named after the jobs
    bucket so that tests, which give every test its own jobs bucket, stay isolated.

    TODO(runtime): a `nats.gateway_bucket` setting would make this explicit."""
    jobs = settings.nats.jobs_bucket
    return jobs.replace("jobs", "gateway") if "jobs" in jobs else f"{jobs}_gateway"
