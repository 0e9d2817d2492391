"""`loraforge ingest` against the in-process ingest service and the test S3 server."""

from __future__ import annotations

import asyncio
import json

import typer
from typer.testing import CliRunner

from loraforge.cli import ingest_cmd
from loraforge.stack.binaries import free_port

from .conftest import PROJECT, TENANT


def _app() -> typer.Typer:
    app = typer.Typer()
    ingest_cmd.register(app)

    @app.command("noop", hidden=True)
    def _noop() -> None:  # a second command keeps typer from flattening `ingest` away
        pass

    return app


def _env(monkeypatch, settings, ingest_target: str) -> None:
    s3 = settings.s3
    monkeypatch.setenv("LORAFORGE_S3__ENDPOINT", s3.endpoint)
    monkeypatch.setenv("LORAFORGE_S3__ACCESS_KEY", s3.access_key)
    monkeypatch.setenv("LORAFORGE_S3__SECRET_KEY", s3.secret_key.get_secret_value())
    monkeypatch.setenv("LORAFORGE_S3__BUCKET_PREFIX", s3.bucket_prefix)
    monkeypatch.setenv("LORAFORGE_ENDPOINTS__INGEST", ingest_target)


async def test_cli_uploads_waits_and_reports_per_file(ingest, settings, media, monkeypatch):
    _env(monkeypatch, settings, f"127.0.0.1:{ingest.process.port}")
    args = [
        "ingest",
        str(media / "two_shots.mp4"),
        str(media / "cat.jpg"),
        str(media / "notes.mp4"),
        "--project",
        PROJECT,
        "--tenant",
        TENANT,
        "--min-s",
        "2",
        "--max-s",
        "3",
        "--json",
    ]
    res = await asyncio.to_thread(CliRunner().invoke, _app(), args)
    assert res.exit_code == 0, res.output
    view = json.loads(res.stdout)
    assert view["state"] == "SUCCEEDED" and view["clips"] == 3
    by_name = {s["source"].rsplit("/", 1)[-1]: s for s in view["sources"]}
    assert by_name["two_shots.mp4"]["clips"] == 2 and by_name["cat.jpg"]["clips"] == 1
    assert [e["source"].rsplit("/", 1)[-1] for e in view["errors"]] == ["notes.mp4"]
    assert view["errors"][0]["error"].startswith("notes.mp4: ")  # the user's name, not the hash

    # Human output, --no-wait: the job is started and left to run.
    args = ["ingest", str(media), "--project", PROJECT, "--tenant", TENANT, "--no-wait"]
    res = await asyncio.to_thread(CliRunner().invoke, _app(), args)
    assert res.exit_code == 0, res.output
    assert "already stored" in res.stdout and "job " in res.stdout


async def test_cli_says_how_to_start_an_unreachable_service(settings, store, monkeypatch):
    _env(monkeypatch, settings, f"127.0.0.1:{free_port()}")
    args = ["ingest", "https://example.invalid/v", "--project", PROJECT, "--json"]
    res = await asyncio.to_thread(CliRunner().invoke, _app(), args)
    assert res.exit_code == 1
    assert "loraforge stack up" in json.loads(res.stdout)["error"]
    res = await asyncio.to_thread(
        CliRunner().invoke, _app(), ["ingest", "/no/such/file.mp4", "--project", PROJECT]
    )
    assert res.exit_code == 2 and "no such file" in res.output
