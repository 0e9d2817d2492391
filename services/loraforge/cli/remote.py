"""The CLI against a remote gateway (`loraforge --api URL --key KEY ...`): a small HTTP client
for the gateway's REST API (docs/openapi.json), with the same output and exit-code policy as
the gRPC path (`jobs.call` / `jobs.follow`).

    remote = remote_of(ctx)            # None: talk to the local stack (the default)
    remote.ensure_project(p)           # ingest creates a missing project
    key = remote.upload(p, path)["key"]
    job = remote.start(p, "ingest", {...})
    job = remote.follow(p, "ingest", job, as_json=...)

Errors: problem+json `detail` becomes the CLI's `fail` message; 401 (key), 404, 413 (size)
and 429 (rate) say what to do; 400/409/422 exit 2 (a request the gateway refuses), everything
else 1. 502/503/504 and connection errors are retried (a start carries a request id, uploads
are content-addressed, so a retry never makes a second job or object).
"""

from __future__ import annotations

import hashlib
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import httpx
import typer
from tenacity import retry, retry_if_exception, stop_after_attempt, wait_exponential

from loraforge.cli.jobs import preview_note
from loraforge.cli.output import err_console, fail

ENV_API = "LF_API"
ENV_KEY = "LF_API_KEY"
TERMINAL = ("SUCCEEDED", "FAILED", "CANCELLED")
TIMEOUT = httpx.Timeout(30.0, connect=5.0)
UPLOAD_TIMEOUT = httpx.Timeout(600.0, connect=5.0)
RETRY_STATUS = (502, 503, 504)
POLL_S = 0.5

# kind -> path segment under /v1/projects/{p}/ (the gateway's routers/jobs.py)
SEGMENTS = {
    "ingest": "ingest-jobs",
    "curation": "curation-jobs",
    "captioning": "captioning-jobs",
    "trainer": "training-runs",
    "render": "renders",
}


@dataclass
class CliContext:
    """What the global options put in the typer context (ctx.obj)."""

    api: str | None = None
    key: str | None = None


class _Retryable(Exception):
    def __init__(self, response: httpx.Response | None, error: Exception | None = None):
        super().__init__(
            str(error) if error else f"HTTP {response.status_code if response else '?'}"
        )
        self.response = response
        self.error = error


def remote_of(ctx: typer.Context | None) -> Remote | None:
    """The remote gateway when `--api` (or LF_API) was given, else None (the local stack)."""
    obj = ctx.find_object(CliContext) if ctx is not None else None
    if obj is None or not obj.api:
        return None
    return Remote(obj.api, obj.key)


def local_only(ctx: typer.Context | None, command: str, *, as_json: bool = False) -> None:
    """Refuse `--api` for a command the gateway has no equivalent of."""
    obj = ctx.find_object(CliContext) if ctx is not None else None
    if obj is not None and obj.api:
        fail(
            f"`loraforge {command}` is local-only: it has no equivalent in the gateway's API "
            f"({obj.api}); run it without --api (and without {ENV_API} set) against the local stack",
            as_json=as_json,
            code=2,
        )


def _problem(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:500] or response.reason_phrase
    if isinstance(body, dict):
        return str(body.get("detail") or body.get("title") or body)
    return str(body)


