"""API keys of the caller's tenant: issue another one, revoke the one in use (rotation:
create a new key, switch clients to it, then revoke the old one with it)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from loraforge.gateway.auth import Principal, create_api_key, hash_key, require_key
from loraforge.gateway.deps import gw
from loraforge.gateway.problems import PROBLEM_RESPONSES
from pydantic import BaseModel, Field

router = APIRouter(prefix="/v1/keys", tags=["keys"], responses=PROBLEM_RESPONSES)


class KeyCreate(BaseModel):
    name: str = Field(default="", max_length=100, examples=["render-farm"])


class KeyIssued(BaseModel):
    key: str = Field(description="the API key; shown once, only its hash is stored",
                     examples=["lf_1a2b3c4d_..."])
    tenant: str = Field(examples=["acme"])
    name: str = ""


@router.post("", status_code=201, response_model=KeyIssued, operation_id="create_key")
async def create_key(body: KeyCreate, request: Request,
                     principal: Principal = Depends(require_key)) -> KeyIssued:
    """Issue another key for the caller's tenant."""
    token = await create_api_key(gw(request).state, principal.tenant, name=body.name)
    return KeyIssued(key=token, tenant=principal.tenant, name=body.name)


@router.delete("/current", status_code=204, operation_id="revoke_current_key")
async def revoke_current_key(request: Request, principal: Principal = Depends(require_key)) -> Response:
    """Revoke the key this request was made with; it is refused (401) from now on."""
    header = request.headers.get("x-api-key") or request.headers.get("authorization", "")
    digest = hash_key(header.removeprefix("Bearer ").strip())
    await gw(request).state.revoke_key(digest)
    gw(request).auth.keys.forget(digest)
    return Response(status_code=204)
