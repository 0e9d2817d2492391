"""API keys, tenants, rate limits and review-page tokens.

Keys are `lf_<key id>_<43 random url-safe chars>` (256 bits from `secrets`). Only their
SHA-256 is stored: a plain, unsalted hash is the right tool for high-entropy random tokens
(nobody can brute-force 2^256, so a slow KDF or a pepper adds nothing but latency), and it
lets us look a key up by its hash in O(1). The key id in the clear names the key in logs and
rate limits without revealing it.

A key belongs to exactly one tenant; every lookup is scoped by that tenant, so another
tenant's project or job simply does not exist for it (404, never 403).

Keys minted with a key (`POST /v1/keys`) record it as `minted_by`, and revoking a key revokes
every key minted from it, transitively: a leaked key cannot leave live offspring behind. A
tenant holds at most `GatewayConfig.max_keys_per_tenant` keys, and the rate limit is one token
bucket per tenant (every key and review token of the tenant draws from it), so minting keys
does not multiply the rate.

Review-page tokens are short-lived HMAC-signed grants for one dataset of one project, made
from an API key by `POST .../review-link`; they can do nothing else. Each names the key that
made it and dies with it (checked on every use, cached like keys). A token is `read` (the
default: the dataset, its clips, captions, previews and scores) or `write` (also keep/reject
decisions, caption edits and approval); no token ever gets checkpoints, exports, other run
files or anything outside its dataset.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import pathlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import Depends, Path, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from loraforge.gateway.models import SLUG_PATTERN
from loraforge.gateway.problems import Forbidden, RateLimited, Unauthenticated
from loraforge.gateway.state import GatewayState, now
from loraforge.runtime.errors import Conflict, NotFound
from loraforge.runtime.keys import validate_slug

log = logging.getLogger(__name__)

KEY_PREFIX = "lf_"


def hash_key(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _key_id(token: str) -> str:
    parts = token.split("_")
    return parts[1] if len(parts) >= 3 and parts[0] == "lf" else "unknown"


async def create_api_key(
    state: GatewayState,
    tenant: str,
    name: str = "",
    *,
    minted_by: str | None = None,
    max_keys: int | None = None,
) -> str:
    """A new key for `tenant`; the clear text is returned once, never stored.

    `minted_by`: the key id of the key that asked (the new key dies with it). `max_keys`: the
    tenant's limit, held exactly under concurrent mints (`_reserve_key_slot`). Admin bootstrap
    (tests, the dev stack's `write_dev_key`) passes neither."""
    validate_slug(tenant, "tenant")
    key_id = secrets.token_hex(4)
    if max_keys is not None:
        await _reserve_key_slot(state, tenant, key_id, max_keys)
    token = f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
    await state.add_key(
        hash_key(token),
        {
            "tenant": tenant,
            "key_id": key_id,
            "name": name,
            "created_at": now().isoformat(),
            "minted_by": minted_by,
        },
    )
    if max_keys is not None:
        await _release_key_slot(state, tenant, key_id)
    if minted_by is not None and await state.key_by_id(tenant, minted_by) is None:
        # The parent was revoked while we minted (its cascade listed the keys before ours
        # existed): the child must not outlive it.
        await state.revoke_key_id(tenant, key_id)
        raise Unauthenticated("the key that asked was revoked meanwhile; no key was issued")
    return token


# A reserved key slot (`_reserve_key_slot`) counts this long before its key is listed; a mint
# writes its key within milliseconds, so only a mint that died in between leaves one behind.
MINT_GRACE_S = 60.0


async def _reserve_key_slot(state: GatewayState, tenant: str, key_id: str, max_keys: int) -> None:
    """Count the tenant's keys and reserve one more in a single compare-and-set, or Conflict.

    Listing the keys and then writing one is two steps: concurrent mints at the limit would
    all see room. So each mint records its key id in `keymint.<tenant>` (the mints in flight)
    by an update against the revision it read, and lists the keys after that read: a mint
    whose key is not listed yet is pending in the record, one that released its reservation
    had written its key before, and a mint that changed the record after the read makes the
    update fail and the count start again. The count is the listed keys and the pending ids
    not listed (younger than MINT_GRACE_S; an older one is a mint that died in between)."""

    async def reserve(current: dict[str, Any] | None) -> dict[str, Any]:
        live = {k["key_id"] for k in await state.keys(tenant)}
        wall = time.time()
        pending = {
            kid: at
            for kid, at in ((current or {}).get("pending") or {}).items()
            if kid not in live and wall - at < MINT_GRACE_S
        }
        held = len(live) + len(pending)
        if held >= max_keys:
            raise Conflict(
                f"tenant {tenant!r} already holds {held} API keys (the limit is "
                f"{max_keys}); revoke unused ones (GET /v1/keys, DELETE /v1/keys/{{id}})"
            )
        return {"pending": {**pending, key_id: wall}}

    await state.change(f"keymint.{tenant}", reserve)


async def _release_key_slot(state: GatewayState, tenant: str, key_id: str) -> None:
    """The key is listed now: its reservation goes (else revoking it at once would leave its
    slot taken for MINT_GRACE_S)."""

    def release(current: dict[str, Any] | None) -> dict[str, Any]:
        pending = dict((current or {}).get("pending") or {})
        pending.pop(key_id, None)
        return {"pending": pending}

    await state.change(f"keymint.{tenant}", release)


async def revoke_api_key(state: GatewayState, token: str) -> list[dict[str, Any]]:
    """Revoke a key (and the keys it minted); their index records."""
    return await state.revoke_key(hash_key(token))


async def write_dev_key(state: GatewayState, tenant: str, path: pathlib.Path) -> str:
    """Development only: create a key once and keep it in `path` (mode 0600) for the stack."""
    kept = await asyncio.to_thread(_read_key_file, path)
    if kept and await state.key_record(hash_key(kept)) is not None:
        return kept
    token = await create_api_key(state, tenant, name="dev-default")
    await asyncio.to_thread(_write_key_file, path, token)
    return token


def _read_key_file(path: pathlib.Path) -> str | None:
    return path.read_text().strip() if path.exists() else None


def _write_key_file(path: pathlib.Path, token: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(token + "\n")
    path.chmod(0o600)


@dataclass(frozen=True)
class Principal:
    tenant: str
    key_id: str
    # Set for review-page tokens: the only project and dataset they may touch, and whether
    # they may write there (PAGE_SCOPES).
    page_project: str | None = None
    page_dataset: str | None = None
    page_scope: str = "read"

    @property
    def is_page(self) -> bool:
        return self.page_project is not None

    def require_write(self, what: str) -> None:
        """Review tokens minted `read` (the default) cannot change anything."""
        if self.is_page and self.page_scope != "write":
            raise Forbidden(
                f"this review link is read-only and cannot {what}; ask the project "
                'owner for a link made with scope "write"'
            )


PAGE_SCOPES = ("read", "write")


class TokenBucket:
    """In-memory token bucket per tenant (per process; N replicas allow N times the rate)."""

    def __init__(self, rate_per_s: float, burst: int):
        self.rate = rate_per_s
        self.burst = burst
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, key: str) -> None:
        now_s = time.monotonic()
        tokens, last = self._buckets.get(key, (float(self.burst), now_s))
        tokens = min(float(self.burst), tokens + (now_s - last) * self.rate)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now_s)
            raise RateLimited(
                f"rate limit of {self.rate:g} requests/s (burst {self.burst}) exceeded for "
                f"{key}; slow down and retry after the Retry-After seconds",
                retry_after_s=(1.0 - tokens) / self.rate,
            )
        self._buckets[key] = (tokens - 1.0, now_s)
        if len(self._buckets) > 100_000:  # forget idle keys
            self._buckets = {k: v for k, v in self._buckets.items() if now_s - v[1] < 60}


