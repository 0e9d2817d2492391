"""loraforge.cli.remote.Remote against httpx.MockTransport: retries, error messages and the
exit code each error gets (loraforge.cli.output.exit_code)."""

from __future__ import annotations

import httpx
import pytest

from loraforge.cli import remote as remote_mod
from loraforge.cli.backend import local_only
from loraforge.cli.output import exit_code
from loraforge.cli.remote import Remote
from loraforge.runtime.errors import LoraforgeError


def _problem(status: int, detail: str, **headers: str) -> httpx.Response:
    return httpx.Response(
        status,
        headers={"content-type": "application/problem+json", **headers},
        json={"type": "urn:x", "title": "t", "status": status, "detail": detail},
    )


def _remote(handler) -> Remote:
    return Remote("http://gw.test", "lf_k", transport=httpx.MockTransport(handler))


@pytest.fixture(autouse=True)
def _fast_retries(monkeypatch):
    import tenacity

    monkeypatch.setattr(tenacity.nap, "sleep", lambda s: None)


def test_retries_502_503_504_then_succeeds():
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["X-API-Key"])
        return _problem(503, "busy") if len(seen) < 3 else httpx.Response(200, json={"jobs": []})

    assert _remote(handler).request("GET", "/v1/jobs") == {"jobs": []}
    assert seen == ["lf_k"] * 3


@pytest.mark.parametrize(
    ("status", "headers", "words", "code"),
    [
        (401, {}, ["401", "API key", "LF_API_KEY"], 1),
        (404, {}, ["404", "nope"], 2),
        (413, {}, ["413", "too large"], 2),
        (429, {"Retry-After": "7"}, ["429", "retry in 7 s"], 1),
        (422, {}, ["nope (422)"], 2),
        (504, {}, ["unavailable (504)"], 1),
    ],
)
def test_problem_details_become_cli_errors(status, headers, words, code):
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return _problem(status, "nope", **headers)

    with pytest.raises(LoraforgeError) as exc:
        _remote(handler).request("GET", "/v1/jobs")
    assert exit_code(exc.value) == code
    out = str(exc.value)
    assert all(w in out for w in words), out
    assert len(calls) == (4 if status == 504 else 1)


def test_local_only_names_the_command():
    import click

    ctx = click.Context(click.Command("sweep"), obj=remote_mod.CliContext(api="http://gw"))
    with pytest.raises(LoraforgeError) as exc:
        local_only(ctx, "sweep")
    assert exit_code(exc.value) == 2 and "`loraforge sweep` is local-only" in str(exc.value)
