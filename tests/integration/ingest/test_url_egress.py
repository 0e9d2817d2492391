"""URL ingest through the real ingest service (issue 19, item 1): a link that redirects to an
internal address (here another loopback address standing in for the object store's filer)
fails on its own with a reason and the internal server never sees a request, while a direct
media link on an allowed address is ingested like an upload.

The service runs with URL ingest on and 127.0.0.1/32 allow-listed (a dev stack's receivers
live there), through its real composition root (`ingest.main.mount`)."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import grpc
import pytest

from loraforge.ingest.main import mount
from loraforge.runtime.host import ServiceProcess
from loraforge.runtime.servicers import dict_from_struct
from loraforge.runtime.settings import EgressSettings
from loraforge.v1 import common_pb2, ingest_pb2, ingest_pb2_grpc

from .conftest import SCOPE, Ingest


class _Files:
    """A real HTTP server on `host` serving fixed answers and recording the paths asked for."""

    def __init__(self, host: str, routes: dict[str, tuple[int, dict[str, str], bytes]]):
        self.hits: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.hits.append(self.path)
                status, headers, body = routes.get(self.path, (404, {}, b""))
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def servers(media: Path) -> Iterator[tuple[_Files, _Files]]:
    video = (media / "two_shots.mp4").read_bytes()
    filer = _Files("127.0.0.2", {"/tenant-b/clip.mp4": (200, {"Content-Type": "video/mp4"}, video)})
    site = _Files(
        "127.0.0.1",
        {
            "/two_shots.mp4": (200, {"Content-Type": "video/mp4"}, video),
            "/share": (302, {"Location": f"http://127.0.0.2:{filer.port}/tenant-b/clip.mp4"}, b""),
        },
    )
    yield site, filer
    site.close()
    filer.close()


@pytest.fixture
async def url_ingest(settings, store) -> AsyncIterator[Ingest]:
    on = settings.model_copy(
        update={"egress": EgressSettings(url_ingest=True, allow="127.0.0.1/32")}
    )
    proc = ServiceProcess("ingest", on, mount, drain_delay_s=0.0)
    await proc.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{proc.port}")
    try:
        yield Ingest(proc, ingest_pb2_grpc.IngestServiceStub(channel), [])
    finally:
        await channel.close()
        await proc.stop()


async def test_url_ingest_refuses_a_redirect_to_an_internal_address(url_ingest, servers) -> None:
    site, filer = servers
    good = f"http://127.0.0.1:{site.port}/two_shots.mp4"
    steal = f"http://127.0.0.1:{site.port}/share"
    job = await url_ingest.stub.StartIngest(
        ingest_pb2.StartIngestRequest(
            scope=SCOPE, request_id="urls", sources=[good, steal], min_s=2, max_s=3, fps=16
        ),
        timeout=5,
    )
    job = await url_ingest.wait(job.id)
    assert job.state == common_pb2.JOB_STATE_SUCCEEDED, job.message
    result = dict_from_struct(job.result)
    errors = {e["source"]: e for e in result["errors"]}
    assert list(errors) == [steal]
    assert errors[steal]["error_type"] == "UrlFetchFailed"
    assert "127.0.0.2" in errors[steal]["error"] and "public" in errors[steal]["error"]
    assert filer.hits == []  # the internal server never saw a request
    assert result["clips"] == 2  # the allowed link: one clip per shot, like an upload
    assert site.hits == ["/two_shots.mp4", "/share"] or site.hits == ["/share", "/two_shots.mp4"]
