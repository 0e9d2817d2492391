"""Object store client on the `minio` SDK (MinIO in compose/k8s, SeaweedFS's S3 API locally).

Writes go to a staging key first and are copied to their final key only after the bytes
were verified (size, and sha256 when the caller knows it). An interrupted or short upload
therefore never leaves anything under the final key: readers see the old object or the new
one, never half of one.

The client is synchronous (the SDK is); async services call it through `asyncio.to_thread`.

Staging objects an upload left behind (a process killed between its staging write and the
commit, a presigned upload never committed) are removed by the staging sweeper
(`sweep_staging`, run by every service process, `sweep_staging_forever`) once they are older
than `staging_max_age_s`; where the store supports lifecycle rules (MinIO, S3) the same bound
is also set as a rule on `_staging/` (`ensure_staging_lifecycle`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import logging
import math
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import IO, Any, BinaryIO, Literal, cast

import urllib3
from minio import Minio
from minio.commonconfig import ENABLED, ComposeSource, CopySource, Filter
from minio.error import S3Error
from minio.helpers import DictType
from minio.lifecycleconfig import (
    AbortIncompleteMultipartUpload,
    Expiration,
    LifecycleConfig,
    Rule,
)

from loraforge.runtime.errors import InvalidInput, LoraforgeError, NotFound, Unavailable
from loraforge.runtime.settings import S3Settings


class Bucket(StrEnum):
    RAW = "raw"  # originals: immutable, never deleted by the pipeline
    CLIPS = "clips"
    DATASETS = "datasets"
    MODELS = "models"  # base-weights cache
    LORAS = "loras"
    RENDERS = "renders"


log = logging.getLogger(__name__)

STAGING_PREFIX = "_staging/"
STAGING_RULE_ID = "loraforge-staging-expiry"
_SINGLE_COPY_LIMIT = 5 * 1024**3  # S3 CopyObject limit; larger objects use multipart copy


class IntegrityError(LoraforgeError):
    """The bytes that arrived are not the bytes that were promised; nothing was committed."""


class UploadInterrupted(LoraforgeError):
    """The source stream broke mid-upload (client went away); nothing was committed."""


@dataclass(frozen=True)
class SweepResult:
    removed: int  # staging objects older than the bound, deleted by this pass
    young: int  # staging objects still inside the bound (uploads that may yet commit)
    more: bool  # the pass stopped at its batch limit: older ones are left for the next


@dataclass(frozen=True)
class StoredObject:
    bucket: str
    key: str
    size: int
    sha256: str | None = None
    etag: str | None = None
    content_type: str | None = None
    metadata: dict[str, str] | None = None
    modified: datetime | None = None  # the server's last-modified time (1 s resolution)


class _HashingReader(io.RawIOBase):
    """Counts and hashes bytes as the SDK pulls them, so a big file is read exactly once."""

    def __init__(self, source: IO[bytes]):
        self._source = source
        self.sha256 = hashlib.sha256()
        self.size = 0

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        try:
            chunk = self._source.read(n)
        except Exception as exc:
            # Tell a broken upload apart from a broken S3 server: only the latter is Unavailable.
            raise UploadInterrupted(
                f"the upload stream broke after {self.size} bytes ({exc}); nothing was stored, "
                "send the file again"
            ) from exc
        if chunk:
            self.sha256.update(chunk)
            self.size += len(chunk)
        return chunk


class ObjectStore:
    def __init__(self, client: Minio, settings: S3Settings):
        self._client = client
        self._settings = settings

    @classmethod
    def connect(cls, settings: S3Settings) -> ObjectStore:
        # Short connect timeout and few retries: start-up retry/back-off is the caller's job,
        # and a dead endpoint must fail fast with its address, not hang in urllib3.
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=3.0, read=120.0),
            retries=urllib3.Retry(total=2, backoff_factor=0.2, status_forcelist=[502, 503, 504]),
            maxsize=16,
        )
        client = Minio(
            settings.endpoint,
            access_key=settings.access_key,
            secret_key=settings.secret_key.get_secret_value(),
            secure=settings.secure,
            region=settings.region,
            http_client=http,
        )
        return cls(client, settings)

    # -- buckets -----------------------------------------------------------------------------

    def bucket_name(self, bucket: Bucket | str) -> str:
        return f"{self._settings.bucket_prefix}{Bucket(bucket).value}"

    def ensure_buckets(self) -> list[str]:
        """Create every bucket the design names; safe to call on every start."""
        created = []
        for bucket in Bucket:
            name = self.bucket_name(bucket)
            with self._errors(f"create bucket {name}"):
                if not self._client.bucket_exists(name):
                    try:
                        self._client.make_bucket(name)
                        created.append(name)
                    except S3Error as exc:
                        if exc.code not in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
                            raise
        return created

    def ensure_staging_lifecycle(self) -> list[str]:
        """Set an expiry rule on `_staging/` (and abort multipart uploads left open) in each
        bucket whose store supports lifecycle rules; returns the buckets that took it. The
        sweeper runs regardless, for stores without lifecycle support (SeaweedFS)."""
        days = max(1, math.ceil(self._settings.staging_max_age_s / 86400))
        rule = Rule(
            ENABLED,
            rule_filter=Filter(prefix=STAGING_PREFIX),
            rule_id=STAGING_RULE_ID,
            expiration=Expiration(days=days),
            abort_incomplete_multipart_upload=AbortIncompleteMultipartUpload(days),
        )
        took = []
        for bucket in Bucket:
            name = self.bucket_name(bucket)
            try:
                current = self._client.get_bucket_lifecycle(name)
                others = [
                    r for r in (current.rules if current else []) if r.rule_id != STAGING_RULE_ID
                ]
                self._client.set_bucket_lifecycle(name, LifecycleConfig([*others, rule]))
                took.append(name)
            except (S3Error, urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
                log.info("no lifecycle rule on %s (%s); the staging sweeper covers it", name, exc)
        return took

    def sweep_staging(
        self,
        *,
        max_age_s: float | None = None,
        batch: int | None = None,
        now: datetime | None = None,
    ) -> SweepResult:
        """Remove `_staging/` objects older than `max_age_s` (default staging_max_age_s) in
        every bucket, at most `batch` (staging_sweep_batch) per pass. Safe on every replica
        at once: deleting an object twice is not an error. S3 dates an object by the start
        of its upload, so the bound must outlast the longest legit upload plus its commit."""
        max_age = self._settings.staging_max_age_s if max_age_s is None else max_age_s
        budget = self._settings.staging_sweep_batch if batch is None else batch
        cutoff = (now or datetime.now(UTC)) - timedelta(seconds=max_age)
        removed = young = 0
        for bucket in Bucket:
            name = self.bucket_name(bucket)
            with self._errors(f"sweep {name}/{STAGING_PREFIX}"):
                for obj in self._client.list_objects(name, prefix=STAGING_PREFIX, recursive=True):
                    modified = obj.last_modified
                    if modified is not None and modified.tzinfo is None:
                        modified = modified.replace(tzinfo=UTC)
                    if modified is None or modified > cutoff:
                        young += 1
                        continue
                    if removed >= budget:
                        return SweepResult(removed, young, more=True)
                    # Bypasses `delete`: raw refuses deletes of originals, not of staging.
                    self._client.remove_object(name, obj.object_name)
                    removed += 1
        return SweepResult(removed, young, more=False)

    def ping(self) -> None:
        with self._errors("list buckets"):
            self._client.list_buckets()

    # -- writes ------------------------------------------------------------------------------

    def put_stream(
        self,
        bucket: Bucket | str,
        key: str,
        stream: IO[bytes],
        *,
        length: int = -1,
        sha256: str | None = None,
        content_type: str = "application/octet-stream",
        metadata: dict[str, str] | None = None,
    ) -> StoredObject:
        """Stream to staging (multipart for large data), verify, then commit to `key`.

        `length=-1` streams data of unknown size in `part_size` chunks. When `length` or
        `sha256` is given and the received bytes disagree, nothing is committed.
        """
        name = self.bucket_name(bucket)
        self._check_key(key)
        staging = f"{STAGING_PREFIX}{uuid.uuid4().hex}"
        reader = _HashingReader(stream)
        # minio's metadata values may also be lists; ours are single strings
        wire_metadata: DictType | None = dict(metadata) if metadata is not None else None
        try:
            with self._errors(f"upload to {name}/{key}"):
                # Always stream as "unknown length": the SDK then never trusts a promised
                # size, and the check below compares what really arrived.
                self._client.put_object(
                    name,
                    staging,
                    # the SDK only calls read(n); typing.BinaryIO is nominal, not a protocol
                    cast(BinaryIO, reader),
                    length=-1,
                    part_size=self._settings.part_size,
                    content_type=content_type,
                    metadata=wire_metadata,
                )
            digest = reader.sha256.hexdigest()
            if length >= 0 and reader.size != length:
                raise IntegrityError(
                    f"{key}: received {reader.size} bytes, expected {length}; upload it again"
                )
            if sha256 is not None and digest != sha256.lower():
                raise IntegrityError(
                    f"{key}: content sha256 {digest} does not match the expected {sha256}; "
                    "the upload was corrupted or truncated, send it again"
                )
            return self._commit(name, staging, key, reader.size, digest, content_type)
        finally:
            self._discard(name, staging)

    def put_file(
        self,
        bucket: Bucket | str,
        key: str,
        path: Path | str,
        *,
        content_type: str = "application/octet-stream",
        metadata: dict[str, str] | None = None,
        sha256: str | None = None,
    ) -> StoredObject:
        path = Path(path)
        size = path.stat().st_size
        with path.open("rb") as fh:
            return self.put_stream(
                bucket,
                key,
                fh,
                length=size,
                sha256=sha256,
                content_type=content_type,
                metadata=metadata,
            )

    def put_bytes(
        self,
        bucket: Bucket | str,
        key: str,
        data: bytes,
        content_type: str = "application/octet-stream",
    ) -> StoredObject:
        return self.put_stream(
            bucket, key, io.BytesIO(data), length=len(data), content_type=content_type
        )

    def put_json(self, bucket: Bucket | str, key: str, value: Any) -> StoredObject:
        data = json.dumps(value, indent=2, sort_keys=True, default=str).encode()
        return self.put_bytes(bucket, key, data, content_type="application/json")

    def put_if_absent_file(
        self, bucket: Bucket | str, key: str, path: Path | str, **kwargs: Any
    ) -> tuple[StoredObject, bool]:
        """Content-addressed writes: keep the existing object, report whether we wrote."""
        existing = self.stat(bucket, key)
        if existing is not None:
            return existing, False
        return self.put_file(bucket, key, path, **kwargs), True

    # -- reads -------------------------------------------------------------------------------

    def stat(self, bucket: Bucket | str, key: str) -> StoredObject | None:
        name = self.bucket_name(bucket)
        try:
            st = self._client.stat_object(name, key)
        except S3Error as exc:
            if exc.code in {"NoSuchKey", "NoSuchObject", "NotFound"}:
                return None
            raise self._translate(exc, f"stat {name}/{key}") from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise self._unavailable(exc, f"stat {name}/{key}") from exc
        # User metadata comes back as x-amz-meta-* headers; strip the prefix.
        meta = {
            k.lower().removeprefix("x-amz-meta-"): v
            for k, v in (st.metadata or {}).items()
            if k.lower().startswith("x-amz-meta-")
        }
        return StoredObject(
            name,
            key,
            st.size or 0,
            etag=st.etag,
            content_type=st.content_type,
            metadata=meta,
            modified=st.last_modified,
        )

    def exists(self, bucket: Bucket | str, key: str) -> bool:
        return self.stat(bucket, key) is not None

    def open(self, bucket: Bucket | str, key: str) -> BinaryIO:
        """A streaming reader; close it when done."""
        name = self.bucket_name(bucket)
        with self._errors(f"read {name}/{key}", key=key):
            # urllib3's response is the streaming reader (read, close, release_conn);
            # typing.BinaryIO is nominal, so the SDK's type does not match it by name
            return cast(BinaryIO, self._client.get_object(name, key))

    def get_bytes(self, bucket: Bucket | str, key: str) -> bytes:
        resp = self.open(bucket, key)
        try:
            return resp.read()
        finally:
            resp.close()
            getattr(resp, "release_conn", lambda: None)()

    def get_json(self, bucket: Bucket | str, key: str) -> Any:
        return json.loads(self.get_bytes(bucket, key))

    def download(self, bucket: Bucket | str, key: str, path: Path | str) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        name = self.bucket_name(bucket)
        with self._errors(f"download {name}/{key}", key=key):
            self._client.fget_object(name, key, str(path))
        return path

    def list(
        self, bucket: Bucket | str, prefix: str, recursive: bool = True
    ) -> Iterator[StoredObject]:
        name = self.bucket_name(bucket)
        with self._errors(f"list {name}/{prefix}"):
            for obj in self._client.list_objects(name, prefix=prefix, recursive=recursive):
                if obj.object_name.startswith(STAGING_PREFIX):
                    continue
                yield StoredObject(
                    name, obj.object_name, obj.size or 0, etag=obj.etag, modified=obj.last_modified
                )

    def delete(self, bucket: Bucket | str, key: str) -> None:
        if Bucket(bucket) is Bucket.RAW:
            raise InvalidInput(
                f"raw/{key}: originals are immutable and never deleted by loraforge; "
                "remove them with your S3 tooling if you really mean to"
            )
        name = self.bucket_name(bucket)
        with self._errors(f"delete {name}/{key}"):
            self._client.remove_object(name, key)

    # -- presigned URLs ----------------------------------------------------------------------

    def presigned_get(self, bucket: Bucket | str, key: str, expires_s: int | None = None) -> str:
        name = self.bucket_name(bucket)
        if self.stat(bucket, key) is None:
            raise NotFound(f"{name}/{key} does not exist")
        with self._errors(f"presign {name}/{key}"):
            return self._client.presigned_get_object(
                name, key, expires=timedelta(seconds=expires_s or self._settings.presign_expiry_s)
            )

    def presigned_put(self, bucket: Bucket | str, key: str, expires_s: int | None = None) -> str:
        """A URL a client can PUT a large file to directly. The caller commits it afterwards
        (e.g. `commit_staged`) so an unfinished upload never appears under the final key."""
        name = self.bucket_name(bucket)
        self._check_key(key)
        with self._errors(f"presign {name}/{key}"):
            return self._client.presigned_put_object(
                name, key, expires=timedelta(seconds=expires_s or self._settings.presign_expiry_s)
            )

    def new_staging_key(self) -> str:
        return f"{STAGING_PREFIX}{uuid.uuid4().hex}"

    def commit_staged(
        self, bucket: Bucket | str, staging_key: str, key: str, *, sha256: str | None = None
    ) -> StoredObject:
        """Move a presigned-PUT upload from its staging key to `key` after verifying it."""
        if not staging_key.startswith(STAGING_PREFIX):
            raise InvalidInput(f"{staging_key!r} is not a staging key")
        name = self.bucket_name(bucket)
        self._check_key(key)
        try:
            digest = None
            if sha256 is not None:
                reader = self.open(bucket, staging_key)
                h = hashlib.sha256()
                try:
                    for chunk in iter(lambda: reader.read(1 << 20), b""):
                        h.update(chunk)
                finally:
                    reader.close()
                digest = h.hexdigest()
                if digest != sha256.lower():
                    raise IntegrityError(
                        f"{key}: uploaded content sha256 {digest} != expected {sha256}; "
                        "upload again"
                    )
            st = self.stat(bucket, staging_key)
            if st is None:
                raise NotFound(f"nothing was uploaded to {name}/{staging_key}")
            return self._commit(name, staging_key, key, st.size, digest, st.content_type)
        finally:
            self._discard(name, staging_key)

    # -- internals ---------------------------------------------------------------------------

    def _commit(
        self,
        name: str,
        staging: str,
        key: str,
        size: int,
        digest: str | None,
        content_type: str | None,
    ) -> StoredObject:
        with self._errors(f"commit {name}/{key}"):
            if size > _SINGLE_COPY_LIMIT:
                result = self._client.compose_object(name, key, [ComposeSource(name, staging)])
            else:
                result = self._client.copy_object(name, key, CopySource(name, staging))
        return StoredObject(name, key, size, digest, result.etag, content_type)

    def _discard(self, name: str, staging: str) -> None:
        with contextlib.suppress(Exception):
            self._client.remove_object(name, staging)

    @staticmethod
    def _check_key(key: str) -> None:
        if not key or key.startswith("/") or ".." in key.split("/") or "//" in key:
            raise InvalidInput(f"{key!r} is not a valid object key (no leading '/', '..' or '//')")

    def _errors(self, action: str, key: str | None = None) -> _ErrorScope:
        return _ErrorScope(self, action, key)

    def _translate(self, exc: S3Error, action: str) -> LoraforgeError:
        if exc.code in {"NoSuchKey", "NoSuchObject", "NoSuchBucket", "NotFound"}:
            return NotFound(f"{action}: {exc.code} ({exc.bucket_name}/{exc.object_name or ''})")
        if exc.code in {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"}:
            return Unavailable(
                f"{action}: the S3 server at {self._settings.endpoint} refused our credentials "
                f"({exc.code}); check LORAFORGE_S3__ACCESS_KEY / LORAFORGE_S3__SECRET_KEY"
            )
        return LoraforgeError(f"{action}: S3 error {exc.code}: {exc.message}")

    def _unavailable(self, exc: BaseException, action: str) -> Unavailable:
        return Unavailable(
            f"{action}: cannot reach the S3 server at {self._settings.endpoint} ({exc}); "
            "start it (`loraforge stack up`) or fix LORAFORGE_S3__ENDPOINT"
        )


class _ErrorScope:
    def __init__(self, store: ObjectStore, action: str, key: str | None):
        self._store, self._action, self._key = store, action, key

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> Literal[False]:
        if exc is None or isinstance(exc, LoraforgeError):
            return False
        if isinstance(exc, S3Error):
            raise self._store._translate(exc, self._action) from exc
        if isinstance(exc, (urllib3.exceptions.HTTPError, ConnectionError, TimeoutError)):
            raise self._store._unavailable(exc, self._action) from exc
        return False


async def sweep_staging_forever(store: ObjectStore, settings: S3Settings) -> None:
    """The staging sweeper of a service process: one pass every staging_sweep_every_s
    (jittered, so replicas spread out; a pass stopped at its batch limit is followed by the
    next one at once). Store errors are logged and retried on the next pass."""
    try:
        await asyncio.to_thread(store.ensure_staging_lifecycle)
    except Exception as exc:
        log.info("could not set the staging lifecycle rule: %s", exc)
    await asyncio.sleep(settings.staging_sweep_every_s * random.uniform(0.1, 1.0))
    while True:
        try:
            result = await asyncio.to_thread(
                store.sweep_staging,
                max_age_s=settings.staging_max_age_s,
                batch=settings.staging_sweep_batch,
            )
        except LoraforgeError as exc:
            log.warning("staging sweep failed: %s", exc)
            result = SweepResult(0, 0, more=False)
        if result.removed:
            log.info(
                "staging sweep removed %d abandoned upload(s) older than %ds",
                result.removed,
                settings.staging_max_age_s,
            )
        if not result.more:
            await asyncio.sleep(settings.staging_sweep_every_s * random.uniform(0.8, 1.2))
