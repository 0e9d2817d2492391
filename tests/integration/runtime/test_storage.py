"""The object store against a real S3 server (SeaweedFS locally, MinIO in containers)."""

from __future__ import annotations

import hashlib
import io
import os
import urllib.request

import pytest
from pydantic import SecretStr

from loraforge.runtime.errors import InvalidInput, NotFound, Unavailable
from loraforge.runtime.keys import ProjectRef
from loraforge.runtime.storage import (
    STAGING_PREFIX,
    Bucket,
    IntegrityError,
    ObjectStore,
    UploadInterrupted,
)


class _Interrupted(io.RawIOBase):
    """A client connection that drops after `fail_after` bytes."""

    def __init__(self, total: int, fail_after: int):
        self._left, self._fail_after, self._sent = total, fail_after, 0

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        if self._sent >= self._fail_after:
            raise ConnectionResetError("client went away mid-upload")
        n = min(n if n > 0 else 1 << 20, self._left, self._fail_after - self._sent)
        self._sent += n
        self._left -= n
        return os.urandom(n)


def _staging_objects(store: ObjectStore, bucket: Bucket) -> list[str]:
    name = store.bucket_name(bucket)
    return [
        o.object_name
        for o in store._client.list_objects(name, prefix=STAGING_PREFIX, recursive=True)
    ]


def test_interrupted_multipart_upload_leaves_nothing(store: ObjectStore) -> None:
    key = ProjectRef("acme", "jane").key("sources", "big.mp4")
    with pytest.raises(UploadInterrupted, match="after 12582912 bytes"):
        store.put_stream(Bucket.RAW, key, _Interrupted(total=20 << 20, fail_after=12 << 20))
    assert store.stat(Bucket.RAW, key) is None
    assert _staging_objects(store, Bucket.RAW) == []


def test_short_stream_is_not_committed_and_old_object_survives(store: ObjectStore) -> None:
    key = ProjectRef("acme", "jane").key("clips", "c1.mp4")
    store.put_bytes(Bucket.CLIPS, key, b"old content")
    with pytest.raises(IntegrityError, match="expected 1000"):
        store.put_stream(Bucket.CLIPS, key, io.BytesIO(b"x" * 10), length=1000)
    with pytest.raises(IntegrityError, match="sha256"):
        store.put_stream(Bucket.CLIPS, key, io.BytesIO(b"new"), sha256="0" * 64)
    assert store.get_bytes(Bucket.CLIPS, key) == b"old content"


def test_multipart_stream_of_unknown_length_round_trips(store: ObjectStore, tmp_path) -> None:
    data = os.urandom(11 << 20)  # > two 5 MiB parts
    key = ProjectRef("acme", "jane").key("sources", "stream.bin")
    obj = store.put_stream(
        Bucket.RAW, key, io.BytesIO(data), sha256=hashlib.sha256(data).hexdigest()
    )
    assert obj.size == len(data)
    assert store.download(Bucket.RAW, key, tmp_path / "out.bin").read_bytes() == data


def test_presigned_urls_work_without_credentials(store: ObjectStore) -> None:
    key = ProjectRef("acme", "jane").key("loras", "best.safetensors")
    store.put_bytes(Bucket.LORAS, key, b"weights")
    with urllib.request.urlopen(store.presigned_get(Bucket.LORAS, key, expires_s=60)) as resp:
        assert resp.read() == b"weights"
    staging = store.new_staging_key()
    url = store.presigned_put(Bucket.RAW, staging, expires_s=60)
    req = urllib.request.Request(url, data=b"uploaded directly", method="PUT")
    with urllib.request.urlopen(req) as resp:
        assert resp.status == 200
    final = ProjectRef("acme", "jane").key("sources", "direct.bin")
    store.commit_staged(
        Bucket.RAW, staging, final, sha256=hashlib.sha256(b"uploaded directly").hexdigest()
    )
    assert store.get_bytes(Bucket.RAW, final) == b"uploaded directly"
    assert _staging_objects(store, Bucket.RAW) == []
    with pytest.raises(NotFound):
        store.presigned_get(Bucket.LORAS, ProjectRef("acme", "jane").key("missing"))