class KeyCache:
    """API-key records by digest, and key liveness by (tenant, key id) for review tokens,
    each cached `ttl_s`. Revocation is immediate on every replica: `follow_revocations`
    watches the key records and forgets a key the moment any replica deletes it; the ttl only
    bounds what a replica whose watch was down may have missed."""

    def __init__(self, ttl_s: float):
        self._ttl = ttl_s
        self._entries: dict[str, tuple[float, dict[str, Any] | None]] = {}
        self._alive: dict[tuple[str, str], tuple[float, bool]] = {}

    async def lookup(self, state: GatewayState, digest: str) -> dict[str, Any] | None:
        hit = self._entries.get(digest)
        if hit is not None and time.monotonic() - hit[0] < self._ttl:
            return hit[1]
        record = await state.key_record(digest)
        self._entries[digest] = (time.monotonic(), record)
        if len(self._entries) > 10_000:
            self._entries.clear()
        return record

    async def alive(self, state: GatewayState, tenant: str, key_id: str) -> bool:
        hit = self._alive.get((tenant, key_id))
        if hit is not None and time.monotonic() - hit[0] < self._ttl:
            return hit[1]
        ok = await state.key_by_id(tenant, key_id) is not None
        self._alive[(tenant, key_id)] = (time.monotonic(), ok)
        if len(self._alive) > 10_000:
            self._alive.clear()
        return ok

    def forget(self, digest: str) -> None:
        """Drop a cached key (after revocation; other gateway replicas see it within the ttl)."""
        record = self._entries.pop(digest, (0.0, None))[1]
        if record is not None:
            self._alive.pop((record["tenant"], record["key_id"]), None)

    async def follow_revocations(self, state: GatewayState) -> None:
        """Run for the gateway's life (a background task): forget revoked keys as they go."""

        async def follow(pattern: str, forget: Callable[[str], None]) -> None:
            async for key in state.deletions(pattern):
                forget(key)

        while True:
            try:
                await asyncio.gather(
                    follow("apikey.*", lambda k: self.forget(k.removeprefix("apikey."))),
                    follow("keyid.*.*", self._forget_id),
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("the key revocation watch stopped (%s); watching again", exc)
            # A watch that ended may have missed a revocation: nothing cached is trusted.
            self._entries.clear()
            self._alive.clear()
            await asyncio.sleep(1.0)

    def _forget_id(self, key: str) -> None:
        _, tenant, key_id = key.split(".", 2)  # keyid.<tenant>.<key_id>
        self._alive.pop((tenant, key_id), None)

    def forget_tenant(self, tenant: str) -> None:
        self._entries = {
            d: e for d, e in self._entries.items() if e[1] is None or e[1].get("tenant") != tenant
        }
        self._alive = {k: v for k, v in self._alive.items() if k[0] != tenant}


# -- review-page tokens ---------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign_page_token(
    secret: bytes,
    tenant: str,
    project: str,
    dataset: str,
    key_id: str,
    ttl_s: int,
    scope: str = "read",
) -> tuple[str, float]:
    if scope not in PAGE_SCOPES:
        raise ValueError(f"review token scope {scope!r} is not one of {PAGE_SCOPES}")
    exp = time.time() + ttl_s
    payload = _b64(
        json.dumps(
            {"t": tenant, "p": project, "d": dataset, "k": key_id, "s": scope, "exp": int(exp)},
            separators=(",", ":"),
        ).encode()
    )
    sig = _b64(hmac.new(secret, payload.encode(), hashlib.sha256).digest())
    return f"{payload}.{sig}", exp


