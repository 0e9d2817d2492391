"""Drives the pipeline through the services' gRPC APIs, stage by stage, the way `loraforge run`
does (its own stage starters), so a test can inject a fault while a stage's job runs."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from loraforge.cli.jobs import is_terminal, job_state, scope
from loraforge.cli.run_cmd import _job_summary, _stages
from loraforge.ingest.upload import upload_local
from loraforge.runtime.keys import ProjectRef
from loraforge.runtime.storage import Bucket, ObjectStore

# The service (process and job kind) behind each stage of `loraforge run`.
SERVICE = {
    "ingest": "ingest",
    "curate": "curation",
    "caption": "captioning",
    "train": "trainer",
    "preview render": "render",
}
# Where a stage's output lives, and which key part names one output (a clip folder per
# source, a dataset, a training run, a render): a stage done twice shows a second one.
OUTPUT = {
    "ingest": (Bucket.CLIPS, "clips"),
    "curate": (Bucket.DATASETS, "datasets"),
    "train": (Bucket.LORAS, "runs"),
    "preview render": (Bucket.RENDERS, "renders"),
}


TRAIN_STEPS = 12


class Pipeline:
    def __init__(
        self, fs: Any, tenant: str, project: str, footage: list[Path], base: str = "tiny-wan2.1-t2v"
    ):
        self.fs, self.ref = fs, ProjectRef(tenant, project)
        self.store = ObjectStore.connect(fs.settings.s3)
        keys = [u.key for u in upload_local(self.store, self.ref, footage)]
        self.sources = len(keys)
        run_id = uuid.uuid4().hex[:12]
        self.starters = dict(_stages(fs.settings, self.ref, keys, "ohwx_woman", base, 0, run_id))
        self.starters["train"] = self._train(base, run_id)
        self.done: dict[str, dict[str, Any]] = {}
        self.current: tuple[Any, Any] | None = None

    def _train(self, base: str, run_id: str) -> Any:
        """`loraforge run`'s training start with fewer steps (12, not the demo's 40): enough
        for checkpoints (a kill lands between them) at a third of the time."""
        from loraforge.runtime.grpc_client import sync_channel
        from loraforge.v1 import common_pb2, trainer_pb2, trainer_pb2_grpc

        def start(prev: dict[str, Any]) -> tuple[Any, Any, str, str]:
            endpoint = self.fs.settings.endpoints.trainer
            stub = trainer_pb2_grpc.TrainerServiceStub(sync_channel(endpoint))
            run = common_pb2.TrainingRun(
                dataset_id=prev["curate"]["result"]["dataset_id"],
                base_preset=base,
                rank=8,
                steps=TRAIN_STEPS,
                seed=1,
            )
            job = stub.StartTraining(
                trainer_pb2.StartTrainingRequest(
                    scope=self.wire, request_id=f"faults-{run_id}-train", run=run
                ),
                timeout=15,
            )
            return job, stub, "trainer", endpoint

        return start

    @property
    def wire(self) -> Any:
        return scope(self.ref.tenant, self.ref.project)

    def start(self, stage: str) -> Any:
        job, stub, _service, _endpoint = self.starters[stage](self.done)
        self.current = (job, stub)
        return job

    def get(self) -> Any:
        from loraforge.v1 import common_pb2

        job, stub = self.current
        # A service that was just killed may take a moment to answer again.
        for _ in range(100):
            try:
                return stub.GetJob(
                    common_pb2.GetJobRequest(scope=self.wire, job_id=job.id), timeout=5
                )
            except Exception:
                time.sleep(0.2)
        raise AssertionError(f"GetJob {job.id} never answered")

    def wait(self, states: tuple[str, ...], timeout_s: float, poll_s: float = 0.05) -> Any:
        deadline = time.monotonic() + timeout_s
        while True:
            job = self.get()
            if job_state(job) in states or is_terminal(job):
                return job
            if time.monotonic() > deadline:
                from .stream import consumers

                raise AssertionError(
                    f"job {job.id} still {job_state(job)}: {job.message}; "
                    f"consumers: {consumers(self.fs)}"
                )
            time.sleep(poll_s)

    def finish(self, stage: str, timeout_s: float) -> Any:
        job = self.wait((), timeout_s, poll_s=0.2)
        self.done[stage] = _job_summary(job)
        return job

    def outputs(self, stage: str) -> Counter:
        """Objects per output (clip folder, dataset, run, render) of this project."""
        bucket, part = OUTPUT[stage]
        prefix = f"{self.ref.tenant}/{self.ref.project}/{part}/"
        found: Counter = Counter()
        for obj in self.store.list(bucket, prefix):
            name = obj.key[len(prefix) :].split("/", 1)[0]
            if not name.startswith("_"):  # datasets/_measures: per-clip cache, not an output
                found[name] += 1
        return found
