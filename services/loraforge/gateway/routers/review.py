"""The review page: static HTML + vanilla JS, no build step.

The page itself holds no data and needs no auth; it reads its review token from the URL
fragment (`#token=...`, never sent to the server) and calls the JSON API with
`X-Review-Token`. Tokens come from `POST /v1/projects/{p}/datasets/{d}/review-link`.
"""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

router = APIRouter(tags=["review"])


def _page() -> str:
    return resources.files("loraforge.gateway").joinpath("static", "review.html").read_text("utf-8")


@router.get("/review/{project}/{dataset_id}", response_class=HTMLResponse, include_in_schema=False)
async def review_page(project: str, dataset_id: str) -> HTMLResponse:
    return HTMLResponse(
        _page(),
        headers={
            "Cache-Control": "no-store",
            "Referrer-Policy": "no-referrer",
            "Content-Security-Policy": "default-src 'self'; img-src * data:; media-src *; "
            "style-src 'self' 'unsafe-inline'; script-src 'self' 'unsafe-inline'",
        },
    )
