"""Webhook registration through the real gateway refuses targets that are not public (issue 19,
item 2): loopback, the cloud metadata address, private networks and names resolving to them.

The test gateway allow-lists 127.0.0.1/32 only (its receivers run there; see conftest), so
every other loopback address is still refused. "Public" names are made by answering DNS
(socket.getaddrinfo) for invented names; every other lookup is real.
"""

from __future__ import annotations

import ipaddress
import socket

import pytest

PROBLEM = "application/problem+json"


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    table: dict[str, str] = {}
    real = socket.getaddrinfo

    def fake(host, port, *args, **kwargs):  # type: ignore[no-untyped-def]
        if isinstance(host, str) and host in table:
            ip = ipaddress.ip_address(table[host])
            family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
            sa = (str(ip), port or 0, 0, 0) if ip.version == 6 else (str(ip), port or 0)
            return [(family, socket.SOCK_STREAM, 6, "", sa)]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    return table


async def test_webhook_targets_must_be_public(gateway, dns) -> None:
    dns.update(
        {
            "hooks.example.com": "93.184.216.34",
            "metadata.example.com": "169.254.169.254",
            "v6-loopback.example.com": "::1",
            "mapped.example.com": "::ffff:127.0.0.2",
            "intranet.example.com": "10.20.30.40",
        }
    )
    async with await gateway.client("acme") as c:
        await c.post("/v1/projects", json={"name": "jane"})
        for url in (
            "http://127.0.0.2:18888/",
            "http://169.254.169.254/latest/meta-data/",
            "http://[::1]:17100/v1/projects",
            "http://10.0.0.1/hook",
            "http://0.0.0.0:19333/",
            "http://metadata.example.com/latest/",
            "http://v6-loopback.example.com/",
            "http://mapped.example.com/",
            "http://intranet.example.com/hook",
        ):
            r = await c.post("/v1/projects/jane/webhooks", json={"url": url})
            assert r.status_code == 400, (url, r.text)
            assert r.headers["content-type"].startswith(PROBLEM)
            assert "public" in r.json()["detail"] and "resolves to" in r.json()["detail"], r.text
        r = await c.post("/v1/projects/jane/webhooks", json={"url": "http://nowhere.invalid/hook"})
        assert r.status_code == 400 and "does not resolve" in r.json()["detail"]
        assert (await c.get("/v1/projects/jane/webhooks")).json()["webhooks"] == []

        r = await c.post("/v1/projects/jane/webhooks", json={"url": "https://hooks.example.com/lf"})
        assert r.status_code == 201, r.text
        assert [
            h["url"] for h in (await c.get("/v1/projects/jane/webhooks")).json()["webhooks"]
        ] == ["https://hooks.example.com/lf"]
