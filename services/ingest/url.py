"""URL sources (YouTube, Vimeo, ...) through yt-dlp, which is an optional dependency.

yt-dlp is imported lazily: ingest workers without it (or without internet access, the usual
case for our cluster) must still process uploads, and say clearly why a URL cannot be used.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from loraforge.ingest.errors import UrlFetchFailed, UrlSourceUnavailable


def fetch_url(url: str, dest_dir: Path, max_height: int = 1080, timeout: float = 30.0) -> Path:
    """Download the best single-file video of ``url`` (at most ``max_height`` p) into ``dest_dir``."""
    if not url.startswith(("http://", "https://")):
        raise UrlFetchFailed(f"{url!r}: only http(s) URLs are accepted; paste the full link")
    try:
        import yt_dlp  # type: ignore[import-not-found]
    except ImportError as exc:
        raise UrlSourceUnavailable(
            f"{url}: URL sources need the optional package yt-dlp, which this ingest worker does not have; "
            f"download the video yourself and upload the file (or ask an operator to install yt-dlp)") from exc

    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    opts: dict[str, Any] = {
        # A single progressive file: merging separate audio/video streams would need ffmpeg on
        # PATH inside yt-dlp, and we drop audio anyway.
        "format": f"best[height<={max_height}][ext=mp4]/best[height<={max_height}]/best",
        "outtmpl": str(dest_dir / "%(id)s.%(ext)s"),
        "noplaylist": True,
        "quiet": True,
        "no_warnings": True,
        "socket_timeout": timeout,
        "retries": 2,
    }
    try:
        with yt_dlp.YoutubeDL(opts) as ydl:
            info = ydl.extract_info(url, download=True)
            path = Path(ydl.prepare_filename(info))
    except Exception as exc:  # yt-dlp raises its own DownloadError for network and site failures
        text = str(exc)
        hint = ("there is no network access from this worker; download the video yourself and upload the file"
                if any(s in text for s in ("Name or service not known", "Temporary failure", "timed out",
                                            "Network is unreachable", "Connection refused"))
                else "check that the link is public and correct, or upload the file instead")
        raise UrlFetchFailed(f"{url}: the download failed ({text[:200]}); {hint}") from exc
    if not path.is_file():
        raise UrlFetchFailed(f"{url}: yt-dlp reported success but wrote no file; upload the file instead")
    return path
