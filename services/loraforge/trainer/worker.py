"""The trainer service's work: one training job = one LoRA trained on a captioned dataset and
stored in `loras/`.

    params (TrainingParams)
      -> the captioned dataset (clips from `clips/`, current caption texts from the review
         store) downloaded into a local folder in the trainer core's seed layout
         (videos/<clip_id>.mp4 + captions/<clip_id>.txt; images/<clip_id>.<ext> + .txt)
      -> a RunConfig -> Trainer.run() in a thread (progress -> JobContext.progress; a cancel
         stops after the current optimizer step); at each evaluation (= checkpoint) step the
         validation prompts are rendered with the LoRA as it is, uploaded, and their keys go
         out in `training.progress` (live_previews.py)
      -> likeness evaluation of every checkpoint and the final step (checkpoints.py):
         previews (those rendered while training, else rendered now with each step's LoRA)
         scored against reference faces from the
         dataset's keyframes (identity, collapse, held-out validation loss), one step chosen
         (lowest validation loss when no preview shows a face)
      -> loras  <t>/<p>/runs/<job_id>/last.safetensors          the final LoRA
                                      best.safetensors          the chosen step's LoRA
                                      checkpoints/step-N/adapter.safetensors
                                      previews/step-N/NN.png    renders of each evaluated step
                                      report/report.{html,md} + checkpoints.csv + plots
                                      run.json                  commit marker, written last

`params.on_kubernetes`: the same pipeline runs in a Kubernetes Job's pod instead
(k8s_run.py: the service writes the run spec, creates and watches the Job, relays its progress
and answers with the run.json the pod committed).

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
import json
import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from loraforge.runtime.errors import Cancelled, InvalidInput
from loraforge.runtime.events import Event
from loraforge.runtime.job_service import JobContext, JobOutcome
from loraforge.runtime.jobs import ArtifactRef, Job
from loraforge.runtime.keys import ProjectRef, validate_key_part
from loraforge.runtime.params import TrainingParams
from loraforge.runtime.storage import Bucket, ObjectStore
from loraforge.trainer.live_previews import LivePreviews, lora_artifact, preview_key
from loraforge.trainer.live_previews import content_type as preview_content_type

if TYPE_CHECKING:
    from loraforge.trainer.k8s_run import KubernetesTraining

log = logging.getLogger(__name__)

COMPLETED_EVENT = "training.completed"
RECORD = "run.json"
LORA_CONTENT_TYPE = "application/octet-stream"
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
RESUME_FILES = ("training_state.pt", "run_config.json")
# RunConfig fields the service owns: `extra` may not point them elsewhere.
RESERVED_EXTRA = frozenset(
    {
        "preset",
        "dataset",
        "output_dir",
        "cache_dir",
        "models_dir",
        "name",
        "dataset_id",
        "resume",
        "validation_dataset",
    }
)
# `extra` keys of the service itself: the dataset's clips to validate on instead of seed
# 004's split (the service builds `validation_dataset` from them)
VALIDATION_CLIPS = "validation_clips"
# Download 0-5 %, training 5-80 %, evaluation 80-95 %, upload 95-100 %.
TRAIN_START, TRAIN_END = 0.05, 0.80
EVAL_END = 0.95


def run_prefix(ref: ProjectRef, job_id: str) -> str:
    return ref.key("runs", job_id)


def validate_extra(extra: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """(evaluation settings, RunConfig options) of a job's ``extra``, each option checked by
    name and type against RunConfig, so a typo or a wrong value is refused when the job is
    started, not when it runs."""
    from pydantic import TypeAdapter, ValidationError

    from loraforge.trainer.checkpoints import split_extra
    from loraforge.trainer.config import RunConfig

    settings, rest = split_extra(extra)
    validation_clip_ids(rest)
    rest.pop(VALIDATION_CLIPS, None)
    bad = sorted(RESERVED_EXTRA & set(rest))
    if bad:
        raise InvalidInput(f"extra may not set {', '.join(bad)}: the trainer service sets them")
    fields = RunConfig.model_fields
    unknown = sorted(set(rest) - set(fields))
    if unknown:
        raise InvalidInput(
            f"unknown training option(s) {', '.join(unknown)}; the options are RunConfig's "
            "fields (`loraforge-train --help` lists them, e.g. block_swap, fp8_base, use_dora)"
        )
    for name, value in rest.items():
        field = fields[name]
        try:
            typ = (
                Annotated[(field.annotation, *field.metadata)]
                if field.metadata
                else field.annotation
            )
            TypeAdapter(typ).validate_python(value)
        except ValidationError as exc:
            reason = exc.errors()[0].get("msg", str(exc))
            raise InvalidInput(f"training option {name}={value!r}: {reason}") from None
    return settings, rest


def refuse_conflicts(params: TrainingParams) -> None:
    """What the job's fields and its extra cannot both say, refused at StartTraining."""
    if params.steps is not None and params.extra.get("epochs") is not None:
        raise InvalidInput(
            f"set steps or epochs, not both (steps={params.steps}, epochs="
            f"{params.extra['epochs']}): steps counts optimizer steps, epochs passes over the "
            "training clips (steps = epochs x ceil(clips / batch))"
        )