def verify_page_token(secret: bytes, token: str) -> Principal:
    try:
        payload, sig = token.split(".")
        expected = _b64(hmac.new(secret, payload.encode(), hashlib.sha256).digest())
        if not hmac.compare_digest(sig, expected):
            raise ValueError("bad signature")
        data = json.loads(_unb64(payload))
        if time.time() > float(data["exp"]):
            raise Unauthenticated(
                "the review link expired; ask for a new one (POST .../datasets/{id}/review-link)"
            )
        # Tokens signed before scopes existed carry none: they are read-only.
        scope = data.get("s", "read")
        if scope not in PAGE_SCOPES:
            raise ValueError("unknown scope")
        return Principal(data["t"], data["k"], data["p"], data["d"], scope)
    except Unauthenticated:
        raise
    except Exception:
        raise Unauthenticated(
            "the review token is invalid; open the page from a fresh review link"
        ) from None


# -- FastAPI dependencies -------------------------------------------------------------------

api_key_header = APIKeyHeader(
    name="X-API-Key",
    auto_error=False,
    description="API key (`lf_...`); or send it as a Bearer token",
)
bearer = HTTPBearer(auto_error=False, description="API key as `Authorization: Bearer lf_...`")
review_header = APIKeyHeader(
    name="X-Review-Token",
    auto_error=False,
    description="short-lived review-page token (review page only)",
)


