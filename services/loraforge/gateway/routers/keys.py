"""API keys of the caller's tenant: issue, list, revoke by id, revoke the one in use
(rotation: create a new key, switch clients to it, then revoke the old one).

A key minted here records the key that asked (`minted_by`) and dies with it: revoking a key
revokes every key minted from it. Only key ids are ever listed, never the secret. Revoking
every key of a tenant is an admin operation (`GatewayState.revoke_tenant_keys`), not an API
call, so that a leaked key cannot lock its tenant out.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Path, Request, Response
from pydantic import BaseModel, Field

from loraforge.gateway.auth import Principal, create_api_key, require_key
from loraforge.gateway.deps import gw
from loraforge.gateway.problems import PROBLEM_RESPONSES

router = APIRouter(prefix="/v1/keys", tags=["keys"], responses=PROBLEM_RESPONSES)


class KeyCreate(BaseModel):
    name: str = Field(default="", max_length=100, examples=["render-farm"])


class KeyIssued(BaseModel):
    key: str = Field(
        description="the API key; shown once, only its hash is stored", examples=["lf_1a2b3c4d_..."]
    )
    id: str = Field(
        default="", description="the key's public id (the part after `lf_`)", examples=["1a2b3c4d"]
    )
    tenant: str = Field(examples=["acme"])
    name: str = ""
    minted_by: str | None = Field(default=None, description="id of the key that issued it")


class KeyInfo(BaseModel):
    id: str = Field(examples=["1a2b3c4d"])
    name: str = ""
    created_at: datetime
    last_used_at: datetime | None = Field(
        default=None, description="last request with the key (recorded at most once a minute)"
    )
    minted_by: str | None = Field(
        default=None, description="id of the key that issued it; revoking that key revokes this one"
    )
    current: bool = Field(default=False, description="the key of this request")


class KeyList(BaseModel):
    keys: list[KeyInfo]
    limit: int = Field(description="how many keys the tenant may hold")


class KeysRevoked(BaseModel):
    revoked: list[str] = Field(
        description="ids of the keys revoked: the key and every key minted from it"
    )


KEY_ID = Path(
    pattern=r"^[0-9a-f]{8}$", description="key id (from GET /v1/keys)", examples=["1a2b3c4d"]
)


@router.post("", status_code=201, response_model=KeyIssued, operation_id="create_key")
async def create_key(
    body: KeyCreate, request: Request, principal: Principal = Depends(require_key)
) -> KeyIssued:
    """Issue another key for the caller's tenant (409 at the tenant's key limit). The new key
    is revoked with the key that issued it."""
    g = gw(request)
    token = await create_api_key(
        g.state,
        principal.tenant,
        name=body.name,
        minted_by=principal.key_id,
        max_keys=g.config.max_keys_per_tenant,
    )
    return KeyIssued(
        key=token,
        id=token.split("_")[1],
        tenant=principal.tenant,
        name=body.name,
        minted_by=principal.key_id,
    )


@router.get("", response_model=KeyList, operation_id="list_keys")
async def list_keys(request: Request, principal: Principal = Depends(require_key)) -> KeyList:
    """The tenant's live keys: id, name, created, last used, who minted it (never the secret)."""
    g = gw(request)
    return KeyList(
        keys=[
            KeyInfo(
                id=k["key_id"],
                name=k.get("name", ""),
                created_at=k["created_at"],
                last_used_at=k.get("last_used_at"),
                minted_by=k.get("minted_by"),
                current=k["key_id"] == principal.key_id,
            )
            for k in await g.state.keys(principal.tenant)
        ],
        limit=g.config.max_keys_per_tenant,
    )


def _revoked(request: Request, records: list[dict[str, Any]], tenant: str) -> KeysRevoked:
    """Forget the revoked keys here at once (other replicas do when their watch sees the
    deletion: auth.KeyCache.follow_revocations)."""
    cache = gw(request).auth.keys
    for record in records:
        cache.forget(record["digest"])
    cache.forget_tenant(tenant)  # also the liveness of the review tokens they made
    return KeysRevoked(revoked=[r["key_id"] for r in records])


@router.delete("/current", status_code=204, operation_id="revoke_current_key")
async def revoke_current_key(
    request: Request, principal: Principal = Depends(require_key)
) -> Response:
    """Revoke the key this request was made with (and every key it minted); it is refused
    (401) from now on."""
    _revoked(
        request,
        await gw(request).state.revoke_key_id(principal.tenant, principal.key_id),
        principal.tenant,
    )
    return Response(status_code=204)


@router.delete("/{key_id}", response_model=KeysRevoked, operation_id="revoke_key")
async def revoke_key(
    request: Request, key_id: str = KEY_ID, principal: Principal = Depends(require_key)
) -> KeysRevoked:
    """Revoke one of the tenant's keys by id, and every key minted from it (transitively)."""
    return _revoked(
        request, await gw(request).state.revoke_key_id(principal.tenant, key_id), principal.tenant
    )
