"""URL sources: direct media links, and pages of video sites through yt-dlp (optional).

Every byte comes through the egress guard (loraforge.runtime.egress): URL ingest is off unless
`LORAFORGE_EGRESS__URL_INGEST=true`, and no hop (DNS answer, redirect) may lead to a private,
loopback or link-local address. The tenant's URL is first fetched by the guard itself: a media
response (video, image, zip) is the download. Anything else (a web page) goes to yt-dlp for
extraction only, with its generic extractor off (it would fetch whatever the page points at)
and every request it makes through the guard's proxy (EgressProxy), and the media URL it picks
is again downloaded by the guard.

yt-dlp is imported lazily: ingest workers without it (or without internet access, the usual
case for our cluster) must still process uploads, and say clearly why a URL cannot be used.
"""

from __future__ import annotations

import mimetypes
import re
from pathlib import Path, PurePosixPath
from typing import Any

import httpx

from loraforge.ingest.errors import UrlFetchFailed, UrlSourceUnavailable
from loraforge.runtime.egress import EgressPolicy, EgressProxy, EgressRefused

# Content types saved as they are; the ingest worker sniffs the bytes afterwards anyway.
MEDIA_TYPES = (
    "video/",
    "image/",
    "application/zip",
    "application/x-zip-compressed",
    "application/octet-stream",
)


def _name_for(url: str, content_type: str) -> str:
    stem = PurePosixPath(httpx.URL(url).path).name
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", stem)[:120].lstrip(".") or "download"
    if not PurePosixPath(stem).suffix:
        stem += mimetypes.guess_extension(content_type) or ""
    return stem


def fetch_url(
    url: str,
    dest_dir: Path,
    max_height: int = 1080,
    timeout: float = 30.0,
    policy: EgressPolicy | None = None,
) -> Path:
    """Download the media of ``url`` (a video site's page: best single file, at most
    ``max_height`` p) into ``dest_dir``. ``policy``: the egress guard (the service builds it from
    settings: EgressPolicy.from_settings); the default refuses every URL (URL ingest off)."""
    if not url.startswith(("http://", "https://")):
        raise UrlFetchFailed(f"{url!r}: only http(s) URLs are accepted; paste the full link")
    policy = policy or EgressPolicy()  # the default: URL ingest off
    if not policy.url_ingest:
        raise UrlSourceUnavailable(
            f"{url}: URL ingest is off on this deployment (an operator turns it on with "
            f"LORAFORGE_EGRESS__URL_INGEST=true); download the video yourself and upload the file"
        )
    dest_dir = Path(dest_dir)
    part = dest_dir / "direct.part"
    try:
        got = policy.download(url, part, timeout=timeout, accept=MEDIA_TYPES)
    except EgressRefused as exc:
        raise UrlFetchFailed(str(exc)) from None
    except httpx.HTTPError as exc:
        raise UrlFetchFailed(
            f"{url}: the download failed ({type(exc).__name__}: {exc}); check the link, "
            f"or download the file yourself and upload it"
        ) from None
    if got.saved:
        if got.size == 0:
            part.unlink(missing_ok=True)
            raise UrlFetchFailed(f"{url}: the server sent an empty file; check the link")
        return part.rename(dest_dir / _name_for(got.url, got.content_type))
    return _via_yt_dlp(got.url, dest_dir, max_height, timeout, policy)


def _via_yt_dlp(
    url: str, dest_dir: Path, max_height: int, timeout: float, policy: EgressPolicy
) -> Path:
    """A web page: yt-dlp finds the media URL, the guard downloads it."""
    try:
        import yt_dlp
    except ImportError as exc:
        raise UrlSourceUnavailable(
            f"{url}: URL sources need the optional package yt-dlp, which this ingest worker "
            "does not have; download the video yourself and upload the file (or ask an "
            "operator to install yt-dlp)"
        ) from exc

    opts: dict[str, Any] = {
        # A single progressive file over http(s): merging separate audio/video streams would
        # need ffmpeg inside yt-dlp (and we drop audio anyway), and HLS/DASH fragments would be
        # fetched by yt-dlp, past the egress guard.
        "format": (
            f"best[height<={max_height}][ext=mp4][protocol^=http]/"
            f"best[height<={max_height}][protocol^=http]/best[protocol^=http]"
        ),
        # The generic extractor follows whatever a page embeds or links to (any host, any
        # address); only sites with a dedicated extractor are accepted.
        "allowed_extractors": ["default", "-generic"],
        "noplaylist": True,
        "quiet": True,
        "no_warnings": True,
        "socket_timeout": timeout,
        "retries": 2,
    }
    # Every request yt-dlp makes (pages, APIs, their redirects) goes through the guard's proxy.
    proxy = EgressProxy(policy, timeout)
    try:
        with proxy as proxy_url, yt_dlp.YoutubeDL({**opts, "proxy": proxy_url}) as ydl:
            info = ydl.extract_info(url, download=False)
    except Exception as exc:  # yt-dlp raises its own DownloadError for network and site failures
        if proxy.refused:
            raise UrlFetchFailed(f"{url}: {proxy.refused[0]}") from None
        text = str(exc)
        hint = (
            "there is no network access from this worker; download the video yourself and "
            "upload the file"
            if any(
                s in text
                for s in (
                    "Name or service not known",
                    "Temporary failure",
                    "timed out",
                    "Network is unreachable",
                    "Connection refused",
                )
            )
            else "if it is a web page, it must be a video site yt-dlp knows (or link the video "
            "file itself); check that the link is public and correct, or upload the file instead"
        )
        raise UrlFetchFailed(f"{url}: the page gave no video ({text[:200]}); {hint}") from exc
    media = info.get("url") if isinstance(info, dict) else None
    if not isinstance(media, str):
        raise UrlFetchFailed(
            f"{url}: no single downloadable video file on this page; upload the file instead"
        )
    headers = {k: v for k, v in (info.get("http_headers") or {}).items() if isinstance(v, str)}
    dest = dest_dir / re.sub(
        r"[^A-Za-z0-9._-]", "_", f"{info.get('id') or 'video'}.{info.get('ext') or 'mp4'}"
    )
    try:
        policy.download(media, dest, headers=headers, timeout=timeout)
    except EgressRefused as exc:
        raise UrlFetchFailed(str(exc)) from None
    except httpx.HTTPError as exc:
        raise UrlFetchFailed(
            f"{url}: downloading the video failed ({type(exc).__name__}: {exc}); "
            f"upload the file instead"
        ) from None
    return dest
