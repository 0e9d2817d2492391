"""Uploads into the `raw` bucket, content-addressed: `<t>/<p>/sources/<sha256>.<ext>` (ingest's
layout, `loraforge.ingest.layout`). Two ways in:

- `POST .../uploads` (multipart, field `file`): the body is counted as it arrives (over the
  limit -> 413), spooled to a temporary file while hashed, then streamed to the store through
  a staging key and committed; an aborted upload leaves nothing under `raw`.
- `POST .../uploads/presigned` with the file's size -> a URL the client PUTs to (a staging key
  of this tenant and project) that accepts a body of exactly that size (Content-Length is a
  signed header, see `loraforge.gateway.presign`: any other length is refused by the object
  store and nothing is stored), then `POST .../uploads/commit` with the sha256: verified,
  moved, staging removed. Abandoned staging objects are removed by the staging sweeper.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import UTC, datetime, timedelta
from typing import IO

from fastapi import APIRouter, Depends, File, Request, UploadFile

from loraforge.gateway.auth import Principal
from loraforge.gateway.deps import gw, project_of
from loraforge.gateway.models import CommitUpload, PresignedUpload, PresignRequest, Upload
from loraforge.gateway.presign import presigned_put_sized
from loraforge.gateway.problems import PROBLEM_RESPONSES, PayloadTooLarge
from loraforge.ingest.layout import original_ext, original_key
from loraforge.runtime.errors import NotFound
from loraforge.runtime.keys import ProjectRef
from loraforge.runtime.storage import STAGING_PREFIX, Bucket

router = APIRouter(
    prefix="/v1/projects/{project}/uploads", tags=["uploads"], responses=PROBLEM_RESPONSES
)

_STAGING = re.compile(r"^_staging/gw\.([a-z0-9-]+)\.([a-z0-9-]+)\.([0-9a-f]{32})$")


def _hash_file(fh: IO[bytes]) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    fh.seek(0)
    for chunk in iter(lambda: fh.read(1 << 20), b""):
        h.update(chunk)
        size += len(chunk)
    fh.seek(0)
    return h.hexdigest(), size


@router.post("", status_code=201, response_model=Upload, operation_id="upload_file")
async def upload(
    request: Request,
    file: UploadFile = File(description="the original (video, photo, archive)"),
    scope: tuple[Principal, str] = Depends(project_of),
) -> Upload:
    """Upload one original through the gateway (up to the configured size; use presigned
    uploads beyond it). Identical content is stored once."""
    principal, project = scope
    g = gw(request)
    digest, size = await g.blocking(_hash_file, file.file)
    if size > g.config.max_upload_bytes:
        raise PayloadTooLarge(
            f"upload is {size} bytes, over the {g.config.max_upload_bytes}-byte "
            "limit; use POST .../uploads/presigned for big files"
        )
    ref = ProjectRef(principal.tenant, project)
    key = original_key(ref, digest, original_ext(file.filename or ""))
    existing = await g.blocking(g.store.stat, Bucket.RAW, key)
    if existing is not None:
        return Upload(key=key, sha256=digest, size=existing.size, created=False)
    stored = await g.blocking(
        g.store.put_stream,
        Bucket.RAW,
        key,
        file.file,
        length=size,
        sha256=digest,
        content_type=file.content_type or "application/octet-stream",
    )
    return Upload(key=key, sha256=digest, size=stored.size, created=True)


@router.post(
    "/presigned", status_code=201, response_model=PresignedUpload, operation_id="presign_upload"
)
async def presign(
    body: PresignRequest, request: Request, scope: tuple[Principal, str] = Depends(project_of)
) -> PresignedUpload:
    """A URL to PUT one file of the declared `size` to directly (a body of any other length
    is refused by the object store); commit it afterwards with its sha256."""
    principal, project = scope
    g = gw(request)
    if body.size > g.config.max_presigned_upload_bytes:
        raise PayloadTooLarge(
            f"{body.size} bytes is over the {g.config.max_presigned_upload_bytes}-byte upload limit"
        )
    staging = f"{STAGING_PREFIX}gw.{principal.tenant}.{project}.{secrets.token_hex(16)}"
    ttl = g.config.upload_url_ttl_s
    url = presigned_put_sized(
        g.settings.s3, g.store.bucket_name(Bucket.RAW), staging, body.size, ttl
    )
    return PresignedUpload(
        url=url, staging_key=staging, expires_at=datetime.now(UTC) + timedelta(seconds=ttl)
    )


@router.post("/commit", status_code=201, response_model=Upload, operation_id="commit_upload")
async def commit(
    body: CommitUpload, request: Request, scope: tuple[Principal, str] = Depends(project_of)
) -> Upload:
    """Verify a presigned upload (size limit, sha256) and move it under `sources/`."""
    principal, project = scope
    g = gw(request)
    m = _STAGING.match(body.staging_key)
    if not m or (m.group(1), m.group(2)) != (principal.tenant, project):
        raise NotFound(
            f"staging key {body.staging_key!r} not found; request one with "
            "POST .../uploads/presigned"
        )
    st = await g.blocking(g.store.stat, Bucket.RAW, body.staging_key)
    if st is None:
        raise NotFound(
            f"nothing was uploaded to {body.staging_key!r}; PUT the file to the presigned URL first"
        )
    if st.size > g.config.max_presigned_upload_bytes:
        await g.blocking(g.store._discard, g.store.bucket_name(Bucket.RAW), body.staging_key)
        raise PayloadTooLarge(
            f"the upload is {st.size} bytes, over the "
            f"{g.config.max_presigned_upload_bytes}-byte limit; it was discarded"
        )
    digest = body.sha256.lower()
    ref = ProjectRef(principal.tenant, project)
    key = original_key(ref, digest, original_ext(body.filename))
    existing = await g.blocking(g.store.stat, Bucket.RAW, key)
    if existing is not None:
        await g.blocking(g.store._discard, g.store.bucket_name(Bucket.RAW), body.staging_key)
        return Upload(key=key, sha256=digest, size=existing.size, created=False)
    stored = await g.blocking(
        g.store.commit_staged, Bucket.RAW, body.staging_key, key, sha256=digest
    )
    return Upload(key=key, sha256=digest, size=stored.size, created=True)
