"""Poison messages.

Injects: (a) bytes that are no event at all on the ingest work queue, published the way a
batch system publishes requests; (b) a training job on a dataset that was never curated (a
request that can never succeed: NotFound, a permanent error); (c) an ingest job whose source
is not in the raw bucket; and a good ingest job started right behind them.
Must hold: (a) and (b) are dead-lettered (`<root>.dlq.<consumer>`, reasons `malformed` and
`permanent_error`) instead of being retried, (b)'s and (c)'s jobs are FAILED with the reason,
and the good job on the same queue SUCCEEDED, unaffected.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from loraforge.runtime.events import read_dead_letters
from loraforge.runtime.job_service import JobService

from .conftest import FaultStack, report, write_footage
from .pipeline import Pipeline

# Minutes on a loaded 2-core machine: well over pytest's default 300 s.
pytestmark = pytest.mark.timeout(900)

MISSING_SOURCE = "acme/poison/sources/" + "0" * 64 + ".mp4"
POISON = b"\xff not an event"


def test_poison_messages_are_dead_lettered_fail_their_jobs_and_others_run(
    fault_stack: FaultStack, tmp_path: Path
) -> None:
    async def inject(bus, jobs, store):
        await bus.jetstream.publish(
            bus.subject("ingest.requests"), POISON, stream=bus.settings.stream
        )
        training = await JobService("trainer", jobs, bus).start(
            "acme", "poison", {"dataset_id": "ds-never-curated", "base_preset": "tiny-sdxl"}
        )
        ingest = await JobService("ingest", jobs, bus).start(
            "acme", "poison", {"sources": [MISSING_SOURCE]}
        )
        return training, ingest

    t0 = time.monotonic()
    training, missing = fault_stack.run(inject)
    good = Pipeline(fault_stack, "acme", "poison", write_footage(tmp_path / "footage", ("pan",)))
    good.start("ingest")
    final = good.finish("ingest", 240)
    assert good.done["ingest"]["state"] == "SUCCEEDED", final.message

    async def verdict(bus, jobs, store):
        deadline = time.monotonic() + 60
        while True:
            states = [await jobs.get("acme", "poison", j.id) for j in (training, missing)]
            # The shared stack's other cases may dead-letter too: only this case's letters.
            letters = [
                letter
                for consumer in ("ingest-workers", "trainer-workers")
                for letter in await read_dead_letters(bus, consumer)
                if letter.payload() == POISON or training.id.encode() in letter.payload()
            ]
            if all(s.state.terminal for s in states) and len(letters) >= 2:
                return states, letters
            if time.monotonic() > deadline:
                return states, letters

    (training_job, missing_job), letters = fault_stack.run(verdict)
    assert training_job.state.value == "FAILED", training_job
    assert "ds-never-curated" in training_job.message, training_job.message
    assert missing_job.state.value == "FAILED", missing_job
    assert sorted((letter.consumer, letter.reason) for letter in letters) == [
        ("ingest-workers", "malformed"),
        ("trainer-workers", "permanent_error"),
    ]
    report(
        "poison messages",
        dead_letters=sorted(letter.reason for letter in letters),
        poison_job=training_job.message[:90],
        missing_source_job=missing_job.message[:60],
        good_job="SUCCEEDED",
        seconds=round(time.monotonic() - t0, 1),
    )
