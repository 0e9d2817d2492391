"""The egress guard: every outbound request to a URL a tenant gave us goes through here.

Tenants name URLs (URL ingest sources, webhook targets); a server that fetches them on their
behalf must never reach what only the server can reach: loopback services (the object store's
filer serves every tenant's media without authentication), the cloud metadata service
(169.254.169.254), or other hosts of the private network. The rule:

- only http and https;
- the host name is resolved once, and EVERY address it resolves to must be public (not
  private, loopback, link-local, multicast, reserved, unspecified or otherwise not globally
  routable; IPv4-mapped, 6to4, Teredo and NAT64 IPv6 addresses are judged by the IPv4 address
  they carry), so that a name with one public and one private record cannot win a race;
- the connection goes to the address that was checked (the URL's host is replaced by the IP;
  the Host header and the TLS server name keep the name, so certificates are still verified
  against it), so a second lookup cannot rebind the name to an internal address;
- redirects are followed here, a bounded number of times, each hop checked like the first.

A library that makes its own requests (yt-dlp extracting a video page) is given `EgressProxy`:
a forward proxy on loopback through which every connection it opens (each redirect hop is a
new request) is checked the same way and goes to the checked address.

Development and tests run receivers on loopback; they list the networks they need in
`LORAFORGE_EGRESS__ALLOW` (comma-separated CIDRs). Nothing else bypasses the guard.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import select
import socket
import socketserver
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from loraforge.runtime.errors import ConfigurationError, InvalidInput

if TYPE_CHECKING:
    from loraforge.runtime.settings import Settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# NAT64 (RFC 6052) carries an IPv4 address in its last 32 bits; a resolver that synthesises
# AAAA records would otherwise turn 127.0.0.1 into a "global" IPv6 address.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
# Chunk size of streamed downloads: large enough to keep syscalls few on multi-GB videos.
_CHUNK = 1024 * 1024


class EgressRefused(InvalidInput):
    """A URL points (directly, through DNS or through a redirect) somewhere we must not go."""


def parse_networks(text: str) -> tuple[IPNetwork, ...]:
    """`"127.0.0.1/32, ::1"` -> networks; a bad entry raises ConfigurationError naming it."""
    nets: list[IPNetwork] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            nets.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise ConfigurationError(
                f"LORAFORGE_EGRESS__ALLOW: {part!r} is not an IP network; write CIDRs separated by "
                f"commas, e.g. 127.0.0.1/32,10.0.5.0/24"
            ) from None
    return tuple(nets)


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]  # the client's address
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def blocked_reason(ip: IPAddress) -> str | None:
    """Why `ip` is not a public address (None when it is)."""
    if isinstance(ip, ipaddress.IPv6Address):
        inner = _embedded_ipv4(ip)
        if inner is not None:
            why = blocked_reason(inner)
            return f"{why} ({inner}, carried in an IPv6 address)" if why else None
    # Order matters only for the message: the most specific name first.
    if ip.is_unspecified:
        return "the unspecified address"
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address (cloud metadata services live there)"
    if ip.is_multicast:
        return "a multicast address"
    if ip.is_private:
        return "a private-network address"
    if ip.is_reserved:
        return "a reserved address"
    if not ip.is_global:
        return "an address that is not publicly routable"
    return None


@dataclass(frozen=True)
class Target:
    """A checked URL: where to connect (`url`, host replaced by the checked IP) and what to send
    so that the server still sees the name (`headers`, `extensions`)."""

    original: str
    url: httpx.URL
    ip: IPAddress
    headers: dict[str, str]
    extensions: dict[str, Any]


@dataclass(frozen=True)
class Fetched:
    saved: bool  # the body is in `dest`
    url: str  # the last hop
    content_type: str
    size: int


@dataclass(frozen=True)
class EgressPolicy:
    allow: tuple[IPNetwork, ...] = ()
    url_ingest: bool = False
    max_redirects: int = 5

    @classmethod
    def from_settings(cls, settings: Settings) -> EgressPolicy:
        return cls(
            allow=parse_networks(settings.egress.allow), url_ingest=settings.egress.url_ingest
        )

    # -- checks -------------------------------------------------------------------------------

    def check_ip(self, ip: IPAddress, what: str) -> None:
        if any(ip.version == net.version and ip in net for net in self.allow):
            return
        if isinstance(ip, ipaddress.IPv6Address):
            inner = _embedded_ipv4(ip)
            if inner is not None and any(inner in n for n in self.allow if n.version == 4):
                return
        why = blocked_reason(ip)
        if why:
            raise EgressRefused(
                f"{what} resolves to {ip}, {why}; loraforge only connects to public addresses "
                f"for URLs you give it: use a publicly reachable URL (operators can allow a "
                f"network with LORAFORGE_EGRESS__ALLOW)"
            )

    def _split(self, url: str) -> tuple[httpx.URL, str, int]:
        try:
            u = httpx.URL(url)
        except (httpx.InvalidURL, TypeError) as exc:
            raise EgressRefused(
                f"{url!r} is not a valid URL ({exc}); write it as https://host/path"
            ) from None
        if u.scheme not in ("http", "https"):
            raise EgressRefused(
                f"{url!r}: only http and https URLs are allowed; write it as https://host/path"
            )
        if not u.host:
            raise EgressRefused(f"{url!r} has no host name; write it as https://host/path")
        return u, u.host, u.port or (443 if u.scheme == "https" else 80)

    def resolve(self, url: str) -> Target:
        """Resolve `url`'s host once and check every address; the Target connects to the first."""
        u, host, port = self._split(url)
        try:
            ips: Iterable[IPAddress] = [ipaddress.ip_address(host)]
        except ValueError:
            try:
                infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except (socket.gaierror, UnicodeError) as exc:
                raise EgressRefused(
                    f"{url}: the host name {host!r} does not resolve ({exc}); check the URL"
                ) from None
            # Scope ids ("fe80::1%eth0") are dropped: the address alone decides.
            ips = list(
                dict.fromkeys(ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos)
            )
            if not ips:
                raise EgressRefused(
                    f"{url}: the host name {host!r} has no address; check the URL"
                ) from None
        ips = list(ips)
        for ip in ips:
            self.check_ip(ip, f"{url} (host {host!r})")
        ip = ips[0]
        headers = {"Host": u.netloc.decode("ascii")}
        extensions: dict[str, Any] = {"sni_hostname": host} if u.scheme == "https" else {}
        return Target(url, u.copy_with(host=str(ip)), ip, headers, extensions)

    async def aresolve(self, url: str) -> Target:
        return await asyncio.to_thread(self.resolve, url)

    # -- a guarded download -------------------------------------------------------------------

    def download(
        self,
        url: str,
        dest: Path,
        *,
        headers: dict[str, str] | None = None,
        timeout: float = 30.0,
        max_bytes: int = 20 * 1024**3,
        accept: tuple[str, ...] = (),
    ) -> Fetched:
        """GET `url` into `dest`, following redirects here (each hop checked).

        `accept`: content-type prefixes worth saving (empty: any); a response of another type
        is not downloaded (`saved` False) so the caller can decide what to do with the URL.
        Network failures raise httpx.HTTPError."""
        current = url
        sent = dict(headers or {})
        for _hop in range(self.max_redirects + 1):
            target = self.resolve(current)
            # A client per hop: its connection pool is keyed by the IP, and a TLS connection
            # verified for one name must not carry a request for another. trust_env off: a
            # proxy would resolve the name again, past the check.
            with httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False) as client:
                request = client.build_request(
                    "GET",
                    target.url,
                    headers={**sent, **target.headers},
                    extensions=target.extensions,
                )
                resp = client.send(request, stream=True)
                try:
                    if resp.status_code in _REDIRECTS:
                        location = resp.headers.get("location")
                        if not location:
                            raise EgressRefused(
                                f"{current}: a redirect ({resp.status_code}) without a Location"
                            )
                        nxt = str(httpx.URL(current).join(location))
                        if httpx.URL(nxt).host != httpx.URL(current).host:
                            # Credentials and cookies were meant for the first host only.
                            sent = {
                                k: v
                                for k, v in sent.items()
                                if k.lower() not in ("authorization", "cookie")
                            }
                        current = nxt
                        continue
                    if resp.status_code >= 400:
                        raise EgressRefused(
                            f"{current}: the server answered HTTP {resp.status_code}; "
                            f"check that the link is public and correct"
                        )
                    ctype = resp.headers.get("content-type", "").split(";")[0].strip().lower()
                    if accept and not ctype.startswith(accept):
                        return Fetched(False, current, ctype, 0)
                    length = resp.headers.get("content-length") or "0"
                    declared = int(length) if length.isdigit() else 0
                    if declared > max_bytes:
                        raise EgressRefused(
                            f"{current}: {declared} bytes is more than the {max_bytes} "
                            f"allowed; download it yourself and upload a shorter file"
                        )
                    got = 0
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    try:
                        with dest.open("wb") as fh:
                            for chunk in resp.iter_bytes(_CHUNK):
                                got += len(chunk)
                                if got > max_bytes:
                                    raise EgressRefused(
                                        f"{current}: more than the {max_bytes} bytes allowed; "
                                        f"download it yourself and upload a shorter file"
                                    )
                                fh.write(chunk)
                    except BaseException:
                        dest.unlink(missing_ok=True)  # never leave half a file for the caller
                        raise
                    return Fetched(True, current, ctype, got)
                finally:
                    resp.close()
        raise EgressRefused(f"{url}: more than {self.max_redirects} redirects; give the final URL")


