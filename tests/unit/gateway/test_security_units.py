"""Issue 19 (settings and uploads): production refuses the example credentials that ship in
.env.example and the dev overlay; presigned PUT URLs sign the body's length."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from loraforge.gateway.presign import presigned_put_sized
from loraforge.runtime.errors import ConfigurationError
from loraforge.runtime.settings import S3Settings, Settings

ROOT = Path(__file__).resolve().parents[3]
REAL_SECRET = "q8Zt1vRw0pLk3nXe7sYb"


def _template_credentials() -> list[tuple[str, str]]:
    """(setting, value) of every S3 credential in the shipped templates."""
    env = dict(re.findall(r"^([A-Z0-9_]+)=(.*)$", (ROOT / ".env.example").read_text(), re.M))
    secret = yaml.safe_load((ROOT / "k8s/overlays/dev/secret.yaml").read_text())["stringData"]
    creds = [
        ("secret_key", env["LORAFORGE_S3_SECRET_KEY"]),
        ("access_key", env["LORAFORGE_S3_ACCESS_KEY"]),
        ("secret_key", env["MINIO_ROOT_PASSWORD"]),
        ("secret_key", secret["LORAFORGE_S3__SECRET_KEY"]),
        ("access_key", secret["LORAFORGE_S3__ACCESS_KEY"]),
    ]
    assert len(creds) == 5 and all(v for _, v in creds)
    return creds


@pytest.mark.parametrize(("field", "value"), _template_credentials())
def test_production_refuses_the_example_credentials_naming_the_setting(
    field: str, value: str
) -> None:
    s3 = {"secret_key": REAL_SECRET, field: value}
    with pytest.raises(ConfigurationError, match=f"LORAFORGE_S3__{field.upper()}"):
        Settings(env="production", s3=s3)
    Settings(env="development", s3=s3)  # development runs on them


def test_production_accepts_real_credentials() -> None:
    assert Settings(env="production", s3={"access_key": "lf-prod-7f2c", "secret_key": REAL_SECRET})
    with pytest.raises(ConfigurationError, match="OPENAI_API_KEY"):
        Settings(
            env="production",
            s3={"secret_key": REAL_SECRET},
            captioning={"openai_api_key": "CHANGE_ME"},
        )


def test_presigned_put_signs_content_length_per_sigv4() -> None:
    """The AWS documentation's example credentials and date; the URL names content-length
    among the signed headers and a different size gives a different signature."""
    s3 = S3Settings(
        endpoint="examplebucket.s3.amazonaws.com:443",
        access_key="AKIAIOSFODNN7EXAMPLE",
        secret_key="wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        secure=True,
    )
    when = datetime(2013, 5, 24, tzinfo=UTC)
    url = presigned_put_sized(s3, "raw", "_staging/gw.a.b.c", 1000, 3600, now=when)
    q = parse_qs(urlsplit(url).query)
    assert q["X-Amz-SignedHeaders"] == ["content-length;host"]
    assert q["X-Amz-Credential"] == ["AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request"]
    assert q["X-Amz-Date"] == ["20130524T000000Z"] and q["X-Amz-Expires"] == ["3600"]
    assert urlsplit(url).path == "/raw/_staging/gw.a.b.c"
    other = presigned_put_sized(s3, "raw", "_staging/gw.a.b.c", 1001, 3600, now=when)
    assert parse_qs(urlsplit(other).query)["X-Amz-Signature"] != q["X-Amz-Signature"]
    with pytest.raises(ValueError, match="expires_s must be"):
        presigned_put_sized(s3, "raw", "k", 10, 8 * 24 * 3600)


def test_kubernetes_calls_time_out_against_an_apiserver_that_never_answers() -> None:
    """Attack/fault: the API server accepts connections and never answers. Every call of the
    GPU Job controller (real kubernetes client) must give up after the controller's read
    timeout instead of blocking its thread forever."""
    import socket
    import threading
    import time

    kubernetes = pytest.importorskip("kubernetes")
    from loraforge.runtime.k8s_controller import API_TIMEOUT_S, GpuJobController, LogCursor

    assert all(0 < t <= 60 for t in API_TIMEOUT_S)
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:  # accept, read nothing, answer nothing
        silent.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(silent.accept()[0])
            except OSError:
                continue

    threading.Thread(target=accept, daemon=True).start()
    conf = kubernetes.client.Configuration()
    conf.host = f"http://127.0.0.1:{silent.getsockname()[1]}"
    conf.retries = False
    api = kubernetes.client.ApiClient(conf)

    class Train(GpuJobController):
        kind = "train"

    ctl = Train(
        kubernetes.client.BatchV1Api(api),
        kubernetes.client.CoreV1Api(api),
        "lf",
        "img:1",
        request_timeout=(1.0, 0.5),
    )
    calls = {
        "create": lambda: ctl.create("run-1"),
        "status": lambda: ctl.status("run-1"),
        "logs": lambda: ctl.new_log_lines("run-1", LogCursor()),
        "cancel": lambda: ctl.cancel("run-1"),
    }
    try:
        for name, call in calls.items():
            t0 = time.monotonic()
            with pytest.raises(Exception) as err:  # noqa: PT011 - urllib3's timeout, as raised
                call()
            took = time.monotonic() - t0
            assert took < 5, f"{name} blocked {took:.1f}s"
            assert (
                "timed out" in str(err.value).lower()
                or "timeout" in type(err.value).__name__.lower()
            ), err.value
    finally:
        stop.set()
        for s in held:
            s.close()
        silent.close()


def _call(n: int, final: bool = False) -> dict:
    return {"event_id": f"e{n}", "final": final, "payload": {"n": n}}


def test_a_full_outbox_drops_progress_first_and_keeps_final_calls() -> None:
    from loraforge.gateway.webhooks import append_call, remove_call

    rec = None
    for n, final in enumerate([False, True, False, False, True]):
        rec = append_call(rec, _call(n, final), backlog=3)
    # 5 calls into 3 places: the two oldest progress calls went, both finals stayed
    assert [i["event_id"] for i in rec["items"]] == ["e1", "e3", "e4"] and rec["dropped"] == 2
    assert append_call(rec, _call(3), backlog=3) == rec  # a redelivered event is held once
    rec = append_call(rec, _call(5, True), backlog=3)
    rec = append_call(rec, _call(6, True), backlog=3)
    # e3 (progress) went first; then only finals were left: the oldest final goes
    assert [i["event_id"] for i in rec["items"]] == ["e4", "e5", "e6"] and rec["dropped"] == 4
    rec = remove_call(remove_call(rec, "e4"), "e5")
    assert [i["event_id"] for i in rec["items"]] == ["e6"]
    assert remove_call(rec, "e6") is None  # empty: the record goes


def test_breaker_opens_after_consecutive_failures_and_backs_off() -> None:
    from loraforge.gateway.webhooks import MAX_COOLDOWN_S, Breaker

    b = Breaker(failures_to_open=3, cooldown_s=10)
    assert b.failure(0) == 0 and b.failure(1) == 0 and not b.is_open(1)
    assert b.failure(2) == 10 and b.is_open(5) and not b.is_open(12.1)
    assert b.failure(13) == 20  # the probe after the cool-down failed: open again, twice as long
    b.success()
    assert not b.is_open(16) and b.failure(16) == 0  # a success resets the count
    for t in range(100):
        b.failure(100 + t)
    assert b.failure(300) <= MAX_COOLDOWN_S