def test_raw_is_never_deleted(store: ObjectStore) -> None:
    key = ProjectRef("acme", "jane").key("sources", "keep.mp4")
    store.put_bytes(Bucket.RAW, key, b"original")
    with pytest.raises(InvalidInput, match="immutable"):
        store.delete(Bucket.RAW, key)
    assert store.exists(Bucket.RAW, key)


def test_ensure_buckets_is_idempotent(store: ObjectStore) -> None:
    assert store.ensure_buckets() == []


@pytest.mark.parametrize("bad", ["../etc/passwd", "a/../../b", "", ".", "a b"])
def test_key_parts_refuse_path_tricks(bad: str) -> None:
    with pytest.raises(InvalidInput):
        ProjectRef("acme", "jane").key(bad)


@pytest.mark.parametrize("tenant", ["Acme", "-x", "a_b", "", "x" * 64])
def test_tenant_names_are_slugs(tenant: str) -> None:
    with pytest.raises(InvalidInput):
        ProjectRef(tenant, "jane")


def test_wrong_credentials_and_dead_endpoint_are_named(settings) -> None:
    from loraforge.stack.binaries import free_port

    bad = ObjectStore.connect(
        settings.s3.model_copy(update={"secret_key": SecretStr("wrong-secret-xyz")})
    )
    with pytest.raises(Unavailable, match="credentials"):
        bad.ping()
    endpoint = f"127.0.0.1:{free_port()}"
    dead = ObjectStore.connect(settings.s3.model_copy(update={"endpoint": endpoint}))
    with pytest.raises(Unavailable, match=endpoint):
        dead.ping()


def test_metadata_round_trips_and_put_file_checks_sha(store: ObjectStore, tmp_path) -> None:
    path = tmp_path / "clip.mp4"
    path.write_bytes(b"frames")
    key = ProjectRef("acme", "jane").key("sources", "x.mp4")
    store.put_file(
        Bucket.RAW,
        key,
        path,
        metadata={"original-name": "My Clip.mp4"},
        sha256=hashlib.sha256(b"frames").hexdigest(),
    )
    assert store.stat(Bucket.RAW, key).metadata == {"original-name": "My Clip.mp4"}
    with pytest.raises(IntegrityError):
        store.put_file(
            Bucket.RAW, ProjectRef("acme", "jane").key("sources", "y.mp4"), path, sha256="1" * 64
        )


def test_the_newest_committed_dataset_is_the_default(store: ObjectStore) -> None:
    # `--dataset` left out means the project's newest committed dataset: listing carries the
    # server's modification times (1 s resolution); a dataset without its record is not there
    import time

    from loraforge.cli.datasets import dataset_ids, resolve_dataset
    from loraforge.curation import layout

    ref = ProjectRef("acme", "newest")
    with pytest.raises(NotFound, match="no curated dataset yet"):
        resolve_dataset(store, ref, None)
    store.put_json(Bucket.DATASETS, layout.record_key(ref, "zz-old"), {"n": 1})
    time.sleep(1.1)
    store.put_json(Bucket.DATASETS, layout.record_key(ref, "aa-new"), {"n": 2})
    store.put_bytes(Bucket.DATASETS, layout.manifest_key(ref, "bb-uncommitted"), b"{}")
    listed = list(store.list(Bucket.DATASETS, layout.datasets_root(ref)))
    assert all(o.modified is not None for o in listed)
    assert store.stat(Bucket.DATASETS, layout.record_key(ref, "aa-new")).modified is not None
    assert dataset_ids(store, ref) == ["aa-new", "zz-old"]
    assert resolve_dataset(store, ref, None) == ("aa-new", {"n": 2})
    with pytest.raises(NotFound, match="does not exist"):
        resolve_dataset(store, ref, "bb-uncommitted")
