"""The staging sweeper on a real S3 server (SeaweedFS): abandoned `_staging/` objects older
than the bound go, younger ones (uploads that may still commit) and committed objects stay."""

from __future__ import annotations

import asyncio
import io
from datetime import UTC, datetime, timedelta

from loraforge.runtime.storage import (
    STAGING_PREFIX,
    Bucket,
    ObjectStore,
    sweep_staging_forever,
)


def _stage(store: ObjectStore, bucket: Bucket, n: int) -> list[str]:
    """What a process killed between its staging write and its commit leaves behind."""
    keys = []
    for _ in range(n):
        key = store.new_staging_key()
        store._client.put_object(store.bucket_name(bucket), key, io.BytesIO(b"half"), 4)
        keys.append(key)
    return keys


def _staged(store: ObjectStore, bucket: Bucket) -> list[str]:
    return [
        o.object_name
        for o in store._client.list_objects(
            store.bucket_name(bucket), prefix=STAGING_PREFIX, recursive=True
        )
    ]


def test_old_staging_objects_are_removed_in_bounded_passes_and_the_rest_stays(
    store: ObjectStore,
) -> None:
    committed = store.put_bytes(Bucket.CLIPS, "acme/jane/clips/a/c1.mp4", b"clip")
    _stage(store, Bucket.CLIPS, 3)
    _stage(store, Bucket.RAW, 2)  # raw's originals are immutable; its staging is not
    # Just written: inside the bound (an upload that may still commit) -> kept.
    kept = store.sweep_staging(max_age_s=3600)
    assert (kept.removed, kept.young, kept.more) == (0, 5, False)
    # A day later: all five are abandoned; two passes of at most 3 remove them.
    later = datetime.now(UTC) + timedelta(days=1)
    first = store.sweep_staging(max_age_s=3600, batch=3, now=later)
    assert (first.removed, first.more) == (3, True)
    second = store.sweep_staging(max_age_s=3600, batch=3, now=later)
    assert (second.removed, second.more) == (2, False)
    assert _staged(store, Bucket.CLIPS) == [] and _staged(store, Bucket.RAW) == []
    assert store.get_bytes(Bucket.CLIPS, committed.key) == b"clip"


async def test_every_service_process_sweeps_periodically(store: ObjectStore, settings) -> None:
    """The loop the services run (host.py): with a zero bound every staged object is stale."""
    staged = _stage(store, Bucket.DATASETS, 2)
    fast = settings.s3.model_copy(update={"staging_max_age_s": 0, "staging_sweep_every_s": 0.2})
    task = asyncio.create_task(sweep_staging_forever(store, fast))
    try:
        for _ in range(100):
            if not _staged(store, Bucket.DATASETS):
                break
            await asyncio.sleep(0.1)
    finally:
        task.cancel()
    assert staged and _staged(store, Bucket.DATASETS) == []


def test_lifecycle_rule_is_set_where_the_store_takes_it(store: ObjectStore) -> None:
    took = store.ensure_staging_lifecycle()
    for name in took:  # a store that took the rule must report it back
        rules = store._client.get_bucket_lifecycle(name).rules
        assert any(r.rule_filter.prefix == STAGING_PREFIX for r in rules)
