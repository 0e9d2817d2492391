"""Errors -> HTTP, in one place: `application/problem+json` (RFC 9457).

Domain errors (`loraforge.runtime.errors`), storage errors, gateway errors (auth, limits) and
gRPC status codes from the backends all map to an HTTP status here and nowhere else.
"""

from __future__ import annotations

import logging
import math
from http import HTTPStatus
from typing import Any

import grpc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from nats import errors as nats_errors
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from loraforge.runtime import errors
from loraforge.runtime.storage import IntegrityError, UploadInterrupted

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "urn:loraforge:problem:"


class GatewayError(errors.LoraforgeError):
    """Errors only the HTTP edge raises."""


class Unauthenticated(GatewayError):
    """No API key, or one we do not know (or revoked)."""


class Forbidden(GatewayError):
    """The caller is known but its grant does not cover this (a read-only review token
    asking to write); never used between tenants (those get 404)."""


class PayloadTooLarge(GatewayError):
    """The request body is over the limit; nothing was stored."""


class RateLimited(GatewayError):
    def __init__(self, message: str, retry_after_s: float):
        super().__init__(message)
        self.retry_after_s = retry_after_s


class RpcFailure(Exception):
    """A backend answered a gRPC call with a non-OK status (raised by `clients`)."""

    def __init__(self, service: str, code: grpc.StatusCode, details: str):
        super().__init__(f"{service}: {code.name}: {details}")
        self.service = service
        self.code = code
        self.details = details


# The only mapping from error classes to HTTP status (first match wins: subclasses first).
HTTP_STATUS_BY_ERROR: tuple[tuple[type[BaseException], int], ...] = (
    (Unauthenticated, 401),
    (Forbidden, 403),
    (PayloadTooLarge, 413),
    (RateLimited, 429),
    (IntegrityError, 422),
    (UploadInterrupted, 400),
    (errors.InvalidInput, 400),
    (errors.NotFound, 404),
    (errors.AlreadyExists, 409),
    (errors.Conflict, 409),
    (errors.InvalidTransition, 409),
    (errors.Cancelled, 409),
    (errors.Unavailable, 503),
    # The gateway's own records and job reads go to NATS (KV, JetStream): a timeout or a lost
    # connection there is a moment's unavailability, which a client should retry, not a bug.
    (TimeoutError, 503),  # nats.errors.TimeoutError is an asyncio.TimeoutError
    (nats_errors.ConnectionClosedError, 503),
    (nats_errors.NoServersError, 503),
    (nats_errors.NoRespondersError, 503),
    (errors.ConfigurationError, 500),
    (errors.LoraforgeError, 500),
)

# ... and from backend gRPC status codes. A backend's INTERNAL is our 502 (bad gateway).
HTTP_STATUS_BY_GRPC: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.NOT_FOUND: 404,
    # A backend never tells us about another tenant's things: 404, never 403.
    grpc.StatusCode.PERMISSION_DENIED: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.CANCELLED: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNAUTHENTICATED: 502,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.INTERNAL: 502,
    grpc.StatusCode.UNKNOWN: 502,
    grpc.StatusCode.DATA_LOSS: 502,
}


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str = Field(examples=["urn:loraforge:problem:not-found"])
    title: str = Field(examples=["Not Found"])
    status: int = Field(examples=[404])
    detail: str = Field(examples=["project 'jane' not found; create it with POST /v1/projects"])
    instance: str | None = None
    errors: list[dict[str, Any]] | None = None

    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "type": "urn:loraforge:problem:not-found",
                    "title": "Not Found",
                    "status": 404,
                    "detail": "project 'jane' not found; create it with POST /v1/projects",
                }
            ]
        }
    }


def status_for(exc: BaseException) -> int:
    if isinstance(exc, RpcFailure):
        return HTTP_STATUS_BY_GRPC.get(exc.code, 502)
    for cls, status in HTTP_STATUS_BY_ERROR:
        if isinstance(exc, cls):
            return status
    return 500


