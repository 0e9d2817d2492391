"""NATS restart mid-pipeline.

Injects: while the ingest job of a pipeline runs, nats-server (the event stream and the job
store) is stopped (SIGTERM) and started again on its data dir, as an upgrade would;
it stays down 5 s; every service keeps running and reconnects on its own.
Must hold: no event is lost and the chain completes: the ingest job SUCCEEDED with its
`clips.ingested` stored once, the curation that event starts SUCCEEDED with `dataset.curated`
once, and captioning on that dataset SUCCEEDED.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from .conftest import FaultStack, report, write_footage
from .pipeline import Pipeline
from .stream import events_about

# Minutes on a loaded 2-core machine: well over pytest's default 300 s.
pytestmark = pytest.mark.timeout(900)

STAGE_TIMEOUT_S = 240.0
# Down for longer than ack_wait (3 s here): every client's reconnect loop and in-flight
# request times out at least once.
NATS_DOWN_S = 5.0


def test_nats_restart_mid_pipeline_loses_no_event(fault_stack: FaultStack, tmp_path: Path) -> None:
    pipeline = Pipeline(fault_stack, "acme", "natsrestart", write_footage(tmp_path / "footage"))
    pipeline.start("ingest")
    pipeline.wait(("RUNNING",), STAGE_TIMEOUT_S, poll_s=0.02)
    down_at = time.monotonic()
    fault_stack.terminate("nats")
    time.sleep(NATS_DOWN_S)
    back_at = fault_stack.restart()
    figures = {"nats_down_s": round(back_at - down_at, 1)}
    expected = {
        "ingest": ("ingest.succeeded", "clips.ingested"),
        "curate": ("curation.succeeded", "dataset.curated"),
        "caption": ("captioning.succeeded",),
    }
    for stage, must in expected.items():
        if stage != "ingest":
            pipeline.start(stage)
        final = pipeline.finish(stage, STAGE_TIMEOUT_S)
        assert pipeline.done[stage]["state"] == "SUCCEEDED", (stage, final.message)
        if stage == "ingest":
            figures["ingest_done_after_restart_s"] = round(time.monotonic() - back_at, 1)
        events = events_about(fault_stack, final.id)
        for event_type in must:
            assert events.get(event_type) == 1, (stage, event_type, events)
        figures[stage] = dict(events)
    figures["chain_done_after_restart_s"] = round(time.monotonic() - back_at, 1)
    report("NATS restart mid-pipeline", **figures)
