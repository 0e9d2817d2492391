"""The egress guard (issue 19, items 1 and 2): no private, loopback or link-local address on any
hop of a tenant-given URL, checked after DNS resolution and on every redirect.

Nothing here needs the internet: the "remote" servers are real HTTP servers on loopback (let
through by an explicit allow-list, as a dev stack would), and "public" host names are made by
answering DNS (socket.getaddrinfo) for a few invented names; every other lookup is real.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import ssl
import subprocess
import sys
import threading
import types
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from loraforge.ingest import errors as E
from loraforge.ingest.url import fetch_url
from loraforge.runtime.egress import (
    EgressPolicy,
    EgressProxy,
    EgressRefused,
    blocked_reason,
    parse_networks,
)
from loraforge.runtime.errors import ConfigurationError

REFUSED = [
    "127.0.0.1",
    "127.0.0.2",
    "169.254.169.254",
    "::1",
    "::ffff:127.0.0.1",
    "10.1.2.3",
    "172.16.0.9",
    "192.168.1.1",
    "0.0.0.0",
    "::",
    "224.0.0.1",
    "100.64.0.1",
    "fe80::1",
    "fc00::1",
    "64:ff9b::7f00:1",
    "2002:7f00:1::1",
    "240.0.0.1",
    "255.255.255.255",
]
PUBLIC = ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111"]
VIDEO = b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 64  # bytes only; nothing decodes them


class Server:
    """A real HTTP server on a loopback address that records the paths it was asked for."""

    def __init__(
        self,
        host: str,
        routes: dict[str, tuple[int, dict[str, str], bytes]],
        tls: ssl.SSLContext | None = None,
    ):
        self.hits: list[str] = []
        self.hosts: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                outer.hits.append(self.path)
                outer.hosts.append(self.headers.get("Host", ""))
                if self.command == "POST":
                    self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, headers, body = routes.get(self.path, (404, {}, b""))
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v.replace("PORT", str(outer.port)))
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer((host, 0), Handler)
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """Invented names -> addresses; `lookups` counts how often each name was resolved."""
    table: dict[str, list[str]] = {}
    lookups: dict[str, int] = {}
    real = socket.getaddrinfo

    def fake(host, port, *args, **kwargs):  # type: ignore[no-untyped-def]
        if isinstance(host, str) and host in table:
            lookups[host] = lookups.get(host, 0) + 1
            out = []
            for addr in table[host]:
                ip = ipaddress.ip_address(addr)
                family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
                sa = (addr, port or 0, 0, 0) if ip.version == 6 else (addr, port or 0)
                out.append((family, socket.SOCK_STREAM, 6, "", sa))
            return out
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    table["lookups"] = lookups  # type: ignore[assignment]
    return table


@pytest.fixture
def secret() -> Iterator[Server]:
    """Stands in for an internal service (the object store's filer) on another loopback address."""
    s = Server(
        "127.0.0.2", {"/secret.mp4": (200, {"Content-Type": "video/mp4"}, b"other tenant's clip")}
    )
    yield s
    s.close()


@pytest.fixture
def media(secret: Server) -> Iterator[Server]:
    s = Server(
        "127.0.0.1",
        {
            "/clip.mp4": (200, {"Content-Type": "video/mp4"}, VIDEO),
            "/moved": (302, {"Location": "/clip.mp4"}, b""),
            "/to-internal": (302, {"Location": f"http://127.0.0.2:{secret.port}/secret.mp4"}, b""),
            "/to-metadata": (301, {"Location": "http://169.254.169.254/latest/meta-data/"}, b""),
            "/to-name": (307, {"Location": "http://filer.corp.test:PORT/x.mp4"}, b""),
            "/loop": (302, {"Location": "/loop"}, b""),
            "/page": (200, {"Content-Type": "text/html"}, b"<html>a video page</html>"),
        },
    )
    yield s
    s.close()


LOOPBACK_DEV = EgressPolicy(allow=parse_networks("127.0.0.1/32"), url_ingest=True)


@pytest.mark.parametrize("addr", REFUSED)
def test_non_public_addresses_are_refused(addr: str) -> None:
    assert blocked_reason(ipaddress.ip_address(addr)) is not None
    with pytest.raises(EgressRefused, match="public"):
        EgressPolicy().resolve(f"http://{'[' + addr + ']' if ':' in addr else addr}:8080/x")


@pytest.mark.parametrize("addr", PUBLIC)
def test_public_addresses_pass_and_connect_to_the_checked_ip(addr: str, dns) -> None:
    dns["cdn.example.com"] = [addr]
    t = EgressPolicy().resolve("https://cdn.example.com/v/clip.mp4?x=1")
    assert t.ip == ipaddress.ip_address(addr)
    assert t.url.host == addr and t.url.path == "/v/clip.mp4" and t.url.query == b"x=1"
    # The server still sees the name, and TLS verifies the certificate against it.
    assert t.headers == {"Host": "cdn.example.com"} and t.extensions == {
        "sni_hostname": "cdn.example.com"
    }


@pytest.mark.parametrize(
    "addr", ["127.0.0.1", "169.254.169.254", "::1", "::ffff:127.0.0.1", "10.0.0.5"]
)
def test_names_resolving_to_internal_addresses_are_refused(addr: str, dns) -> None:
    dns["videos.example.com"] = [addr]
    with pytest.raises(
        EgressRefused,
        match=f"resolves to {ipaddress.ip_address(addr)}, .*public.*LORAFORGE_EGRESS__ALLOW",
    ):
        EgressPolicy(url_ingest=True).resolve("https://videos.example.com/a.mp4")


def test_one_private_record_among_public_ones_is_refused(dns) -> None:
    dns["mixed.example.com"] = ["93.184.216.34", "127.0.0.1"]
    with pytest.raises(EgressRefused, match=re.escape("127.0.0.1")):
        EgressPolicy().resolve("http://mixed.example.com/")


def test_bad_urls_and_allow_lists_say_what_to_fix() -> None:
    with pytest.raises(EgressRefused, match="only http and https"):
        EgressPolicy().resolve("ftp://example.com/a")
    with pytest.raises(EgressRefused, match="does not resolve"):
        EgressPolicy().resolve("http://no-such-host.invalid/")
    with pytest.raises(ConfigurationError, match="'localhost' is not an IP network"):
        parse_networks("127.0.0.1/32, localhost")
    # The allow-list lets through exactly what it names (IPv4-mapped forms included).
    allow = EgressPolicy(allow=parse_networks("127.0.0.1/32"))
    allow.check_ip(ipaddress.ip_address("::ffff:127.0.0.1"), "x")
    with pytest.raises(EgressRefused):
        allow.check_ip(ipaddress.ip_address("127.0.0.2"), "x")


# -- URL ingest -------------------------------------------------------------------------------


def test_url_ingest_is_off_unless_enabled(tmp_path: Path, media: Server) -> None:
    with pytest.raises(E.UrlSourceUnavailable, match="LORAFORGE_EGRESS__URL_INGEST=true"):
        fetch_url(f"http://127.0.0.1:{media.port}/clip.mp4", tmp_path, policy=EgressPolicy())
    assert media.hits == []


def test_a_direct_media_link_is_downloaded_through_allowed_redirects(
    tmp_path: Path, media: Server, dns
) -> None:
    dns["media.example.com"] = ["127.0.0.1"]  # "public" here: the dev allow-list lets it through
    path = fetch_url(
        f"http://media.example.com:{media.port}/moved", tmp_path / "d", policy=LOOPBACK_DEV
    )
    assert path.name == "clip.mp4" and path.read_bytes() == VIDEO
    assert media.hits == ["/moved", "/clip.mp4"]
    # One lookup per hop, and the connection went to the checked address: no second lookup
    # that a rebinding DNS server could answer differently.
    assert dns["lookups"]["media.example.com"] == 2


@pytest.mark.parametrize("path", ["/to-internal", "/to-metadata", "/to-name"])
def test_a_redirect_to_an_internal_address_is_refused(
    path: str, tmp_path: Path, media: Server, secret: Server, dns
) -> None:
    dns["media.example.com"] = ["127.0.0.1"]
    dns["filer.corp.test"] = ["10.0.0.5"]
    url = f"http://media.example.com:{media.port}{path}"
    with pytest.raises(E.UrlFetchFailed, match=r"resolves to .*public"):
        fetch_url(url, tmp_path / "d", policy=LOOPBACK_DEV)
    assert secret.hits == []  # the internal service never saw a request
    assert not (tmp_path / "d").exists() or not any((tmp_path / "d").iterdir())  # nothing saved


def test_redirect_loops_and_web_pages_without_yt_dlp(
    tmp_path: Path, media: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(E.UrlFetchFailed, match="more than 5 redirects"):
        fetch_url(f"http://127.0.0.1:{media.port}/loop", tmp_path, policy=LOOPBACK_DEV)
    monkeypatch.setitem(sys.modules, "yt_dlp", None)  # makes the import fail like a missing package
    with pytest.raises(E.UrlSourceUnavailable, match=r"yt-dlp.*upload the file"):
        fetch_url(f"http://127.0.0.1:{media.port}/page", tmp_path, policy=LOOPBACK_DEV)
    with pytest.raises(E.UrlFetchFailed, match="HTTP 404"):
        fetch_url(f"http://127.0.0.1:{media.port}/gone.mp4", tmp_path, policy=LOOPBACK_DEV)


# -- webhook delivery -------------------------------------------------------------------------


async def test_webhook_delivery_checks_the_target_again_and_follows_no_redirect(dns) -> None:
    from loraforge.gateway.webhooks import WebhookDispatcher

    receiver = Server(
        "127.0.0.1", {"/hook": (204, {}, b""), "/bounce": (302, {"Location": "/hook"}, b"")}
    )
    hook = {
        "id": "wh-000000000001",
        "secret": "s",
        "url": f"http://hooks.example.com:{receiver.port}/hook",
    }
    payload = {"type": "ingest.job.progress", "event_id": "e1", "final": False}
    strict = WebhookDispatcher(None, None, attempts=1, egress=EgressPolicy())  # type: ignore[arg-type]
    dev = WebhookDispatcher(None, None, attempts=1, egress=LOOPBACK_DEV)  # type: ignore[arg-type]
    try:
        # Registered while the name was public; by delivery time it points at loopback.
        dns["hooks.example.com"] = ["127.0.0.1"]
        assert await strict._deliver(hook, payload) is False
        dns["hooks.example.com"] = ["169.254.169.254"]
        assert await dev._deliver(hook, payload) is False
        assert receiver.hits == []
        dns["hooks.example.com"] = ["127.0.0.1"]  # allowed by the dev allow-list: delivered
        assert await dev._deliver(hook, payload) is True
        assert receiver.hits == ["/hook"]
        assert (
            await dev._deliver(
                {**hook, "url": f"http://hooks.example.com:{receiver.port}/bounce"}, payload
            )
            is False
        )
        assert receiver.hits == ["/hook", "/bounce"]  # the redirect was not followed
    finally:
        await strict.close()
        await dev.close()
        receiver.close()


def _self_signed(cert: Path, key: Path) -> None:
    """A certificate for hooks.example.com (openssl, a few ms)."""
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=hooks.example.com",
            "-addext",
            "subjectAltName=DNS:hooks.example.com",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )


async def test_https_webhooks_connect_to_the_checked_ip_and_verify_the_name(
    tmp_path: Path, dns, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The connection goes to the checked IP, yet TLS still verifies the certificate against
    the host name (SNI), and the Host header names it: a certificate for another name fails."""
    from loraforge.gateway.webhooks import WebhookDispatcher

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    _self_signed(cert, key)  # before the loop serves anything: blocking is harmless
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # the receiver's certificate is the only CA
    receiver = Server("127.0.0.1", {"/hook": (204, {}, b"")}, tls=ctx)
    dns["hooks.example.com"] = ["127.0.0.1"]
    dns["other.example.com"] = ["127.0.0.1"]
    dev = WebhookDispatcher(None, None, attempts=1, egress=LOOPBACK_DEV)  # type: ignore[arg-type]
    payload = {"type": "ingest.job.progress", "event_id": "e1", "final": False}
    try:
        hook = {
            "id": "wh-000000000002",
            "secret": "s",
            "url": f"https://hooks.example.com:{receiver.port}/hook",
        }
        assert await dev._deliver(hook, payload) is True
        assert receiver.hosts == [f"hooks.example.com:{receiver.port}"]
        other = {**hook, "url": f"https://other.example.com:{receiver.port}/hook"}
        assert await dev._deliver(other, payload) is False  # certificate is not for this name
        assert len(receiver.hits) == 1
    finally:
        await dev.close()
        receiver.close()


def test_production_refuses_allow_lists_that_open_loopback_or_link_local() -> None:
    from loraforge.runtime.settings import EgressSettings, Settings

    prod = {"env": "production", "s3": {"secret_key": "a-real-secret-of-some-length"}}
    for allow in ("127.0.0.1/32", "10.0.5.0/24,169.254.169.254/32", "::1", "0.0.0.0/0"):
        with pytest.raises(ConfigurationError, match=r"LORAFORGE_EGRESS__ALLOW.*production"):
            Settings(**prod, egress=EgressSettings(allow=allow))
    Settings(**prod, egress=EgressSettings(allow="10.0.5.0/24"))  # a real internal receiver
    Settings(env="development", egress=EgressSettings(allow="127.0.0.1/32"))


@pytest.mark.parametrize(
    "url",
    [
        "http://2130706433/",
        "http://0x7f.1/",
        "http://0177.0.0.1/",
        "http://127.1/",
        "http://localhost:19333/",
        "http://[::ffff:7f00:1]/",
        "http://[0:0:0:0:0:ffff:169.254.169.254]/latest/meta-data/",
    ],
)
def test_other_spellings_of_internal_addresses_are_refused(url: str) -> None:
    # Decimal, hex and short IPv4 forms reach the resolver, which answers the real address.
    with pytest.raises(EgressRefused):
        EgressPolicy(url_ingest=True).resolve(url)


# -- yt-dlp's own requests: the guard's forward proxy ------------------------------------------


def test_the_proxy_checks_every_request_and_every_hop(media: Server, secret: Server, dns) -> None:
    """What a library handed `proxy=` does: plain http in absolute form, each redirect a new
    request through the proxy; an internal address on any of them is refused (403) and the
    internal service sees nothing."""
    dns["media.example.com"] = ["127.0.0.1"]
    proxy = EgressProxy(LOOPBACK_DEV, timeout=5)
    with proxy as url, httpx.Client(proxy=url, trust_env=False, timeout=5) as client:
        ok = client.get(f"http://media.example.com:{media.port}/moved", follow_redirects=True)
        assert ok.status_code == 200 and ok.content == VIDEO
        assert media.hits == ["/moved", "/clip.mp4"] and media.hosts[0].startswith("media.")
        for path in ("/to-internal", "/to-metadata"):
            r = client.get(f"http://media.example.com:{media.port}{path}", follow_redirects=True)
            assert r.status_code == 403 and "public" in r.text
        r = client.get(f"http://127.0.0.2:{secret.port}/secret.mp4")
        assert r.status_code == 403 and "loopback" in r.text
    assert secret.hits == []
    assert len(proxy.refused) == 3


@pytest.mark.parametrize("target", ["127.0.0.2:443", "169.254.169.254:443", "localhost:22"])
def test_the_proxy_refuses_tunnels_to_internal_addresses(target: str) -> None:
    with EgressProxy(EgressPolicy(url_ingest=True), timeout=5) as url:
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), 5) as s:
            s.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
            answer = s.recv(4096).decode()
    assert answer.startswith("HTTP/1.1 403") and "only connects to public addresses" in answer


def test_the_proxy_tunnels_to_an_allowed_address(media: Server) -> None:
    with EgressProxy(LOOPBACK_DEV, timeout=5) as url:
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), 5) as s:
            s.sendall(f"CONNECT 127.0.0.1:{media.port} HTTP/1.1\r\n\r\n".encode())
            assert s.recv(4096).startswith(b"HTTP/1.1 200")
            s.sendall(b"GET /clip.mp4 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            got = b""
            while chunk := s.recv(65536):
                got += chunk
    assert got.startswith(b"HTTP/1.0 200") and got.endswith(VIDEO)


class _FakeYoutubeDL:
    """Stands in for yt-dlp (an external library, not installed here): its extractor fetches
    an API URL the page named, through the proxy it was given, as yt-dlp's networking does."""

    api = ""
    media = ""

    def __init__(self, opts: dict) -> None:
        self.opts = opts

    def __enter__(self) -> _FakeYoutubeDL:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def extract_info(self, url: str, download: bool = False) -> dict:
        assert self.opts["proxy"].startswith("http://127.0.0.1:") and not download
        opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({"http": self.opts["proxy"]})
        )
        try:
            opener.open(self.api, timeout=5).read()
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"ERROR: Unable to download API page: HTTP {exc.code}") from exc
        return {"url": self.media, "id": "v1", "ext": "mp4"}


