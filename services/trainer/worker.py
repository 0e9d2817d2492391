"""The trainer service's work: one training job = one LoRA trained on a captioned dataset and
stored in `loras/`.

    params (TrainingParams)
      -> the captioned dataset (clips from `clips/`, current caption texts from the review
         store) downloaded into a local folder in the trainer core's seed layout
         (videos/<clip_id>.mp4 + captions/<clip_id>.txt; images/<clip_id>.<ext> + .txt)
      -> a RunConfig -> Trainer.run() in a thread (progress -> JobContext.progress; a cancel
         stops after the current optimizer step)
      -> loras  <t>/<p>/runs/<job_id>/last.safetensors          the final LoRA
                                      best.safetensors          = last until likeness
                                                                  evaluation is wired
                                      checkpoints/step-N/adapter.safetensors
                                      run.json                  commit marker, written last

Wan 2.2 A14B writes one file per expert: `last.safetensors` is the high-noise expert and
`last.low_noise.safetensors` the low-noise one (likewise for best); `files` in run.json
names all of them.

`run.json` existing means the job is done: a redelivered or retried job answers with it and
trains nothing again. Latents and text embeddings are cached under
`<workdir_root>/cache` (a local directory; the object-store cache is not wired yet).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from loraforge.runtime.errors import Cancelled, InvalidInput
from loraforge.runtime.events import Event
from loraforge.runtime.job_service import JobContext, JobOutcome
from loraforge.runtime.jobs import ArtifactRef, Job
from loraforge.runtime.keys import ProjectRef, validate_key_part
from loraforge.runtime.params import TrainingParams
from loraforge.runtime.storage import Bucket, ObjectStore

COMPLETED_EVENT = "training.completed"
RECORD = "run.json"
LORA_CONTENT_TYPE = "application/octet-stream"
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
# RunConfig fields the service owns: `extra` may not point them elsewhere.
RESERVED_EXTRA = frozenset({"preset", "dataset", "output_dir", "cache_dir", "models_dir", "name",
                            "dataset_id", "resume"})
# Download 0-5 %, training 5-90 %, upload 90-100 %.
TRAIN_START, TRAIN_END = 0.05, 0.90


def run_prefix(ref: ProjectRef, job_id: str) -> str:
    return ref.key("runs", job_id)


def refuse_kubernetes(params: TrainingParams) -> None:
    if params.on_kubernetes:
        raise InvalidInput(
            "on_kubernetes training is not wired into the trainer service yet (it needs a "
            "cluster and the object-store run-config source); start the run without "
            "on_kubernetes to train on this service's own device, or run "
            "`loraforge-train --run-config FILE` in a Job yourself"
        )


def checkpoint_interval(steps: int) -> int:
    """About four checkpoints per run, at most every 250 steps, at least every step."""
    return max(1, min(250, steps // 4))


class TrainingWork:
    """`work(job, ctx)` for `JobWorker("trainer", ...)`."""

    def __init__(self, store: ObjectStore, *, models_dir: Path | None = None,
                 workdir_root: Path | None = None, device: str = "auto", tick_s: float = 0.5):
        self._store = store
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
        refuse_kubernetes(params)
        from loraforge.trainer.presets import get_preset

        get_preset(params.base_preset)  # InvalidInput for an unknown preset (job FAILED)
        prefix = run_prefix(ref, job.id)
        if await asyncio.to_thread(self._store.stat, Bucket.LORAS, f"{prefix}/{RECORD}") is not None:
            record = await asyncio.to_thread(self._store.get_json, Bucket.LORAS, f"{prefix}/{RECORD}")
            return self._outcome(job, record)

        workdir = self._root / "runs" / job.id
        shutil.rmtree(workdir, ignore_errors=True)
        workdir.mkdir(parents=True)
        try:
            await ctx.progress(0.0, "downloading the captioned dataset")
            info = await asyncio.to_thread(self._download, ref, params, workdir / "dataset")
            await ctx.progress(TRAIN_START, f"{info['samples']} captioned clip(s) downloaded")
            config = self._config(params, info, workdir)
            record = await self._train(job, ctx, ref, params, config, info, prefix, workdir)
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
        skipped, n = [], 0
        for clip in dataset.clips:
            text = (texts.get(clip.clip_id) or "").strip()
            if not text:
                skipped.append(clip.clip_id)
                continue
            name = validate_key_part(clip.clip_id)
            suffix = Path(clip.key).suffix.lower() or ".mp4"
            if suffix in IMAGE_EXTS:
                media, caption = dest / "images" / f"{name}{suffix}", dest / "images" / f"{name}.txt"
                self._store.download(Bucket.CLIPS, clip.key, media)
            elif video_model:
                media, caption = dest / "videos" / f"{name}{suffix}", dest / "captions" / f"{name}.txt"
                self._store.download(Bucket.CLIPS, clip.key, media)
            else:  # an image model learns from a still: the clip's keyframe, else its middle frame
                caption = dest / "images" / f"{name}.txt"
                self._still(clip, dest / "images" / name, dest.parent / "_stills" / f"{name}{suffix}")
            caption.parent.mkdir(parents=True, exist_ok=True)
            caption.write_text(text, encoding="utf-8")
            n += 1
        if n == 0:
            raise InvalidInput(
                f"dataset {params.dataset_id} has no captioned clips; run captioning "
                "(`loraforge caption`) before training")
        return {"dataset": dest, "dataset_id": dataset.id, "samples": n, "skipped": skipped,
                "trigger": str(run.get("trigger") or ""), "lora_type": dataset.lora_type}

    def _still(self, clip: Any, stem: Path, video: Path) -> Path:
        for key in clip.keyframe_keys[:1]:
            suffix = Path(key).suffix.lower()
            if suffix in IMAGE_EXTS:
                return self._store.download(Bucket.CLIPS, key, stem.with_suffix(suffix))
        import cv2

        self._store.download(Bucket.CLIPS, clip.key, video)
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

        bad = sorted(RESERVED_EXTRA & set(params.extra))
        if bad:
            raise InvalidInput(f"extra may not set {', '.join(bad)}: the trainer service sets them")
        values: dict[str, Any] = {
            "preset": params.base_preset, "dataset": info["dataset"],
            "output_dir": workdir / "out", "trigger": info["trigger"],
            "dataset_id": params.dataset_id, "rank": params.rank, "alpha": params.alpha,
            "learning_rate": params.learning_rate, "steps": params.steps,
            "resolution": params.resolution, "frames": params.frames, "seed": params.seed,
            "checkpoint_every": checkpoint_interval(params.steps),
            "cache_dir": self.cache_dir, "models_dir": self._models_dir, "device": self._device,
        }
        values.update(params.extra)
        return RunConfig.parse({k: v for k, v in values.items() if v is not None})

    # ------------------------------------------------------------ training

    async def _train(self, job: Job, ctx: JobContext, ref: ProjectRef, params: TrainingParams,
                     config: Any, info: dict[str, Any], prefix: str, workdir: Path) -> dict[str, Any]:
        state: dict[str, Any] = {"step": 0, "total": 1, "loss": None, "message": "loading the base model"}
        cancelled = threading.Event()
        logs: list[str] = []
        uploaded: dict[int, dict[str, Any]] = {}
        ckpt_root = Path(config.output_dir) / "checkpoints"

        def on_progress(step: int, total: int, loss: float) -> None:
            state.update(step=step, total=total, loss=loss,
                         message=f"step {step}/{total}, loss {loss:.4f}")

        def run() -> Any:
            from loraforge.trainer.train import Trainer

            trainer = Trainer(config, on_progress=on_progress,
                              should_cancel=lambda _s: cancelled.is_set(),
                              log=lambda m: logs.append(m))
            state["message"] = f"training {trainer.args.steps} steps"
            result = trainer.run()
            return trainer, result

        task = asyncio.ensure_future(asyncio.to_thread(run))
        try:
            while not task.done():
                await asyncio.wait({task}, timeout=self._tick_s)
                if not task.done():
                    frac = state["step"] / max(1, state["total"])
                    await ctx.progress(TRAIN_START + (TRAIN_END - TRAIN_START) * frac,
                                       state["message"], step=state["step"])
                    await asyncio.to_thread(self._upload_checkpoints, prefix, ckpt_root, uploaded)
        except Cancelled:
            cancelled.set()
            await asyncio.gather(task, return_exceptions=True)
            raise
        trainer, result = task.result()
        if result.status != "succeeded":
            raise Cancelled(f"training of job {job.id} stopped at step {result.step}")
        await ctx.progress(TRAIN_END, "uploading the LoRA")
        return await asyncio.to_thread(self._commit, job, prefix, ckpt_root, uploaded, trainer,
                                       result, info, params)

    def _upload_checkpoints(self, prefix: str, root: Path, uploaded: dict[int, dict[str, Any]]) -> None:
        from loraforge.trainer.train import LORA_FILE

        if not root.is_dir():
            return
        for d in sorted(root.glob("step-*")):
            try:
                step = int(d.name.removeprefix("step-"))
            except ValueError:
                continue
            if step in uploaded or not (d / LORA_FILE).is_file():
                continue
            try:
                stored = self._store.put_file(Bucket.LORAS, f"{prefix}/checkpoints/step-{step}/{LORA_FILE}",
                                              d / LORA_FILE, content_type=LORA_CONTENT_TYPE)
            except FileNotFoundError:  # pruned (keep_checkpoints) while we looked
                continue
            uploaded[step] = {"bucket": "loras", "key": stored.key, "kind": "checkpoint",
                              "size": stored.size, "sha256": stored.sha256 or ""}

    def _commit(self, job: Job, prefix: str, ckpt_root: Path, uploaded: dict[int, dict[str, Any]],
                trainer: Any, result: Any, info: dict[str, Any], params: TrainingParams) -> dict[str, Any]:
        self._upload_checkpoints(prefix, ckpt_root, uploaded)
        artifacts = [uploaded[s] for s in sorted(uploaded)]
        names = list(result.files)  # denoiser attributes, first = the main file
        files: dict[str, dict[str, str]] = {}
        for i, attr in enumerate(names):
            path = Path(result.files[attr])
            suffix = "" if i == 0 else "." + _expert_tag(path, attr)
            for which in ("last", "best"):
                stored = self._store.put_file(Bucket.LORAS, f"{prefix}/{which}{suffix}.safetensors",
                                              path, content_type=LORA_CONTENT_TYPE)
                files.setdefault(which, {})[attr] = stored.key
                artifacts.append({"bucket": "loras", "key": stored.key, "kind": "lora",
                                  "size": stored.size, "sha256": stored.sha256 or ""})
        main = names[0]
        a = trainer.args
        record = {
            "job_id": job.id, "run_prefix": prefix,
            "last_key": files["last"][main], "best_key": files["best"][main],
            "files": files, "best_is": "last (likeness evaluation not wired yet)",
            "base_preset": params.base_preset, "family": trainer.preset.family,
            "dataset_id": info["dataset_id"], "dataset_hash": trainer.dataset.content_hash,
            "samples": len(trainer.dataset.samples), "skipped_clips": info["skipped"],
            "trigger": info["trigger"], "lora_type": info["lora_type"],
            "rank": a.rank, "alpha": a.alpha, "steps": result.step,
            "metrics": {
                "final_loss": result.losses[-1] if result.losses else None,
                "mean_loss_last_10": (sum(result.losses[-10:]) / len(result.losses[-10:])
                                      if result.losses else None),
                "eval_losses": {str(k): v for k, v in result.eval_losses.items()},
                "seconds": round(result.seconds, 3),
            },
            "loss_history": result.losses,
            "checkpoints": {str(s): uploaded[s]["key"] for s in sorted(uploaded)},
            "training_args": json.loads(json.dumps(a.training_args(), default=str)),
            "warnings": list(a.warnings) + list(getattr(trainer.dataset, "skipped", []) or []),
            "finished_at": time.time(),
            "artifacts": artifacts,
        }
        self._store.put_json(Bucket.LORAS, f"{prefix}/{RECORD}", record)
        return record

    @staticmethod
    def _outcome(job: Job, record: dict[str, Any]) -> JobOutcome:
        data = {"job_id": job.id, "run_prefix": record["run_prefix"], "last_key": record["last_key"],
                "best_key": record["best_key"], "base_preset": record["base_preset"],
                "dataset_id": record["dataset_id"], "trigger": record["trigger"],
                "steps": record["steps"], "final_loss": record["metrics"]["final_loss"]}
        artifacts = [ArtifactRef(**a) for a in record["artifacts"]]
        artifacts.append(ArtifactRef(bucket="loras", key=f"{record['run_prefix']}/{RECORD}",
                                     kind="manifest"))
        loss = record["metrics"]["final_loss"]
        return JobOutcome(
            message=f"{record['steps']} steps on {record['samples']} sample(s)"
                    + (f", final loss {loss:.4f}" if loss is not None else ""),
            artifacts=artifacts, result=data,
            events=[Event(id=f"training-completed-{job.id}", type=COMPLETED_EVENT,
                          tenant=job.tenant, project=job.project, data=data)],
        )


def _expert_tag(path: Path, attr: str) -> str:
    """`lora.low_noise.safetensors` -> `low_noise`; else the denoiser attribute."""
    parts = path.name.split(".")
    return parts[-2] if len(parts) >= 3 else attr