# -- a guarded forward proxy for libraries that make their own requests -----------------------


class EgressProxy:
    """A forward HTTP proxy on 127.0.0.1 that applies the guard to every connection through it.

    For a library that fetches on its own (yt-dlp's extractors request pages and APIs, follow
    redirects, build URLs from what a page says): handed `proxy=<url>`, it opens every
    connection here. `CONNECT host:port` (https) and absolute-form requests (`GET http://...`,
    plain http) are checked like `EgressPolicy.resolve` (every address the name resolves to
    must be allowed) and connected to the checked address; a refusal is answered 403 and kept
    in `refused` so the caller can say what was refused. TLS stays end to end (the library
    verifies the certificate against the name).

        with EgressProxy(policy) as proxy_url:
            ...  # the library, with proxy=proxy_url
    """

    def __init__(self, policy: EgressPolicy, timeout: float = 30.0):
        self.policy = policy
        self.timeout = timeout
        self.refused: list[str] = []
        self._server: socketserver.ThreadingTCPServer | None = None

    def __enter__(self) -> str:
        proxy = self

        class Handler(socketserver.StreamRequestHandler):
            rbufsize = 0  # unbuffered: what follows the head is relayed from the socket itself

            def handle(self) -> None:
                self.connection.settimeout(proxy.timeout)
                proxy._serve(self.connection, self.rfile)

        server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        self._server = server
        threading.Thread(target=server.serve_forever, args=(0.1,), daemon=True).start()
        return f"http://127.0.0.1:{server.server_address[1]}"

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def _serve(self, client: socket.socket, rfile: Any) -> None:
        head = rfile.readline(8192).decode("latin-1")
        lines = []
        while True:
            line = rfile.readline(8192).decode("latin-1")
            if line in ("\r\n", "\n", ""):
                break
            lines.append(line.rstrip("\r\n"))
        try:
            method, target, version = head.split()
        except ValueError:
            self._answer(client, 400, "a proxy request line is METHOD TARGET VERSION")
            return
        try:
            if method == "CONNECT":
                checked = self.policy.resolve(f"https://{target}/")
                port = checked.url.port or 443
                upstream = socket.create_connection((str(checked.ip), port), self.timeout)
                client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            else:
                checked = self.policy.resolve(target)
                if checked.url.scheme != "http":
                    raise EgressRefused(
                        f"{target}: https goes through CONNECT, not a plain request"
                    )
                port = checked.url.port or 80
                upstream = socket.create_connection((str(checked.ip), port), self.timeout)
                path = checked.url.raw_path.decode("ascii") or "/"
                kept = [
                    h
                    for h in lines
                    if not h.lower().startswith(("proxy-", "connection:", "keep-alive:"))
                ]
                request = [f"{method} {path} {version}", *kept, "Connection: close", "", ""]
                upstream.sendall("\r\n".join(request).encode("latin-1"))
        except EgressRefused as exc:
            self.refused.append(str(exc))
            self._answer(client, 403, str(exc))
            return
        except OSError as exc:
            self._answer(client, 502, f"{target}: could not connect ({exc})")
            return
        with upstream:
            self._relay(client, upstream)

    def _relay(self, a: socket.socket, b: socket.socket) -> None:
        """Bytes both ways until either side closes or nothing moves for `timeout`."""
        peers = {a: b, b: a}
        while True:
            ready, _, _ = select.select(list(peers), [], [], self.timeout)
            if not ready:
                return
            for sock in ready:
                try:
                    data = sock.recv(_CHUNK)
                except OSError:
                    return
                if not data:
                    return
                with contextlib.suppress(OSError):
                    peers[sock].sendall(data)

    @staticmethod
    def _answer(client: socket.socket, status: int, text: str) -> None:
        reason = {400: "Bad Request", 403: "Forbidden", 502: "Bad Gateway"}[status]
        body = text.encode()
        head = (
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        with contextlib.suppress(OSError):
            client.sendall(head.encode() + body)