@dataclass
class AuthContext:
    state: GatewayState
    limiter: TokenBucket
    keys: KeyCache
    page_secret: bytes | None = None
    _touched: dict[tuple[str, str], float] = field(default_factory=dict)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def touch(self, principal: Principal) -> None:
        """Note the key's use (written in the background, at most every LAST_USED_EVERY_S)."""
        k = (principal.tenant, principal.key_id)
        mono = time.monotonic()
        if mono - self._touched.get(k, -LAST_USED_EVERY_S) < LAST_USED_EVERY_S:
            return
        self._touched[k] = mono
        if len(self._touched) > 100_000:
            self._touched.clear()
        task = asyncio.get_running_loop().create_task(self._touch(principal))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _touch(self, principal: Principal) -> None:
        try:
            await self.state.touch_key(principal.tenant, principal.key_id, now().isoformat())
        except Exception as exc:
            log.warning("could not record the use of key %s: %s", principal.key_id, exc)

    async def secret(self) -> bytes:
        if self.page_secret is None:
            self.page_secret = await self.state.page_secret()
        return self.page_secret


def _auth(request: Request) -> AuthContext:
    auth: AuthContext = request.app.state.gw.auth  # set by app.create_app
    return auth


# `last_used_at` is written at most this often per key (not on every request: one KV write
# per call would double the gateway's NATS traffic for a number people read in minutes).
LAST_USED_EVERY_S = 60.0


async def _from_key(ctx: AuthContext, token: str) -> Principal:
    record = await ctx.keys.lookup(ctx.state, hash_key(token))
    if record is None:
        raise Unauthenticated("unknown or revoked API key; check the key or ask an admin for one")
    principal = Principal(record["tenant"], record["key_id"])
    ctx.limiter.take(f"tenant {principal.tenant}")
    ctx.touch(principal)
    return principal


def _token_from(x_api_key: str | None, creds: HTTPAuthorizationCredentials | None) -> str | None:
    if x_api_key:
        return x_api_key.strip()
    if creds is not None and creds.credentials:
        return creds.credentials.strip()
    return None


async def require_key(
    request: Request,
    x_api_key: str | None = Security(api_key_header),
    creds: HTTPAuthorizationCredentials | None = Security(bearer),
) -> Principal:
    """An API key is required (401 without one)."""
    token = _token_from(x_api_key, creds)
    if not token:
        raise Unauthenticated(
            "this endpoint needs an API key: send `X-API-Key: lf_...` or "
            "`Authorization: Bearer lf_...`"
        )
    return await _from_key(_auth(request), token)


async def require_key_or_page(
    request: Request,
    x_api_key: str | None = Security(api_key_header),
    creds: HTTPAuthorizationCredentials | None = Security(bearer),
    review_token: str | None = Security(review_header),
) -> Principal:
    """An API key, or a review-page token (checked against the path by `dataset_access`)."""
    token = _token_from(x_api_key, creds)
    if token:
        return await _from_key(_auth(request), token)
    if review_token:
        ctx = _auth(request)
        principal = verify_page_token(await ctx.secret(), review_token)
        if not await ctx.keys.alive(ctx.state, principal.tenant, principal.key_id):
            raise Unauthenticated(
                "the key that made this review link was revoked; ask for a new link"
            )
        ctx.limiter.take(f"tenant {principal.tenant}")
        return principal
    raise Unauthenticated("send an API key (`X-API-Key`) or a review token (`X-Review-Token`)")


def dataset_access(
    project: str = Path(pattern=SLUG_PATTERN, examples=["jane-doe"]),
    dataset_id: str = Path(
        pattern=r"^[A-Za-z0-9._=-]{1,100}$", examples=["ds-0123456789abcdef0123"]
    ),
    principal: Principal = Depends(require_key_or_page),
) -> Principal:
    """A page token only opens the one dataset it was made for (others are 404)."""
    if principal.is_page and (
        principal.page_project != project or principal.page_dataset != dataset_id
    ):
        raise NotFound(f"dataset {dataset_id!r} not found")
    return principal
