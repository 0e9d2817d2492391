"""Pure parts of the gateway: signatures, tokens, rate limits, error mapping, no heavy deps."""

from __future__ import annotations

import time

import grpc
import pytest
from nats import errors as nats_errors

from loraforge.gateway import problems
from loraforge.gateway.auth import TokenBucket, hash_key, sign_page_token, verify_page_token
from loraforge.gateway.problems import RateLimited, RpcFailure, Unauthenticated
from loraforge.gateway.webhooks import sign, verify
from loraforge.runtime import errors


def test_webhook_signature_covers_timestamp_and_body() -> None:
    ts = str(int(time.time()))
    sig = sign("s3cret", ts, b'{"a":1}')
    assert sig.startswith("sha256=") and verify("s3cret", ts, b'{"a":1}', sig)
    assert not verify("s3cret", ts, b'{"a":2}', sig)
    assert not verify("other", ts, b'{"a":1}', sig)
    assert not verify("s3cret", str(int(ts) + 1), b'{"a":1}', sig)
    old = str(int(time.time()) - 3600)
    assert not verify("s3cret", old, b"x", sign("s3cret", old, b"x"))  # replay window


def test_page_tokens_are_signed_scoped_and_expire() -> None:
    token, _ = sign_page_token(b"k" * 32, "acme", "jane", "ds-1", "abcd", 60)
    p = verify_page_token(b"k" * 32, token)
    assert (p.tenant, p.page_project, p.page_dataset, p.is_page) == ("acme", "jane", "ds-1", True)
    with pytest.raises(Unauthenticated):
        verify_page_token(b"x" * 32, token)
    payload, sig = token.split(".")
    with pytest.raises(Unauthenticated):
        verify_page_token(b"k" * 32, payload[:-1] + "A." + sig)
    expired, _ = sign_page_token(b"k" * 32, "acme", "jane", "ds-1", "abcd", -1)
    with pytest.raises(Unauthenticated, match="expired"):
        verify_page_token(b"k" * 32, expired)


def test_token_bucket_refuses_over_burst_and_refills() -> None:
    bucket = TokenBucket(rate_per_s=100, burst=2)
    bucket.take("a")
    bucket.take("a")
    with pytest.raises(RateLimited) as info:
        bucket.take("a")
    assert 0 < info.value.retry_after_s <= 0.01 + 1e-9
    bucket.take("b")  # per key
    time.sleep(0.02)
    bucket.take("a")


def test_key_hash_is_sha256_hex() -> None:
    import hashlib

    assert hash_key("lf_x_y") == hashlib.sha256(b"lf_x_y").hexdigest()


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (errors.InvalidInput("x"), 400),
        (errors.NotFound("x"), 404),
        (errors.AlreadyExists("x"), 409),
        (errors.Conflict("x"), 409),
        (errors.InvalidTransition("x"), 409),
        (errors.Unavailable("x"), 503),
        (Unauthenticated("x"), 401),
        (RateLimited("x", 1), 429),
        (problems.PayloadTooLarge("x"), 413),
        (RpcFailure("ingest", grpc.StatusCode.INVALID_ARGUMENT, "bad"), 400),
        (RpcFailure("ingest", grpc.StatusCode.NOT_FOUND, "gone"), 404),
        (RpcFailure("ingest", grpc.StatusCode.PERMISSION_DENIED, "x"), 404),
        (RpcFailure("ingest", grpc.StatusCode.UNAVAILABLE, "down"), 503),
        (RpcFailure("ingest", grpc.StatusCode.DEADLINE_EXCEEDED, "slow"), 504),
        (RpcFailure("ingest", grpc.StatusCode.INTERNAL, "boom"), 502),
        (RuntimeError("bug"), 500),
        (nats_errors.TimeoutError(), 503),
        (nats_errors.ConnectionClosedError(), 503),
    ],
)
def test_one_mapping_from_errors_to_http(exc: BaseException, status: int) -> None:
    assert problems.status_for(exc) == status


def test_only_clients_imports_generated_code() -> None:
    from pathlib import Path

    import loraforge.gateway as pkg

    root = Path(pkg.__file__).parent
    offenders = [
        str(p.relative_to(root))
        for p in root.rglob("*.py")
        if p.name != "clients.py" and "loraforge.v1" in p.read_text()
    ]
    assert offenders == []


def test_caption_from_wire() -> None:
    from datetime import UTC, datetime

    from google.protobuf import timestamp_pb2

    from loraforge.gateway.clients import caption_from_wire
    from loraforge.v1 import captioning_pb2

    assert caption_from_wire(captioning_pb2.CaptionRecord(clip_id="c1")) is None  # not captioned
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(datetime(2025, 1, 1, 12, tzinfo=UTC))
    msg = captioning_pb2.CaptionRecord(
        clip_id="c1",
        dataset_id="ds",
        text="j4ne waving",
        approved=True,
        approved_by="key-1",
        versions=[
            captioning_pb2.CaptionVersion(text="j4ne smiling", author="machine:attributes"),
            captioning_pb2.CaptionVersion(text="j4ne waving", author="user:key-1", created_at=ts),
        ],
    )
    cap = caption_from_wire(msg, "j4ne")
    assert cap is not None
    assert (cap.text, cap.trigger, cap.approved, cap.approved_by) == (
        "j4ne waving",
        "j4ne",
        True,
        "key-1",
    )
    assert cap.edited and cap.author == "user:key-1" and cap.versions == 2
    assert cap.updated_at == datetime(2025, 1, 1, 12, tzinfo=UTC)


def test_the_render_example_in_the_api_docs_is_a_valid_scenario() -> None:
    from loraforge.gateway.models import RenderSubmit
    from loraforge.render.scenario import parse_scenario

    for example in RenderSubmit.model_config["json_schema_extra"]["examples"]:
        parse_scenario(example["scenario_yaml"])
