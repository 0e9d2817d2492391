"""The same error gets the same exit code over both transports: a gRPC status from the local
stack and the gateway's HTTP answer for it become the same project error."""

from __future__ import annotations

import grpc
import httpx
import pytest

from loraforge.cli.backend import rpc_error
from loraforge.cli.output import exit_code
from loraforge.cli.remote import refusal


class _Status(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode):
        self._code = code

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return "why"


@pytest.mark.parametrize(
    ("status", "http", "expected"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, 422, 2),  # a request the service refuses
        (grpc.StatusCode.INVALID_ARGUMENT, 400, 2),
        (grpc.StatusCode.NOT_FOUND, 404, 2),
        (grpc.StatusCode.FAILED_PRECONDITION, 409, 2),  # e.g. a version a deployment uses
        (grpc.StatusCode.ABORTED, 409, 2),
        (grpc.StatusCode.UNAVAILABLE, 503, 1),
        (grpc.StatusCode.DEADLINE_EXCEEDED, 504, 1),
        (grpc.StatusCode.PERMISSION_DENIED, 403, 1),
        (grpc.StatusCode.INTERNAL, 500, 1),
    ],
)
def test_both_transports_give_one_exit_code(status, http, expected) -> None:
    over_grpc = rpc_error(_Status(status), service="render", target="h:1")
    over_http = refusal(httpx.Response(http, json={"detail": "why"}))
    assert exit_code(over_grpc) == exit_code(over_http) == expected
    if expected == 2:  # what the user can fix is the same error class too
        assert type(over_grpc) is type(over_http)
