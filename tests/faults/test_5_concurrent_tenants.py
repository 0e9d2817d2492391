"""20 concurrent pipelines from 4 tenants.

Injects: 4 tenants x 5 projects upload a take each and start their ingest at the same moment
(20 gRPC starts from 20 threads); each ingest's `clips.ingested` starts that project's
automatic curation, so ingest and curation workers serve 20 interleaved chains.
Must hold: all 20 ingests and all 20 curations SUCCEEDED; each job's artifacts lie under its
own tenant/project; under each tenant's prefix there are only its own projects, each with
one clip folder and one dataset: no object crossed tenants.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from loraforge.runtime.storage import Bucket

from .conftest import FaultStack, report, write_footage
from .pipeline import Pipeline

# Minutes on a loaded 2-core machine: well over pytest's default 300 s.
pytestmark = pytest.mark.timeout(900)

TENANTS = ("ten-a", "ten-b", "ten-c", "ten-d")
PROJECTS = tuple(f"p{i}" for i in range(5))
TIMEOUT_S = 800.0


def test_20_concurrent_pipelines_from_4_tenants_complete_without_crossing(
    fault_stack: FaultStack, tmp_path: Path
) -> None:
    footage = write_footage(tmp_path / "footage", ("zoom",), seconds=2.2)
    pipelines = [Pipeline(fault_stack, t, p, footage) for t in TENANTS for p in PROJECTS]
    t0 = time.monotonic()
    with ThreadPoolExecutor(len(pipelines)) as pool:
        list(pool.map(lambda pl: pl.start("ingest"), pipelines))

        def chain(pl: Pipeline) -> tuple[str, str]:
            pl.finish("ingest", TIMEOUT_S)
            if pl.done["ingest"]["state"] != "SUCCEEDED":
                return pl.done["ingest"]["state"], "not started"
            pl.start("curate")  # follows the curation that clips.ingested started
            pl.finish("curate", TIMEOUT_S)
            return pl.done["ingest"]["state"], pl.done["curate"]["state"]

        states = list(pool.map(chain, pipelines))
    elapsed = time.monotonic() - t0
    assert states == [("SUCCEEDED", "SUCCEEDED")] * len(pipelines), states

    crossed = []
    for pl in pipelines:
        own = f"{pl.ref.tenant}/{pl.ref.project}/"
        for stage in ("ingest", "curate"):
            record = fault_stack.job(pl.ref.tenant, pl.ref.project, pl.done[stage]["job_id"])
            crossed += [a.key for a in record.artifacts if not a.key.startswith(own)]
        assert len(pl.outputs("ingest")) == 1 and len(pl.outputs("curate")) == 1
    assert crossed == []
    for tenant in TENANTS:
        for bucket in (Bucket.RAW, Bucket.CLIPS, Bucket.DATASETS):
            projects = {o.key.split("/")[1] for o in pipelines[0].store.list(bucket, f"{tenant}/")}
            assert projects == set(PROJECTS), (tenant, bucket, projects)
    report(
        "20 concurrent pipelines, 4 tenants",
        pipelines=len(pipelines),
        ingest_succeeded=sum(s[0] == "SUCCEEDED" for s in states),
        curation_succeeded=sum(s[1] == "SUCCEEDED" for s in states),
        cross_tenant_objects=len(crossed),
        seconds=round(elapsed, 1),
    )
