"""The trainer service's work: one training job = one LoRA trained on a captioned dataset and
stored in `loras/`. ``TrainingWork.__call__`` reads as the steps; each step is a part in
``trainer/run/`` that can be read and tested alone:

    params (TrainingParams)
      -> run.json already there? the job is done: answer with it (commit.read_record)
      -> on_kubernetes: the same steps in a Kubernetes Job's pod (k8s_run.py: the service
         writes the run spec, creates and watches the Job, relays its progress and answers
         with the run.json the pod committed)
      -> the captioned dataset downloaded in the trainer core's seed layout (fetch.py)
      -> the RunContext: the dataset, the RunConfig, the evaluation settings (context.py)
      -> resume from the newest checkpoint an earlier delivery uploaded (sync.py)
      -> Trainer.run() in a thread (training.py); every tick: new checkpoints and previews
         uploaded, progress -> JobContext.progress; a cancel stops after the current
         optimizer step, whose checkpoint is uploaded
      -> likeness evaluation of every checkpoint and the final step (evaluate.py:
         previews rendered while training, else now, scored against reference faces from
         the dataset's keyframes; one step chosen, by lowest validation loss when no
         preview shows a face)
      -> loras  <t>/<p>/runs/<job_id>/last.safetensors          the final LoRA
                                      best.safetensors          the chosen step's LoRA
                                      checkpoints/step-N/adapter.safetensors
                                      previews/step-N/NN.png    renders of each evaluated step
                                      report/report.{html,md} + checkpoints.csv + plots
                                      run.json                  commit marker, written last
         (commit.py; keys in layout.py)

Wan 2.2 A14B writes one file per expert: `last.safetensors` is the high-noise expert and
`last.low_noise.safetensors` the low-noise one (likewise for best); `files` in run.json
names all of them.

`run.json` existing means the job is done: a redelivered or retried job answers with it and
trains nothing again. A job redelivered before that (a crashed worker or an evicted pod)
resumes from the newest checkpoint it uploaded: each upload carries the optimizer, scheduler
and RNG state of that step. Latents and text embeddings are cached in `models/<tenant>/cache/`
(ObjectStoreCacheStore: shared by every run, sweep and replica of the tenant) with a local copy
under `<workdir_root>/cache`.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

from loraforge.runtime.errors import Cancelled
from loraforge.runtime.job_service import JobContext, JobOutcome
from loraforge.runtime.jobs import Job
from loraforge.runtime.keys import ProjectRef
from loraforge.runtime.params import TrainingParams
from loraforge.runtime.storage import ObjectStore
from loraforge.trainer.checkpoints import RunEvaluation
from loraforge.trainer.live_previews import LivePreviews
from loraforge.trainer.presets import get_preset
from loraforge.trainer.run.commit import commit_run, outcome, read_record
from loraforge.trainer.run.context import (
    RunContext,
    Trained,
    TrainingState,
    Workspace,
    run_context,
)
from loraforge.trainer.run.evaluate import NotEvaluated, evaluate_run
from loraforge.trainer.run.fetch import fetch_dataset
from loraforge.trainer.run.layout import run_prefix
from loraforge.trainer.run.options import refuse_kubernetes
from loraforge.trainer.run.sync import CheckpointSync
from loraforge.trainer.run.training import train

log = logging.getLogger(__name__)

# Download 0-5 %, training 5-80 %, evaluation 80-95 %, upload 95-100 %.
TRAIN_START, TRAIN_END = 0.05, 0.80
EVAL_END = 0.95

T = TypeVar("T")


class RemoteTraining(Protocol):
    """Runs an on_kubernetes job elsewhere (k8s_run.KubernetesTraining) and answers with the
    run.json committed under ``prefix``."""

    async def run(self, job: Job, ctx: Any, prefix: str) -> dict[str, Any]: ...


class TrainingWork:
    """`work(job, ctx)` for `JobWorker("trainer", ...)`."""

    def __init__(
        self,
        store: ObjectStore,
        *,
        models_dir: str | Path | None = None,
        workdir_root: str | Path | None = None,
        device: str = "auto",
        tick_s: float = 0.5,
        kubernetes: RemoteTraining | None = None,
    ):
        self._store = store
        self._kubernetes = kubernetes  # runs on_kubernetes jobs (k8s_run.py); None: refused
        self._workspace = Workspace(
            Path(workdir_root or Path(tempfile.gettempdir()) / "loraforge-trainer"),
            Path(models_dir) if models_dir else None,
            device,
        )
        self._tick_s = tick_s  # progress and uploads while a thread trains or evaluates

    @property
    def cache_dir(self) -> Path:
        return self._workspace.cache_dir

    async def __call__(self, job: Job, ctx: JobContext) -> JobOutcome:
        params = TrainingParams.model_validate(job.params)
        if self._kubernetes is None:
            refuse_kubernetes(params)
        get_preset(params.base_preset)  # InvalidInput for an unknown preset (job FAILED)
        prefix = run_prefix(ProjectRef(job.tenant, job.project), job.id)
        record = await asyncio.to_thread(read_record, self._store, prefix)
        if record is not None:
            return outcome(job, record)
        if params.on_kubernetes and self._kubernetes is not None:  # the pod runs this same code
            return outcome(job, await self._kubernetes.run(job, ctx, prefix))

        workdir = self._workspace.run_dir(job.id)
        shutil.rmtree(workdir, ignore_errors=True)
        workdir.mkdir(parents=True)
        try:
            run = await self._prepare(job, ctx, params)
            sync = CheckpointSync(self._store, run.prefix, run.checkpoint_dir)
            trained = await self._train(run, ctx, sync)
            evaluation = await self._evaluate(run, ctx, trained, sync)
            await ctx.progress(EVAL_END, "uploading the LoRA")
            record = await asyncio.to_thread(
                commit_run, self._store, run, trained, sync, evaluation
            )
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        return outcome(job, record)

    async def _prepare(self, job: Job, ctx: JobContext, params: TrainingParams) -> RunContext:
        await ctx.progress(0.0, "downloading the captioned dataset")
        dataset = await asyncio.to_thread(
            fetch_dataset,
            self._store,
            ProjectRef(job.tenant, job.project),
            params,
            self._workspace.run_dir(job.id) / "dataset",
        )
        await ctx.progress(TRAIN_START, f"{dataset.samples} captioned clip(s) downloaded")
        return run_context(job, params, dataset, self._workspace)

    async def _train(self, run: RunContext, ctx: JobContext, sync: CheckpointSync) -> Trained:
        state = TrainingState()
        # A redelivered job (worker crash, pod eviction) resumes from its newest upload.
        restored = await asyncio.to_thread(sync.resume)
        if restored is not None:
            run = run.resumed()
            state.logs.append(f"resuming from the uploaded checkpoint of step {restored}")
            state.step = restored
        previews = LivePreviews()  # uploaded and announced as they come

        async def tick() -> None:
            await asyncio.to_thread(sync.upload_new)
            await asyncio.to_thread(previews.upload, self._store, run.prefix, state.rendered)
            await ctx.progress(
                TRAIN_START + (TRAIN_END - TRAIN_START) * state.fraction,
                state.message,
                step=state.step,
                **previews.announce(),
                **state.scores(),
            )

        async def after_cancel() -> None:
            # The trainer checkpoints the step it stopped at: upload it, so an evicted pod or
            # a stopped worker resumes from there rather than from the last periodic upload.
            await asyncio.to_thread(sync.upload_new)

        cancelled = threading.Event()
        trainer, result = await in_thread(
            lambda: train(run, self._store, state, cancelled),
            cancelled,
            tick,
            self._tick_s,
            after_cancel,
        )
        if result.status != "succeeded":
            raise Cancelled(f"training of job {run.job.id} stopped at step {result.step}")
        await asyncio.to_thread(sync.upload_new)
        if await asyncio.to_thread(previews.upload, self._store, run.prefix, state.rendered):
            await ctx.progress(
                TRAIN_END, f"trained {result.step} steps", step=result.step, **previews.announce()
            )
        return Trained(trainer, result, state.rendered, previews.artifacts, state.logs)

    async def _evaluate(
        self, run: RunContext, ctx: JobContext, trained: Trained, sync: CheckpointSync
    ) -> RunEvaluation | NotEvaluated:
        """Every checkpoint + the final step, in a thread; progress published meanwhile. A
        failed evaluation keeps the trained LoRA (best is the final step)."""
        if not run.evaluation.enabled:
            return NotEvaluated(
                "likeness evaluation was turned off (extra.evaluate = false): "
                "best is the final step"
            )
        await ctx.progress(TRAIN_END, "evaluating checkpoints")
        now: dict[str, Any] = {"frac": 0.0, "message": "evaluating checkpoints"}
        cancelled = threading.Event()

        def progress(frac: float, message: str) -> None:
            now.update(frac=frac, message=message)

        async def tick() -> None:
            await ctx.progress(TRAIN_END + (EVAL_END - TRAIN_END) * now["frac"], now["message"])

        try:
            return await in_thread(
                lambda: evaluate_run(run, self._store, trained, sync, progress, cancelled.is_set),
                cancelled,
                tick,
                self._tick_s,
            )
        except Cancelled:
            raise
        except Exception as e:  # the trained LoRA is still worth keeping
            log.exception("likeness evaluation of job %s failed", run.job.id)
            return NotEvaluated(
                f"likeness evaluation failed ({type(e).__name__}: {e}): best is the final step"
            )


async def in_thread(
    fn: Callable[[], T],
    cancelled: threading.Event,
    tick: Callable[[], Awaitable[None]],
    tick_s: float,
    after_cancel: Callable[[], Awaitable[None]] | None = None,
) -> T:
    """Run ``fn`` in a thread and ``tick`` (progress, uploads) every ``tick_s`` until it
    returns. A cancel (``Cancelled`` from the job context) sets ``cancelled``, which ``fn``
    watches, waits for it to stop, runs ``after_cancel`` and re-raises."""
    task = asyncio.ensure_future(asyncio.to_thread(fn))
    try:
        while not task.done():
            await asyncio.wait({task}, timeout=tick_s)
            if not task.done():
                await tick()
    except Cancelled:
        cancelled.set()
        await asyncio.gather(task, return_exceptions=True)
        if after_cancel is not None:
            await after_cancel()
        raise
    return task.result()
