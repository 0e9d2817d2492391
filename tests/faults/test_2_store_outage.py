"""Object store unavailable for 10 s mid-upload.

Injects: while an ingest job writes its clips, keyframes and proxies to the object store,
the S3 server (SeaweedFS) is killed, and started again on its data 10 s later.
Must hold: the job is retried (a later delivery, after the back-off) and SUCCEEDED; nothing
is half-committed: every object under the project's clips/ is one the job's record names,
with the size it names; no `_staging/` object is left (an interrupted upload's is swept).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from loraforge.runtime.storage import Bucket

from .conftest import FaultStack, report, write_footage
from .pipeline import Pipeline

# Minutes on a loaded 2-core machine: well over pytest's default 300 s.
pytestmark = pytest.mark.timeout(900)

OUTAGE_S = 10.0


def test_object_store_unavailable_for_10s_mid_upload(
    fault_stack: FaultStack, tmp_path: Path
) -> None:
    pipeline = Pipeline(fault_stack, "acme", "s3outage", write_footage(tmp_path / "footage"))
    pipeline.start("ingest")
    pipeline.wait(("RUNNING",), 120, poll_s=0.02)
    down_at = fault_stack.kill("s3")
    time.sleep(OUTAGE_S)
    back_at = fault_stack.restart()
    final = pipeline.finish("ingest", 240)
    assert pipeline.done["ingest"]["state"] == "SUCCEEDED", final.message
    record = fault_stack.job("acme", "s3outage", final.id)
    assert record.attempt >= 2, record.attempt  # the outage failed a delivery; a later one won
    named = {a.key: a.size for a in record.artifacts if a.bucket.endswith(Bucket.CLIPS.value)}
    stored = {o.key: o.size for o in pipeline.store.list(Bucket.CLIPS, "acme/s3outage/clips/")}
    assert stored.keys() == named.keys()
    assert all(stored[k] == size for k, size in named.items() if size), (stored, named)
    assert fault_stack.staging_swept() == []
    report(
        "object store down 10 s mid-upload",
        attempts=record.attempt,
        down_s=round(back_at - down_at, 1),
        recovered_s=round(time.monotonic() - back_at, 1),
        objects=len(stored),
        half_committed=0,
    )
