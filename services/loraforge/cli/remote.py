"""The HTTP client of a gateway's REST API (docs/openapi.json), used by `backend.HttpBackend`
(`loraforge --api URL --key KEY ...`) and by the commands that only the gateway offers.

Errors are the project's (loraforge.runtime.errors; the exit code is `output.exit_code`'s):
problem+json `detail` becomes the message; 401/403 AccessDenied, 404 NotFound, 400/413/422
InvalidInput, 409 Conflict, 429 and 5xx Unavailable. 502/503/504 and connection errors are
retried (a start carries a request id, uploads are content-addressed, so a retry never makes a
second job or object).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import httpx
from tenacity import retry, retry_if_exception, stop_after_attempt, wait_exponential

from loraforge.cli.output import AccessDenied
from loraforge.runtime.errors import Conflict, InvalidInput, LoraforgeError, NotFound, Unavailable

ENV_API = "LF_API"
ENV_KEY = "LF_API_KEY"
TIMEOUT = httpx.Timeout(30.0, connect=5.0)
UPLOAD_TIMEOUT = httpx.Timeout(600.0, connect=5.0)
RETRY_STATUS = (502, 503, 504)


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


def _problem(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:500] or response.reason_phrase
    if isinstance(body, dict):
        return str(body.get("detail") or body.get("title") or body)
    return str(body)


def refusal(response: httpx.Response) -> LoraforgeError:
    """A gateway's error answer as the project's error, saying what to do."""
    status, detail = response.status_code, _problem(response)
    if status == 401:
        return AccessDenied(
            f"the gateway refused the API key (401): {detail}. Pass a valid key with --key "
            f"or {ENV_KEY}"
        )
    if status == 403:
        return AccessDenied(f"not allowed (403): {detail}")
    if status == 404:
        return NotFound(f"not found (404): {detail}")
    if status == 413:
        return InvalidInput(f"too large for the gateway (413): {detail}")
    if status == 429:
        after = response.headers.get("Retry-After")
        return Unavailable(
            f"rate limited by the gateway (429): {detail}"
            + (f"; retry in {after} s" if after else "; retry later")
        )
    if status == 409:
        return Conflict(f"{detail} ({status})")
    if status in (400, 422):
        return InvalidInput(f"{detail} ({status})")
    if status in RETRY_STATUS:
        return Unavailable(
            f"the gateway or a service behind it is unavailable ({status}): {detail}"
        )
    return LoraforgeError(f"gateway error {status}: {detail}")


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

    def request(self, method: str, path: str, *, ok_404: bool = False, **kwargs: Any) -> Any:
        """One call; returns the decoded JSON body (None for a 404 when ok_404)."""

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
                raise Unavailable(
                    f"cannot reach the gateway at {self.api} ({exc.error.__class__.__name__}: "
                    f"{exc.error}); check --api / {ENV_API}"
                ) from exc
            response = exc.response
        except httpx.TimeoutException as exc:
            raise Unavailable(
                f"the gateway at {self.api} did not answer {method} {path} in time "
                f"({exc.__class__.__name__})"
            ) from exc
        except httpx.HTTPError as exc:
            raise LoraforgeError(f"{method} {self.api}{path} failed: {exc}") from exc
        if response.status_code == 404 and ok_404:
            return None
        if response.is_success:
            return response.json() if response.content else None
        raise refusal(response)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- resources -----------------------------------------------------------------------------

    def ensure_project(self, project: str) -> None:
        """Create the project when the tenant has none of that name (ingest is the first stage)."""
        if self.request("GET", f"/v1/projects/{project}", ok_404=True) is not None:
            return
        response = self._http.post("/v1/projects", json={"name": project})
        if response.status_code not in (201, 409):  # 409: created meanwhile
            raise refusal(response)

    def upload(self, project: str, path: Path) -> dict[str, Any]:
        """Upload one file (multipart; a presigned PUT when it is over the gateway's limit)."""
        with path.open("rb") as fh:
            response = self._send_upload(project, path, fh)
        if response is not None and response.status_code == 413:
            return self._presigned_upload(project, path)
        if response is None:
            raise Unavailable(f"cannot reach the gateway at {self.api} to upload {path.name}")
        if not response.is_success:
            raise refusal(response)
        return dict(response.json())

    def _send_upload(self, project: str, path: Path, fh: Any) -> httpx.Response | None:
        response = None
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

    def _presigned_upload(self, project: str, path: Path) -> dict[str, Any]:
        size = path.stat().st_size
        grant = self.request(
            "POST",
            f"/v1/projects/{project}/uploads/presigned",
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
                raise Unavailable(
                    f"uploading {path.name} to the presigned URL failed: {exc}"
                ) from exc
        if not put.is_success:
            raise LoraforgeError(
                f"uploading {path.name} to the presigned URL failed ({put.status_code})"
            )
        return dict(
            self.request(
                "POST",
                f"/v1/projects/{project}/uploads/commit",
                json={
                    "staging_key": grant["staging_key"],
                    "sha256": h.hexdigest(),
                    "filename": path.name,
                },
            )
        )

    def newest_dataset(self, project: str) -> str:
        found = self.request("GET", f"/v1/projects/{project}/datasets")["datasets"]
        if not found:
            raise NotFound(
                f"project {project} has no curated dataset yet; run `loraforge curate` first"
            )
        return str(found[0]["id"])

    def download(self, url: str, dest: Path) -> int:
        """Stream an (expiring, presigned) link to a file; returns its size."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        part = dest.with_name(dest.name + ".part")
        size = 0
        try:
            with httpx.stream(
                "GET", url, timeout=UPLOAD_TIMEOUT, follow_redirects=True
            ) as response:
                if not response.is_success:
                    raise LoraforgeError(
                        f"downloading {dest.name} failed ({response.status_code}); the link may "
                        "have expired, run the command again"
                    )
                with part.open("wb") as fh:
                    for chunk in response.iter_bytes(1 << 20):
                        fh.write(chunk)
                        size += len(chunk)
        except httpx.HTTPError as exc:
            part.unlink(missing_ok=True)
            raise Unavailable(f"downloading {dest.name} failed: {exc}") from exc
        part.replace(dest)
        return size
