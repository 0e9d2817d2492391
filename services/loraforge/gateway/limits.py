"""Request-body limits, enforced as the bytes arrive (pure ASGI, before any parsing).

A declared Content-Length over the limit is refused at once; a body that grows past it
(chunked, or lying about its length) fails its read with 413. Uploads get the upload limit,
everything else the JSON limit. Nothing is stored by a refused request: uploads go to a
staging key only after the whole body arrived.
"""

from __future__ import annotations

import json

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from loraforge.gateway.problems import PROBLEM_JSON

UPLOAD_SUFFIX = "/uploads"
# seed 004's hosted API takes its dataset zips here (routers/compat.py)
UPLOAD_PATHS = ("/api/v1/files",)
# A refused body is still read (and dropped) up to this much, so that clients which send the
# whole body before reading the response (most do) see the 413 instead of a reset connection.
DRAIN_CAP = 64 * 1024 * 1024


async def _drain(receive: Receive, more: bool, already: int = 0) -> None:
    drained = already
    while more and drained < DRAIN_CAP:
        message = await receive()
        if message["type"] != "http.request":
            return
        drained += len(message.get("body", b""))
        more = message.get("more_body", False)


class BodyLimit:
    def __init__(self, app: ASGIApp, *, upload_bytes: int, body_bytes: int):
        self.app = app
        self.upload_bytes = upload_bytes
        self.body_bytes = body_bytes

    def _limit(self, scope: Scope) -> int:
        path = scope.get("path", "")
        upload = path.endswith(UPLOAD_SUFFIX) or path.rstrip("/") in UPLOAD_PATHS
        return self.upload_bytes if upload else self.body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self._limit(scope)
        declared = None
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = None
        if declared is not None and declared > limit:
            await _drain(receive, True)
            await _too_large(send, scope, declared, limit)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    await _drain(receive, message.get("more_body", False), seen)
                    # HTTPException is re-raised by FastAPI's body reading -> problems handler
                    raise HTTPException(413, _detail(scope, seen, limit))
            return message

        await self.app(scope, limited, send)


def _detail(scope: Scope, size: int, limit: int) -> str:
    hint = (
        " ; use POST .../uploads/presigned for big files"
        if scope.get("path", "").endswith(UPLOAD_SUFFIX)
        else ""
    )
    return f"request body of {size}+ bytes is over the {limit}-byte limit; nothing was stored{hint}"


async def _too_large(send: Send, scope: Scope, size: int, limit: int) -> None:
    body = json.dumps(
        {
            "type": "urn:loraforge:problem:content-too-large",
            "title": "Content Too Large",
            "status": 413,
            "detail": _detail(scope, size, limit),
            "instance": scope.get("path", ""),
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", PROBLEM_JSON.encode()),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