def test_yt_dlp_requests_go_through_the_guard(
    tmp_path: Path, media: Server, secret: Server, dns, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Attack: a page whose extraction makes yt-dlp request an internal address (an API host
    the page names). Before, yt-dlp fetched it directly; now its requests go through the
    guard's proxy: refused, and the ingest error says why."""
    dns["media.example.com"] = ["127.0.0.1"]
    monkeypatch.setitem(sys.modules, "yt_dlp", types.SimpleNamespace(YoutubeDL=_FakeYoutubeDL))
    page = f"http://media.example.com:{media.port}/page"
    monkeypatch.setattr(_FakeYoutubeDL, "api", f"http://127.0.0.2:{secret.port}/secret.mp4")
    with pytest.raises(E.UrlFetchFailed, match=r"127\.0\.0\.2.*a loopback address"):
        fetch_url(page, tmp_path / "a", policy=LOOPBACK_DEV)
    assert secret.hits == []
    # a page whose requests stay on allowed addresses works as before
    monkeypatch.setattr(_FakeYoutubeDL, "api", f"http://media.example.com:{media.port}/page")
    monkeypatch.setattr(_FakeYoutubeDL, "media", f"http://media.example.com:{media.port}/clip.mp4")
    path = fetch_url(page, tmp_path / "b", policy=LOOPBACK_DEV)
    assert path.name == "v1.mp4" and path.read_bytes() == VIDEO