def validation_clip_ids(extra: dict[str, Any]) -> list[str]:
    """``extra.validation_clips``: clip ids of the dataset held out as the validation set."""
    ids = extra.get(VALIDATION_CLIPS, [])
    if not isinstance(ids, list) or not all(isinstance(i, str) and i for i in ids):
        raise InvalidInput(f"{VALIDATION_CLIPS} must be a list of clip ids of the dataset")
    return list(dict.fromkeys(ids))


def refuse_kubernetes(params: TrainingParams) -> None:
    """For a trainer service without Kubernetes Jobs (LORAFORGE_K8S__TRAINING_JOBS off)."""
    if params.on_kubernetes:
        raise InvalidInput(
            "on_kubernetes training is not enabled on this trainer service: set "
            "LORAFORGE_K8S__TRAINING_JOBS=true (with LORAFORGE_K8S__NAMESPACE and "
            "LORAFORGE_K8S__TRAINER_IMAGE) where the service can reach the Kubernetes API with "
            "the Job RBAC of k8s/base/rbac.yaml; or start the run without on_kubernetes to "
            "train on this service's own device"
        )


class TrainingWork:
    """`work(job, ctx)` for `JobWorker("trainer", ...)`."""

    def __init__(
        self,
        store: ObjectStore,
        *,
        models_dir: Path | None = None,
        workdir_root: Path | None = None,
        device: str = "auto",
        tick_s: float = 0.5,
        kubernetes: KubernetesTraining | None = None,
    ):
        self._store = store
        self._kubernetes = kubernetes  # runs on_kubernetes jobs (k8s_run.py); None: refused
        self._models_dir = Path(models_dir) if models_dir else None
        self._root = Path(workdir_root or Path(tempfile.gettempdir()) / "loraforge-trainer")
        self._device = device
        self._tick_s = tick_s

    @property
    def cache_dir(self) -> Path:
        return self._root / "cache"

    async def __call__(self, job: Job, ctx: JobContext) -> JobOutcome:
        ref = ProjectRef(job.tenant, job.project)
        params = TrainingParams.model_validate(job.params)
        if self._kubernetes is None:
            refuse_kubernetes(params)
        from loraforge.trainer.presets import get_preset

        get_preset(params.base_preset)  # InvalidInput for an unknown preset (job FAILED)
        prefix = run_prefix(ref, job.id)
        if (
            await asyncio.to_thread(self._store.stat, Bucket.LORAS, f"{prefix}/{RECORD}")
            is not None
        ):
            record = await asyncio.to_thread(
                self._store.get_json, Bucket.LORAS, f"{prefix}/{RECORD}"
            )
            return self._outcome(job, record)
        if params.on_kubernetes and self._kubernetes is not None:  # the pod runs this same code
            return self._outcome(job, await self._kubernetes.run(job, ctx, prefix))

        workdir = self._root / "runs" / job.id
        shutil.rmtree(workdir, ignore_errors=True)
        workdir.mkdir(parents=True)
        try:
            await ctx.progress(0.0, "downloading the captioned dataset")
            info = await asyncio.to_thread(self._download, ref, params, workdir / "dataset")
            await ctx.progress(TRAIN_START, f"{info['samples']} captioned clip(s) downloaded")
            eval_settings, extra = validate_extra(params.extra)
            config = self._config(params.model_copy(update={"extra": extra}), info, workdir)
            record = await self._train(
                job, ctx, ref, params, config, info, prefix, workdir, eval_settings
            )
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        return self._outcome(job, record)

    # ------------------------------------------------------------ dataset

    def _download(self, ref: ProjectRef, params: TrainingParams, dest: Path) -> dict[str, Any]:
        from loraforge.captioning.dataset import read_dataset
        from loraforge.captioning.review import CaptionReviewStore
        from loraforge.trainer.presets import get_preset

        video_model = get_preset(params.base_preset).is_video

        dataset = read_dataset(self._store, ref, params.dataset_id)
        review = CaptionReviewStore(self._store, ref, params.dataset_id)
        texts = review.texts()
        run = review.load_run() or {}
        held = set(validation_clip_ids(params.extra))
        unknown = sorted(held - {c.clip_id for c in dataset.clips})
        if unknown:
            raise InvalidInput(
                f"{VALIDATION_CLIPS} names clip(s) that are not in dataset "
                f"{params.dataset_id}: {', '.join(unknown[:5])}"
            )
        train_dest, val_dest = dest, dest.parent / "validation"
        skipped, n, n_val = [], 0, 0
        for clip in dataset.clips:
            text = (texts.get(clip.clip_id) or "").strip()
            if not text:
                skipped.append(clip.clip_id)
                continue
            dest = val_dest if clip.clip_id in held else train_dest
            n_val += clip.clip_id in held
            name = validate_key_part(clip.clip_id)
            suffix = Path(clip.key).suffix.lower() or ".mp4"
            if suffix in IMAGE_EXTS:
                media, caption = (
                    dest / "images" / f"{name}{suffix}",
                    dest / "images" / f"{name}.txt",
                )
                self._store.download(clip.bucket, clip.key, media)
            elif video_model:
                media, caption = (
                    dest / "videos" / f"{name}{suffix}",
                    dest / "captions" / f"{name}.txt",
                )
                self._store.download(clip.bucket, clip.key, media)
            else:  # an image model learns from a still: the clip's keyframe, else its middle frame
                caption = dest / "images" / f"{name}.txt"
                self._still(
                    clip, dest / "images" / name, dest.parent / "_stills" / f"{name}{suffix}"
                )
            caption.parent.mkdir(parents=True, exist_ok=True)
            caption.write_text(text, encoding="utf-8")
            n += 1
        if held and (n_val == 0 or n_val == n):
            raise InvalidInput(
                f"{VALIDATION_CLIPS}: {n_val} of the dataset's {n} captioned clips would validate; "
                "name at least one captioned clip and leave at least one to train on"
            )
        dest = train_dest
        if n == 0:
            raise InvalidInput(
                f"dataset {params.dataset_id} has no captioned clips; run captioning "
                "(`loraforge caption`) before training"
            )
        from loraforge.trainer.checkpoints import reference_candidates

        return {
            "dataset": dest,
            "dataset_id": dataset.id,
            "samples": n - n_val,
            "skipped": skipped,
            "validation_dataset": val_dest if n_val else None,
            "trigger": str(run.get("trigger") or ""),
            "lora_type": dataset.lora_type,
            "captions": [t for t in texts.values() if t and t.strip()],
            "reference_keyframes": reference_candidates(dataset.clips, 12),
        }

    def _still(self, clip: Any, stem: Path, video: Path) -> Path:
        for key in clip.keyframe_keys[:1]:
            suffix = Path(key).suffix.lower()
            if suffix in IMAGE_EXTS:
                return self._store.download(clip.bucket, key, stem.with_suffix(suffix))
        import cv2

        self._store.download(clip.bucket, clip.key, video)
        cap = cv2.VideoCapture(str(video))
        try:
            n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
            cap.set(cv2.CAP_PROP_POS_FRAMES, max(0, n // 2))
            ok, frame = cap.read()
        finally:
            cap.release()
        video.unlink(missing_ok=True)
        if not ok:
            raise InvalidInput(f"clip {clip.clip_id} ({clip.key}): no readable frame")
        out = stem.with_suffix(".png")
        out.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(out), frame)
        return out

    # ------------------------------------------------------------ config

    def _config(self, params: TrainingParams, info: dict[str, Any], workdir: Path) -> Any:
        from loraforge.trainer.config import RunConfig

        validate_extra(params.extra)
        # Unset numbers stay unset: the RunConfig's resolve() fills in the family defaults
        # (and the checkpoint / validation cadence) exactly as for loraforge-train.
        values: dict[str, Any] = {
            "preset": params.base_preset,
            "dataset": info["dataset"],
            "output_dir": workdir / "out",
            "trigger": info["trigger"],
            "dataset_id": params.dataset_id,
            "rank": params.rank,
            "alpha": params.alpha,
            "learning_rate": params.learning_rate,
            "steps": params.steps,
            "resolution": params.resolution,
            "frames": params.frames,
            "seed": params.seed,
            "cache_dir": self.cache_dir,
            "models_dir": self._models_dir,
            "device": self._device,
            "validation_dataset": info.get("validation_dataset"),
        }
        values.update({k: v for k, v in params.extra.items() if k != VALIDATION_CLIPS})
        return RunConfig.parse({k: v for k, v in values.items() if v is not None})

    # ------------------------------------------------------------ training

    async def _train(
        self,
        job: Job,
        ctx: JobContext,
        ref: ProjectRef,
        params: TrainingParams,
        config: Any,
        info: dict[str, Any],
        prefix: str,
        workdir: Path,
        eval_settings: Any,
    ) -> dict[str, Any]:
        state: dict[str, Any] = {
            "step": 0,
            "total": 1,
            "loss": None,
            "message": "loading the base model",
        }
        cancelled = threading.Event()
        logs: list[str] = []
        ckpt_root = Path(config.output_dir) / "checkpoints"
        # A redelivered job (worker crash, pod eviction) resumes from its newest upload.
        uploaded = await asyncio.to_thread(self._remote_checkpoints, prefix)
        restored = await asyncio.to_thread(self._restore_latest, prefix, uploaded, ckpt_root)
        if restored is not None:
            config = config.model_copy(update={"resume": "latest"})
            logs.append(f"resuming from the uploaded checkpoint of step {restored}")
            state["step"] = restored

        def on_progress(step: int, total: int, loss: float) -> None:
            state.update(
                step=step, total=total, loss=loss, message=f"step {step}/{total}, loss {loss:.4f}"
            )

        # previews of each evaluated step, rendered while training (the evaluation after it
        # scores these instead of rendering them again); uploaded and announced as they come
        rendered: dict[int, list[Path]] = {}
        live = LivePreviews()

        def run() -> Any:
            from loraforge.trainer.cache import ObjectStoreCacheStore
            from loraforge.trainer.train import Trainer

            cache = ObjectStoreCacheStore(self._store, f"{ref.tenant}/cache", self.cache_dir)
            trainer = Trainer(
                config,
                cache_store=cache,
                on_progress=on_progress,
                should_cancel=lambda _s: cancelled.is_set(),
                log=lambda m: logs.append(m),
            )
            if eval_settings.enabled and eval_settings.previews > 0:
                trainer.on_eval = self._preview_renderer(
                    trainer, eval_settings, info, workdir, rendered, state, logs
                )
            state["message"] = f"training {trainer.args.steps} steps"
            state["trainer"] = trainer  # tick() publishes its validation losses as they come
            result = trainer.run()
            return trainer, result

        async def tick() -> None:
            await asyncio.to_thread(self._upload_checkpoints, prefix, ckpt_root, uploaded)
            await asyncio.to_thread(live.upload, self._store, prefix, rendered)
            frac = state["step"] / max(1, state["total"])
            # the validation loss of every evaluation so far: a sweep reports each to its
            # pruner while the run goes on (cli/sweep_cmd.py)
            # (and the likeness of each step's previews, when it is measurable)
            vals = dict(getattr(state.get("trainer"), "val_losses", {}))
            likeness = dict(state.get("likeness") or {})
            await ctx.progress(
                TRAIN_START + (TRAIN_END - TRAIN_START) * frac,
                state["message"],
                step=state["step"],
                **live.announce(),
                **({"val_losses": {str(k): v for k, v in sorted(vals.items())}} if vals else {}),
                **(
                    {"likeness": {str(k): v for k, v in sorted(likeness.items())}}
                    if likeness
                    else {}
                ),
            )

        async def after_cancel() -> None:
            # The trainer checkpoints the step it stopped at: upload it, so an evicted pod or
            # a stopped worker resumes from there rather than from the last periodic upload.
            await asyncio.to_thread(self._upload_checkpoints, prefix, ckpt_root, uploaded)

        trainer, result = await self._in_thread(run, cancelled, tick, after_cancel)
        if result.status != "succeeded":
            raise Cancelled(f"training of job {job.id} stopped at step {result.step}")
        await asyncio.to_thread(self._upload_checkpoints, prefix, ckpt_root, uploaded)
        if await asyncio.to_thread(live.upload, self._store, prefix, rendered):
            await ctx.progress(
                TRAIN_END, f"trained {result.step} steps", step=result.step, **live.announce()
            )
        evaluation: Any = (
            "likeness evaluation was turned off (extra.evaluate = false): best is the final step"
        )
        if eval_settings.enabled:
            await ctx.progress(TRAIN_END, "evaluating checkpoints")
            try:
                evaluation = await self._evaluate(
                    job,
                    ctx,
                    trainer,
                    result,
                    info,
                    ckpt_root,
                    uploaded,
                    workdir,
                    eval_settings,
                    logs,
                    rendered,
                )
            except Cancelled:
                raise
            except Exception as e:  # the trained LoRA is still worth keeping
                log.exception("likeness evaluation of job %s failed", job.id)
                evaluation = (
                    f"likeness evaluation failed ({type(e).__name__}: {e}): best is the final step"
                )
        await ctx.progress(EVAL_END, "uploading the LoRA")
        return await asyncio.to_thread(
            self._commit,
            job,
            prefix,
            ckpt_root,
            uploaded,
            trainer,
            result,
            info,
            params,
            evaluation,
            live.artifacts,
        )

    def _preview_renderer(
        self,
        trainer: Any,
        settings: Any,
        info: dict[str, Any],
        workdir: Path,
        rendered: dict[int, list[Path]],
        state: dict[str, Any],
        logs: list[str],
    ) -> Callable[[int], None]:
        """The trainer's ``on_eval``: render the validation prompts with the LoRA as it is at
        that step, with the settings the evaluation after training uses, and score their
        likeness to the dataset's reference faces when there are any (``state["likeness"]``,
        published with the progress: a likeness sweep prunes on it while the run trains)."""
        from loraforge.trainer.checkpoints import (
            CheckpointEvaluator,
            LiveLikeness,
            validation_prompts,
        )

        prompts = validation_prompts(
            info["trigger"], info["captions"], settings.captions_in_prompts, settings.prompts
        )
        renderer = CheckpointEvaluator(trainer, settings, log=logs.append)

        def references() -> tuple[Any, Any]:  # the same ones the evaluation builds
            from loraforge.curation.faces import make_backend

            backend = make_backend(settings.face_backend)
            images = self._reference_images(
                info["reference_keyframes"], workdir / "eval" / "live-refs"
            )
            return renderer.references(images, backend)[0], backend

        live = LiveLikeness(references)
        state["likeness"] = live.values

        def on_eval(step: int) -> None:
            state["message"] = f"step {step}: rendering previews"
            try:
                rendered[step] = renderer.render_step(step, prompts, workdir / "eval")
                live.score(step, rendered[step])
            except Exception as e:
                log.warning("previews at step %s failed: %s", step, e)
                logs.append(f"previews at step {step} failed ({type(e).__name__}: {e})")

        return on_eval

    # ------------------------------------------------------------ evaluation

    async def _evaluate(
        self,
        job: Job,
        ctx: JobContext,
        trainer: Any,
        result: Any,
        info: dict[str, Any],
        ckpt_root: Path,
        uploaded: dict[int, dict[str, Any]],
        workdir: Path,
        settings: Any,
        logs: list[str],
        rendered: dict[int, list[Path]],
    ) -> Any:
        """Every checkpoint + the final step, in a thread; progress published meanwhile."""
        from loraforge.trainer.checkpoints import CheckpointEvaluator, validation_prompts

        state: dict[str, Any] = {"frac": 0.0, "message": "evaluating checkpoints"}
        cancelled = threading.Event()

        def progress(frac: float, message: str) -> None:
            state.update(frac=frac, message=message)

        def run() -> Any:
            states = self._checkpoint_states(
                trainer, result, ckpt_root, uploaded, workdir / "eval" / "checkpoints"
            )
            refs = self._reference_images(info["reference_keyframes"], workdir / "eval" / "refs")
            prompts = validation_prompts(
                info["trigger"], info["captions"], settings.captions_in_prompts, settings.prompts
            )
            evaluator = CheckpointEvaluator(
                trainer,
                settings,
                progress=progress,
                should_cancel=cancelled.is_set,
                log=logs.append,
                rendered=rendered,
            )
            return evaluator.run(
                states,
                result.eval_losses,
                refs,
                prompts,
                workdir / "eval",
                title=f"LoRA evaluation: job {job.id}",
                lora_type=info["lora_type"],
                val_bands=result.eval_bands,
            )

        async def tick() -> None:
            await ctx.progress(TRAIN_END + (EVAL_END - TRAIN_END) * state["frac"], state["message"])

        return await self._in_thread(run, cancelled, tick)

    async def _in_thread(
        self,
        fn: Callable[[], Any],
        cancelled: threading.Event,
        tick: Callable[[], Awaitable[None]],
        after_cancel: Callable[[], Awaitable[None]] | None = None,
    ) -> Any:
        """Run ``fn`` in a thread and ``tick`` (progress, uploads) every ``tick_s`` until it
        returns. A cancel (``Cancelled`` from the job context) sets ``cancelled``, which ``fn``
        watches, waits for it to stop, runs ``after_cancel`` and re-raises."""
        task = asyncio.ensure_future(asyncio.to_thread(fn))
        try:
            while not task.done():
                await asyncio.wait({task}, timeout=self._tick_s)
                if not task.done():
                    await tick()
        except Cancelled:
            cancelled.set()
            await asyncio.gather(task, return_exceptions=True)
            if after_cancel is not None:
                await after_cancel()
            raise
        return task.result()

    def _checkpoint_states(
        self,
        trainer: Any,
        result: Any,
        ckpt_root: Path,
        uploaded: dict[int, dict[str, Any]],
        dl: Path,
    ) -> dict[int, Any]:
        """step -> loader of its LoRA tensors: local checkpoints, pruned ones from `loras/`,
        and the final step from the trainer itself."""
        from safetensors.torch import load_file

        from loraforge.trainer.train import LORA_FILE

        paths: dict[int, Path] = {}
        for d in ckpt_root.glob("step-*") if ckpt_root.is_dir() else []:
            try:
                paths[int(d.name.removeprefix("step-"))] = d / LORA_FILE
            except ValueError:
                continue
        states: dict[int, Any] = {}
        for step in sorted(set(paths) | set(uploaded)):
            if step >= result.step:
                continue

            def load(step: int = step) -> Any:
                path = paths.get(step)
                if path is None or not path.is_file():
                    path = self._store.download(
                        Bucket.LORAS, uploaded[step]["key"], dl / f"step-{step}.safetensors"
                    )
                return load_file(str(path))

            states[step] = load
        final = trainer.lora_state()
        states[result.step] = lambda: final
        return states

    def _reference_images(self, candidates: list[Any], dest: Path) -> list[tuple[Any, Any, str]]:
        """The dataset's keyframes (most frontal first), as (BGR image, pose, key)."""
        import cv2

        out = []
        for i, c in enumerate(candidates):
            try:
                path = self._store.download(
                    Bucket(c.bucket), c.key, dest / f"{i:03d}{Path(c.key).suffix}"
                )
            except Exception as e:
                log.warning("reference keyframe %s not readable: %s", c.key, e)
                continue
            img = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if img is not None:
                out.append((img, c.pose or None, c.key))
        return out

    def _upload_checkpoints(
        self, prefix: str, root: Path, uploaded: dict[int, dict[str, Any]]
    ) -> None:
        """New local checkpoints -> `loras/<prefix>/checkpoints/step-N/`.

        The LoRA stays for every step (evaluation scores them all); the resume state
        (optimizer, scheduler, RNG: as big as the LoRA twice over) only for the newest step,
        so a redelivered job resumes from there. State files go up before the LoRA, which
        marks the step as uploaded.
        """
        from loraforge.trainer.train import LORA_FILE, STATE_FILE

        if not root.is_dir():
            return
        for d in sorted(root.glob("step-*")):
            try:
                step = int(d.name.removeprefix("step-"))
            except ValueError:
                continue
            if step in uploaded or not (d / LORA_FILE).is_file():
                continue
            base = f"{prefix}/checkpoints/step-{step}"
            try:
                for name in RESUME_FILES:
                    if (d / name).is_file():
                        self._store.put_file(Bucket.LORAS, f"{base}/{name}", d / name)
                # the step's LoRA in the family's layout (train.py: _save_checkpoint), which
                # the library promotes when a user picks this checkpoint
                for export in sorted(d.glob("*.safetensors")):
                    if export.name != LORA_FILE:
                        self._store.put_file(
                            Bucket.LORAS,
                            f"{base}/{export.name}",
                            export,
                            content_type=LORA_CONTENT_TYPE,
                        )
                stored = self._store.put_file(
                    Bucket.LORAS,
                    f"{base}/{LORA_FILE}",
                    d / LORA_FILE,
                    content_type=LORA_CONTENT_TYPE,
                )
            except FileNotFoundError:  # pruned (keep_checkpoints) while we looked
                continue
            uploaded[step] = lora_artifact(stored, "checkpoint")
            previous = max((s for s in uploaded if s < step), default=None)
            if previous is not None:  # the only older step that still has its state
                self._store.delete(
                    Bucket.LORAS, f"{prefix}/checkpoints/step-{previous}/{STATE_FILE}"
                )

    def _remote_checkpoints(self, prefix: str) -> dict[int, dict[str, Any]]:
        """Checkpoints a previous delivery of this job uploaded (step -> artifact)."""
        from loraforge.trainer.train import LORA_FILE

        found: dict[int, dict[str, Any]] = {}
        for obj in self._store.list(Bucket.LORAS, f"{prefix}/checkpoints/"):
            parts = obj.key.removeprefix(f"{prefix}/checkpoints/").split("/")
            if len(parts) == 2 and parts[1] == LORA_FILE and parts[0].startswith("step-"):
                try:
                    step = int(parts[0].removeprefix("step-"))
                except ValueError:
                    continue
                found[step] = lora_artifact(obj, "checkpoint")
        return found

    def _restore_latest(
        self, prefix: str, uploaded: dict[int, dict[str, Any]], ckpt_root: Path
    ) -> int | None:
        """Download the newest uploaded checkpoint that has its resume state; its step."""
        from loraforge.trainer.train import LORA_FILE, STATE_FILE

        for step in sorted(uploaded, reverse=True):
            base = f"{prefix}/checkpoints/step-{step}"
            if self._store.stat(Bucket.LORAS, f"{base}/{STATE_FILE}") is None:
                continue
            dest = ckpt_root / f"step-{step:08d}"
            for name in (*RESUME_FILES, LORA_FILE):
                if self._store.stat(Bucket.LORAS, f"{base}/{name}") is not None:
                    self._store.download(Bucket.LORAS, f"{base}/{name}", dest / name)
            return step
        return None

    def _commit(
        self,
        job: Job,
        prefix: str,
        ckpt_root: Path,
        uploaded: dict[int, dict[str, Any]],
        trainer: Any,
        result: Any,
        info: dict[str, Any],
        params: TrainingParams,
        evaluation: Any = None,
        live_previews: dict[str, dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        self._upload_checkpoints(prefix, ckpt_root, uploaded)
        artifacts = [uploaded[s] for s in sorted(uploaded)]
        names = list(result.files)  # denoiser attributes, first = the main file
        files: dict[str, dict[str, str]] = {}
        evaluated = not isinstance(evaluation, str)
        best_files = evaluation.best_files if evaluated else result.files
        for i, attr in enumerate(names):
            suffix = "" if i == 0 else "." + _expert_tag(Path(result.files[attr]), attr)
            for which, path in (
                ("last", Path(result.files[attr])),
                ("best", Path(best_files[attr])),
            ):
                stored = self._store.put_file(
                    Bucket.LORAS,
                    f"{prefix}/{which}{suffix}.safetensors",
                    path,
                    content_type=LORA_CONTENT_TYPE,
                )
                files.setdefault(which, {})[attr] = stored.key
                artifacts.append(lora_artifact(stored, "lora"))
        main = names[0]
        a = trainer.args
        ev: dict[str, Any] = {
            "best_step": result.step,
            "best_reason": evaluation,
            "report_key": None,
            "evaluation": None,
        }
        if not evaluated:  # no renders: the LoRA type's documented default weight
            from loraforge.trainer.checkpoints import default_strength

            ev["recommended_weight"], ev["strength_reason"] = default_strength(
                info["lora_type"], "likeness was not evaluated (see best_reason)"
            )
        if evaluated:
            ev = self._upload_evaluation(prefix, evaluation, artifacts, live_previews or {})
        record = {
            "job_id": job.id,
            "run_prefix": prefix,
            "last_key": files["last"][main],
            "best_key": files["best"][main],
            "files": files,
            "best_is": f"step {ev['best_step']}",
            **ev,
            "base_preset": params.base_preset,
            "family": trainer.preset.family,
            "dataset_id": info["dataset_id"],
            "dataset_hash": trainer.dataset.content_hash,
            "samples": len(trainer.dataset.samples),
            "skipped_clips": info["skipped"],
            "trigger": info["trigger"],
            "lora_type": info["lora_type"],
            "rank": a.rank,
            "alpha": a.alpha,
            "steps": result.step,
            # epochs as asked and what they became (steps = epochs x steps_per_epoch)
            "epochs": a.epochs,
            "steps_per_epoch": a.steps_per_epoch,
            "validation": trainer.validation_summary(),
            "metrics": {
                "final_loss": result.losses[-1] if result.losses else None,
                "mean_loss_last_10": (
                    sum(result.losses[-10:]) / len(result.losses[-10:]) if result.losses else None
                ),
                "eval_losses": {str(k): v for k, v in result.eval_losses.items()},
                "eval_bands": {str(k): v for k, v in result.eval_bands.items()},
                "seconds": round(result.seconds, 3),
            },
            "loss_history": result.losses,  # this delivery's steps (after resumed_from_step)
            "resumed_from_step": result.step - len(result.losses),
            "cache": {
                k: getattr(trainer.cache, k, None)
                for k in ("hits", "local_hits", "misses", "uploads")
            },
            "checkpoints": {str(s): uploaded[s]["key"] for s in sorted(uploaded)},
            "training_args": json.loads(json.dumps(a.training_args(), default=str)),
            "warnings": list(a.warnings) + list(getattr(trainer.dataset, "skipped", []) or []),
            "finished_at": time.time(),
            "artifacts": artifacts,
        }
        record["loss_curve_key"] = self._upload_loss_curve(prefix, result, artifacts)
        self._store.put_json(Bucket.LORAS, f"{prefix}/{RECORD}", record)
        return record

    def _upload_loss_curve(self, prefix: str, result: Any, artifacts: list[dict[str, Any]]) -> str:
        from loraforge.evaluation.report import write_loss_curve

        with tempfile.TemporaryDirectory() as tmp:
            path = write_loss_curve(
                Path(tmp) / "loss.png",
                result.losses,
                first_step=result.step - len(result.losses) + 1,
                eval_losses=result.eval_losses,
            )
            stored = self._store.put_file(
                Bucket.LORAS, f"{prefix}/report/loss.png", path, content_type="image/png"
            )
        artifacts.append(lora_artifact(stored, "report"))
        return stored.key

    def _upload_evaluation(
        self,
        prefix: str,
        evaluation: Any,
        artifacts: list[dict[str, Any]],
        live_previews: dict[str, dict[str, Any]],
    ) -> dict[str, Any]:
        previews: dict[str, list[str]] = {}
        for step, paths in sorted(evaluation.previews.items()):
            for p in paths:
                key = preview_key(prefix, step, p)
                artifact = live_previews.get(key)  # uploaded while training
                if artifact is None:
                    stored = self._store.put_file(
                        Bucket.LORAS, key, p, content_type=preview_content_type(p)
                    )
                    artifact = lora_artifact(stored, "preview")
                previews.setdefault(str(step), []).append(artifact["key"])
                artifacts.append(artifact)
        types = {
            ".html": "text/html",
            ".md": "text/markdown",
            ".csv": "text/csv",
            ".png": "image/png",
            ".txt": "text/plain",
        }
        report_key = None
        for p in sorted(evaluation.report_dir.iterdir()):
            if not p.is_file():
                continue
            stored = self._store.put_file(
                Bucket.LORAS,
                f"{prefix}/report/{p.name}",
                p,
                content_type=types.get(p.suffix, "application/octet-stream"),
            )
            if p.name == "report.html":
                report_key = stored.key
                artifacts.append(lora_artifact(stored, "report"))
        summary = evaluation.summary()
        summary["previews"] = previews
        return {
            "best_step": evaluation.best_step,
            "best_reason": evaluation.reason,
            "report_key": report_key,
            "evaluation": summary,
            "recommended_weight": evaluation.recommended_weight,
            "strength_reason": evaluation.strength_reason,
        }

    @staticmethod
    def _outcome(job: Job, record: dict[str, Any]) -> JobOutcome:
        data = {
            "job_id": job.id,
            "run_prefix": record["run_prefix"],
            "last_key": record["last_key"],
            "best_key": record["best_key"],
            "base_preset": record["base_preset"],
            "dataset_id": record["dataset_id"],
            "trigger": record["trigger"],
            "steps": record["steps"],
            "final_loss": record["metrics"]["final_loss"],
            "best_step": record.get("best_step"),
            "best_reason": record.get("best_reason"),
            "report_key": record.get("report_key"),
            "recommended_weight": record.get("recommended_weight"),
            "strength_reason": record.get("strength_reason"),
            # what a sweep scores (evaluation/sweep.py: OBJECTIVES)
            "val_losses": record["metrics"].get("eval_losses") or {},
            "likeness": _likeness_by_step(record),
        }
        artifacts = [ArtifactRef(**a) for a in record["artifacts"]]
        artifacts.append(
            ArtifactRef(bucket="loras", key=f"{record['run_prefix']}/{RECORD}", kind="manifest")
        )
        loss = record["metrics"]["final_loss"]
        return JobOutcome(
            message=f"{record['steps']} steps on {record['samples']} sample(s)"
            + (f", final loss {loss:.4f}" if loss is not None else ""),
            artifacts=artifacts,
            result=data,
            events=[
                Event(
                    id=f"training-completed-{job.id}",
                    type=COMPLETED_EVENT,
                    tenant=job.tenant,
                    project=job.project,
                    data=data,
                )
            ],
        )


def _likeness_by_step(record: dict[str, Any]) -> dict[str, float]:
    """Each evaluated step's likeness when the evaluation measured it (a face in the
    previews and in the references), else empty."""
    ev = record.get("evaluation") or {}
    if ev.get("basis") != "likeness":
        return {}
    return {
        str(r["step"]): float(r["likeness"])
        for r in ev.get("checkpoints") or []
        if r.get("likeness") is not None
    }


def _expert_tag(path: Path, attr: str) -> str:
    """`lora.low_noise.safetensors` -> `low_noise`; else the denoiser attribute."""
    parts = path.name.split(".")
    return parts[-2] if len(parts) >= 3 else attr