class Remote:
    def __init__(self, api: str, key: str | None, *, transport: httpx.BaseTransport | None = None):
        self.api = api.rstrip("/")
        self.key = key
        headers = {"User-Agent": "loraforge-cli"}
        if key:
            headers["X-API-Key"] = key
        self._http = httpx.Client(
            base_url=self.api, headers=headers, timeout=TIMEOUT, transport=transport
        )

    # -- plumbing ------------------------------------------------------------------------------

    def request(
        self, method: str, path: str, *, as_json: bool, ok_404: bool = False, **kwargs: Any
    ) -> Any:
        """One call; returns the decoded JSON body (None for a 404 when ok_404), or exits."""

        @retry(
            retry=retry_if_exception(lambda e: isinstance(e, _Retryable)),
            stop=stop_after_attempt(4),
            wait=wait_exponential(multiplier=0.25, max=2.0),
            reraise=True,
        )
        def send() -> httpx.Response:
            for value in (kwargs.get("files") or {}).values():  # rewind an upload on a retry
                fh = value[1] if isinstance(value, tuple) else value
                if hasattr(fh, "seek"):
                    fh.seek(0)
            try:
                response = self._http.request(method, path, **kwargs)
            except (
                httpx.ConnectError,
                httpx.ConnectTimeout,
                httpx.RemoteProtocolError,
                httpx.ReadError,
            ) as exc:
                raise _Retryable(None, exc) from exc
            if response.status_code in RETRY_STATUS:
                raise _Retryable(response)
            return response

        try:
            response = send()
        except _Retryable as exc:
            if exc.response is None:
                fail(
                    f"cannot reach the gateway at {self.api} ({exc.error.__class__.__name__}: "
                    f"{exc.error}); check --api / {ENV_API}",
                    as_json=as_json,
                )
            response = exc.response
        except httpx.TimeoutException as exc:
            fail(
                f"the gateway at {self.api} did not answer {method} {path} in time "
                f"({exc.__class__.__name__})",
                as_json=as_json,
            )
        except httpx.HTTPError as exc:
            fail(f"{method} {self.api}{path} failed: {exc}", as_json=as_json)
        if response.status_code == 404 and ok_404:
            return None
        if response.is_success:
            return response.json() if response.content else None
        self._refuse(response, as_json=as_json)

    def _refuse(self, response: httpx.Response, *, as_json: bool) -> None:
        status, detail = response.status_code, _problem(response)
        if status == 401:
            fail(
                f"the gateway refused the API key (401): {detail}. Pass a valid key with --key "
                f"or {ENV_KEY}",
                as_json=as_json,
            )
        if status == 403:
            fail(f"not allowed (403): {detail}", as_json=as_json)
        if status == 404:
            fail(f"not found (404): {detail}", as_json=as_json, code=2)
        if status == 413:
            fail(f"too large for the gateway (413): {detail}", as_json=as_json, code=2)
        if status == 429:
            after = response.headers.get("Retry-After")
            fail(
                f"rate limited by the gateway (429): {detail}"
                + (f"; retry in {after} s" if after else "; retry later"),
                as_json=as_json,
            )
        if status in (400, 409, 422):
            fail(f"{detail} ({status})", as_json=as_json, code=2)
        if status in RETRY_STATUS:
            fail(
                f"the gateway or a service behind it is unavailable ({status}): {detail}",
                as_json=as_json,
            )
        fail(f"gateway error {status}: {detail}", as_json=as_json)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- resources -----------------------------------------------------------------------------

    def ensure_project(self, project: str, *, as_json: bool) -> None:
        """Create the project when the tenant has none of that name (ingest is the first stage)."""
        if self.request("GET", f"/v1/projects/{project}", as_json=as_json, ok_404=True) is not None:
            return
        response = self._http.post("/v1/projects", json={"name": project})
        if response.status_code not in (201, 409):  # 409: created meanwhile
            self._refuse(response, as_json=as_json)

    def upload(self, project: str, path: Path, *, as_json: bool) -> dict[str, Any]:
        """Upload one file (multipart; a presigned PUT when it is over the gateway's limit)."""
        with path.open("rb") as fh:
            response = self._send_upload(project, path, fh)
        if response is not None and response.status_code == 413:
            return self._presigned_upload(project, path, as_json=as_json)
        if response is None or not response.is_success:
            if response is None:
                fail(
                    f"cannot reach the gateway at {self.api} to upload {path.name}", as_json=as_json
                )
            self._refuse(response, as_json=as_json)
        return response.json()

    def _send_upload(self, project: str, path: Path, fh: Any) -> httpx.Response | None:
        for attempt in range(4):
            fh.seek(0)
            try:
                response = self._http.post(
                    f"/v1/projects/{project}/uploads",
                    timeout=UPLOAD_TIMEOUT,
                    files={"file": (path.name, fh, "application/octet-stream")},
                )
            except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError):
                response = None
            if response is not None and response.status_code not in RETRY_STATUS:
                return response
            time.sleep(0.25 * 2**attempt)
        return response

    def _presigned_upload(self, project: str, path: Path, *, as_json: bool) -> dict[str, Any]:
        size = path.stat().st_size
        grant = self.request(
            "POST",
            f"/v1/projects/{project}/uploads/presigned",
            as_json=as_json,
            json={"filename": path.name, "size": size},
        )
        h = hashlib.sha256()
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
            fh.seek(0)
            try:
                put = httpx.put(
                    grant["url"],
                    content=fh,
                    timeout=UPLOAD_TIMEOUT,
                    headers={"Content-Length": str(size)},
                )
            except httpx.HTTPError as exc:
                fail(f"uploading {path.name} to the presigned URL failed: {exc}", as_json=as_json)
        if not put.is_success:
            fail(
                f"uploading {path.name} to the presigned URL failed ({put.status_code})",
                as_json=as_json,
            )
        return self.request(
            "POST",
            f"/v1/projects/{project}/uploads/commit",
            as_json=as_json,
            json={
                "staging_key": grant["staging_key"],
                "sha256": h.hexdigest(),
                "filename": path.name,
            },
        )

    def start(
        self, project: str, kind: str, body: dict[str, Any], *, as_json: bool
    ) -> dict[str, Any]:
        body = {k: v for k, v in body.items() if v is not None}
        body.setdefault("request_id", f"cli-{uuid.uuid4().hex}")
        return self.request(
            "POST", f"/v1/projects/{project}/{SEGMENTS[kind]}", json=body, as_json=as_json
        )

    def get_job(self, project: str, kind: str, job_id: str, *, as_json: bool) -> dict[str, Any]:
        return self.request(
            "GET", f"/v1/projects/{project}/{SEGMENTS[kind]}/{job_id}", as_json=as_json
        )

    def follow(
        self,
        project: str,
        kind: str,
        job: dict[str, Any],
        *,
        as_json: bool,
        timeout_s: float | None = None,
    ) -> dict[str, Any]:
        """Poll the job until it ends (a progress bar on stderr, none with --json)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s

        def poll(update: Any) -> dict[str, Any]:
            nonlocal job
            while True:
                update(job)
                if job["state"] in TERMINAL or (
                    deadline is not None and time.monotonic() > deadline
                ):
                    return job
                time.sleep(POLL_S)
                job = self.get_job(project, kind, job["id"], as_json=as_json)

        try:
            if as_json:
                return poll(lambda j: None)
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            with Progress(
                TextColumn(f"[bold]{kind}[/bold] " + "{task.fields[state]:<9}"),
                BarColumn(),
                TextColumn("{task.percentage:>3.0f}%"),
                TimeElapsedColumn(),
                TextColumn("{task.description}"),
                console=err_console,
                transient=False,
            ) as bar:
                task = bar.add_task(job.get("message", ""), total=1.0, state=job["state"])
                announced: set[int] = set()

                def update(j: dict[str, Any]) -> None:
                    bar.update(
                        task,
                        completed=j.get("progress", 0.0),
                        description=str(j.get("message", ""))[:60],
                        state=j["state"],
                    )
                    note = preview_note(j.get("result") or {}, announced)
                    if note:
                        bar.console.print(note)

                return poll(update)
        except KeyboardInterrupt:
            fail(
                f"stopped following {kind} job {job['id']}; it keeps running. Cancel it with "
                f"POST {self.api}/v1/projects/{project}/{SEGMENTS[kind]}/{job['id']}/cancel",
                as_json=as_json,
                code=130,
            )

    def newest_dataset(self, project: str, *, as_json: bool) -> str:
        found = self.request("GET", f"/v1/projects/{project}/datasets", as_json=as_json)["datasets"]
        if not found:
            fail(
                f"project {project} has no curated dataset yet; run `loraforge curate` first",
                as_json=as_json,
                code=2,
            )
        return found[0]["id"]

    def download(self, url: str, dest: Path, *, as_json: bool) -> int:
        """Stream an (expiring, presigned) link to a file; returns its size."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        part = dest.with_name(dest.name + ".part")
        size = 0
        try:
            with httpx.stream(
                "GET", url, timeout=UPLOAD_TIMEOUT, follow_redirects=True
            ) as response:
                if not response.is_success:
                    fail(
                        f"downloading {dest.name} failed ({response.status_code}); the link may "
                        "have expired, run the command again",
                        as_json=as_json,
                    )
                with part.open("wb") as fh:
                    for chunk in response.iter_bytes(1 << 20):
                        fh.write(chunk)
                        size += len(chunk)
        except httpx.HTTPError as exc:
            part.unlink(missing_ok=True)
            fail(f"downloading {dest.name} failed: {exc}", as_json=as_json)
        part.replace(dest)
        return size