def _slug(status: int) -> str:
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "-")
    except ValueError:
        return "error"


def problem_response(
    status: int,
    detail: str,
    request: Request | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    try:
        title = HTTPStatus(status).phrase
    except ValueError:
        title = "Error"
    body: dict[str, Any] = {
        "type": TYPE_BASE + _slug(status),
        "title": title,
        "status": status,
        "detail": detail,
    }
    if request is not None:
        body["instance"] = request.url.path
    body.update({k: v for k, v in extra.items() if v is not None})
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _detail(exc: BaseException, status: int) -> str:
    if isinstance(exc, RpcFailure):
        if exc.code is grpc.StatusCode.UNAVAILABLE:
            return (
                f"the {exc.service} service is not reachable right now ({exc.details}); "
                "retry later, or start it (`loraforge stack up`)"
            )
        if exc.code is grpc.StatusCode.DEADLINE_EXCEEDED:
            return f"the {exc.service} service did not answer in time; retry the request"
        if status >= 500:
            return f"the {exc.service} service failed ({exc.details}); see its log"
        return exc.details or f"the {exc.service} service refused the request"
    if status == 503 and isinstance(exc, (TimeoutError, nats_errors.Error)):
        return "the gateway's event bus (NATS) did not answer in time; retry in a few seconds"
    if status == 500:
        return "internal error in the gateway; see its log"
    return str(exc) or type(exc).__name__


def install(app: FastAPI) -> None:
    async def on_error(request: Request, exc: Exception) -> JSONResponse:
        status = status_for(exc)
        if status >= 500 and not isinstance(exc, RpcFailure):
            # an exception handler, not an except block: the exception is passed explicitly
            log.error("error on %s %s", request.method, request.url.path, exc_info=exc)
        headers = None
        if isinstance(exc, RateLimited):
            headers = {"Retry-After": str(max(1, math.ceil(exc.retry_after_s)))}
        elif status == 503:
            headers = {"Retry-After": "2"}
        if status == 401:
            headers = {"WWW-Authenticate": 'Bearer realm="loraforge"'}
        return problem_response(status, _detail(exc, status), request, headers)

    async def on_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no such endpoint {request.url.path}; see /openapi.json"
        if exc.status_code == 405:
            detail = f"{request.method} is not allowed on {request.url.path}; see /openapi.json"
        return problem_response(exc.status_code, detail, request, dict(exc.headers or {}) or None)

    async def on_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            {
                "loc": [str(p) for p in e.get("loc", ())],
                "msg": e.get("msg", ""),
                "type": e.get("type", ""),
            }
            for e in exc.errors()
        ]
        detail = "; ".join(f"{'.'.join(p['loc'])}: {p['msg']}" for p in problems[:10])
        return problem_response(422, f"fix these fields: {detail}", request, errors=problems)

    # Starlette types every handler as taking Exception; it calls each one only with the
    # class it is registered for, which is what these two annotate.
    app.add_exception_handler(RequestValidationError, on_validation)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, on_http)  # type: ignore[arg-type]
    app.add_exception_handler(errors.LoraforgeError, on_error)
    app.add_exception_handler(RpcFailure, on_error)
    app.add_exception_handler(Exception, on_error)


# Declared on every route so the OpenAPI shows the problem format.
PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": Problem, "content": {PROBLEM_JSON: {}}, "description": desc}
    for status, desc in (
        (400, "Bad input; `detail` says what to fix"),
        (401, "No or unknown API key"),
        (403, "A review token's grant does not cover this (read-only token)"),
        (404, "Not found (or another tenant's)"),
        (409, "Conflict with the current state"),
        (413, "Request body too large; nothing was stored"),
        (422, "Invalid fields"),
        (429, "Rate limited; see Retry-After"),
        (503, "A backend is unavailable; retry later"),
    )
}
