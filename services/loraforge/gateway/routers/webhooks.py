"""Webhook registrations, per project or per job."""

from __future__ import annotations

import secrets

from fastapi import APIRouter, Depends, Path, Request, Response

from loraforge.gateway.auth import Principal
from loraforge.gateway.deps import gw, project_of
from loraforge.gateway.models import Webhook, WebhookCreate, WebhookCreated, WebhookList
from loraforge.gateway.problems import PROBLEM_RESPONSES
from loraforge.gateway.state import now
from loraforge.runtime.egress import EgressPolicy

router = APIRouter(
    prefix="/v1/projects/{project}/webhooks", tags=["webhooks"], responses=PROBLEM_RESPONSES
)


@router.post("", status_code=201, response_model=WebhookCreated, operation_id="create_webhook")
async def create(
    body: WebhookCreate, request: Request, scope: tuple[Principal, str] = Depends(project_of)
) -> WebhookCreated:
    """Register a URL for the project's job events (or one job's). Each call is a POST with
    `X-Loraforge-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>" with the secret>`
    and `X-Loraforge-Timestamp`; progress calls, then one with `"final": true` on the terminal
    state. Failed deliveries are retried with exponential back-off.

    The URL must resolve to public addresses only (no loopback, private or link-local
    address: 400 otherwise); each delivery checks again and never follows a redirect."""
    principal, project = scope
    await EgressPolicy.from_settings(gw(request).settings).aresolve(str(body.url))
    record = {
        "id": f"wh-{secrets.token_hex(6)}",
        "url": str(body.url),
        "job_id": body.job_id,
        "secret": secrets.token_urlsafe(32),
        "created_at": now().isoformat(),
    }
    await gw(request).state.add_webhook(principal.tenant, project, record)
    return WebhookCreated.model_validate(record)


@router.get("", response_model=WebhookList, operation_id="list_webhooks")
async def list_(
    request: Request, scope: tuple[Principal, str] = Depends(project_of)
) -> WebhookList:
    """The project's hooks, with how many calls each has waiting and has dropped."""
    principal, project = scope
    state = gw(request).state
    out = []
    for h in await state.webhooks(principal.tenant, project):
        box = await state.get(f"outbox.{principal.tenant}.{project}.{h['id']}") or {}
        out.append(
            Webhook.model_validate(
                {**h, "pending": len(box.get("items", [])), "dropped": int(box.get("dropped", 0))}
            )
        )
    return WebhookList(webhooks=out)


@router.delete("/{hook_id}", status_code=204, operation_id="delete_webhook")
async def delete(
    request: Request,
    hook_id: str = Path(pattern=r"^wh-[0-9a-f]{12}$"),
    scope: tuple[Principal, str] = Depends(project_of),
) -> Response:
    principal, project = scope
    await gw(request).state.delete_webhook(principal.tenant, project, hook_id)
    return Response(status_code=204)
