"""Warm render workers: a deployment's pipeline (base model + LoRA at its strength) loaded and
placed once, then serving the deployment's calls from memory (loraforge.library.deployments).

    render.deploy.warm            one event per capacity slot; work queue `render-deploy`: a
                                  worker with a free slot (LORAFORGE_RENDER__WARM_SLOTS) loads
                                  the deployment, then consumes its calls
    render.call.<t>.<p>.<name>    the deployment's calls (render jobs), work queue of its warm
                                  workers only (durable `render-call-<t>-<p>-<name>`)

A warm worker beats `deployments/<name>/warm/<worker>.json` every BEAT_S (the gateway reads
RUNNING and the capacity from the fresh beats) and re-reads the record at each beat: a
stopped or deleted deployment is let go (consumer stopped, pipeline freed, beat removed).
A call that reaches a worker without the deployment warm (a batch request on
`render.requests`, or a redelivery after every warm worker died) loads it cold and renders
the same way (`DeploymentCallWork` with `cold_renderer`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from PIL import Image, ImageOps

from loraforge.captioning.sources import AttributeSource, ClipInput
from loraforge.captioning.worker import sources_factory
from loraforge.library.deployments import (
    BEAT_S,
    Deployment,
    Deployments,
    DeploymentStatus,
    WarmBeat,
    fill_prompt,
)
from loraforge.render.executor import (
    LatestProgress,
    Placement,
    ScenarioRenderer,
    empty_cache,
    fit_image,
    pin_frames,
    to_pil,
    write_video,
)
from loraforge.render.inputs import check_input_images, fetch_input_images
from loraforge.render.records import (
    COMPLETED_EVENT,
    Artifact,
    CallInfo,
    CallRecord,
    record_key,
    render_prefix,
)
from loraforge.render.scenario import (
    IMAGE_PRESETS,
    Output,
    Scenario,
    ScenarioLora,
    Shot,
    Stage,
    Transition,
)
from loraforge.runtime.errors import Cancelled, InvalidInput, LoraforgeError, NotFound, Unavailable
from loraforge.runtime.events import Consumer, Delivery, Event, EventBus
from loraforge.runtime.job_service import JobContext, JobOutcome, JobWorker
from loraforge.runtime.jobs import ArtifactRef, Job, JobState, JobStore, new_job_id
from loraforge.runtime.keys import ProjectRef
from loraforge.runtime.params import DeploymentCallParams, LoraType
from loraforge.runtime.settings import CaptioningSettings
from loraforge.runtime.storage import Bucket, ObjectStore

log = logging.getLogger(__name__)

WARM_EVENT = "render.deploy.warm"


# ------------------------------------------------------------------ rendering one call


@dataclass
class PreparedCall:
    prompt: str
    seed: int
    first: Image.Image | None = None  # at the output size
    last: Image.Image | None = None


class DeploymentRenderer:
    """One deployment's pipeline: `load()` once (slow), then `render()` per call."""

    def __init__(
        self,
        record: Deployment,
        lora_path: Path,
        *,
        models_dir: Path | None = None,
        placement: Placement = Placement(),
        free_bytes: int | None = None,
        steps: int | None = None,
    ):
        self.record = record
        d = record.spec.defaults
        out, tr = Output(), Transition()
        self.width, self.height = d.width or out.width, d.height or out.height
        self.frames, self.fps = d.frames or tr.frames, d.fps or tr.fps
        self.video = record.family == "wan"
        self.stage = Stage.VIDEO if self.video else Stage.IMAGE
        try:
            lora_type = LoraType(record.lora_type)
        except ValueError:
            lora_type = LoraType.EFFECT
        # The scenario only carries what loading needs (preset, LoRA, size, memory savers);
        # calls are rendered here, not by ScenarioRenderer.render (a T2V call needs no
        # keyframe model, an image call no video model).
        self.scenario = Scenario(
            name="deployment",
            image_preset=record.preset if not self.video else IMAGE_PRESETS[0],
            video_preset=record.preset if self.video else "wan2.1-t2v-1.3b",
            shots=[Shot(prompt="load")],
            loras=[
                ScenarioLora(
                    name="deployment",
                    path=record.lora_key,
                    type=lora_type,
                    stage=self.stage,
                    weight=record.strength,
                    trigger=record.trigger,
                )
            ],
            output=Output(width=self.width, height=self.height),
            transition=Transition(frames=self.frames, fps=self.fps),
            steps=steps or d.steps or Scenario.model_fields["steps"].default,
            cfg=d.cfg,
        )
        self._renderer = ScenarioRenderer(
            lambda lora: lora_path,
            models_dir=models_dir,
            placement=placement,
            free_bytes=free_bytes,
        )
        self._pipe: Any = None  # the diffusers pipeline (untyped), once loaded
        self._family: ModuleType | None = None
        self._variant = ""
        self.load_s = 0.0
        self.placement: dict[str, Any] = {}

    def load(self) -> None:
        started = time.monotonic()
        preset = self.record.preset
        self._pipe, self._family, self._variant = self._renderer.load_stage(
            preset, self.stage, self.scenario, frames=self.frames if self.video else 1
        )
        self.load_s = time.monotonic() - started
        self.placement = dict(self._renderer.placement[self.stage.value])

    def release(self) -> None:
        self._pipe = None
        self._renderer.pipelines.clear()
        empty_cache()

    def fit(self, path: Path) -> Image.Image:
        with Image.open(path) as img:
            return fit_image(ImageOps.exif_transpose(img), self.width, self.height)

    def render(
        self,
        call: PreparedCall,
        out_dir: Path,
        *,
        progress: Callable[[float, str], None],
        cancelled: Callable[[], bool],
    ) -> Path:
        family = self._family
        if self._pipe is None or family is None:
            raise Unavailable("the deployment's pipeline is not loaded")
        steps, d = self.scenario.steps, self.record.spec.defaults
        guidance = family.RENDER_GUIDANCE if d.cfg is None else d.cfg

        def on_step(step: int) -> None:
            if cancelled():
                raise Cancelled("render cancelled")
            progress((step + 1) / steps, f"step {step + 1}/{steps}")

        out_dir.mkdir(parents=True, exist_ok=True)
        if not self.video:
            out = family.generate(
                self._pipe,
                call.prompt,
                call.seed,
                self.width,
                self.height,
                steps=steps,
                variant=self._variant,
                guidance=guidance,
                negative_prompt=d.negative_prompt,
                on_step=on_step,
            )
            path = out_dir / "image.png"
            to_pil(out[0]).save(path)
            return path
        pinned = self._variant in ("i2v", "flf2v")
        frames = family.generate(
            self._pipe,
            call.prompt,
            call.seed,
            self.width,
            self.height,
            self.frames,
            steps=steps,
            variant=self._variant,
            image=call.first,
            last_image=call.last,
            guidance=guidance,
            negative_prompt=d.negative_prompt,
            on_step=on_step,
            pin_first_frame=pinned,
        )
        video = frames[0]
        if pinned:
            # as in a scenario's transitions: the model is conditioned on the input frames and
            # reproduces them through the VAE with a small colour shift; the caller gave these
            # exact pictures as first (and last) frame, so the video starts (and ends) on them
            video = pin_frames(video, call.first, call.last if self._variant == "flf2v" else None)
        return write_video(video, out_dir / "video.mp4", self.fps)


def describe_image(
    path: Path, source: str, captioning: CaptioningSettings | None
) -> tuple[str, str, str]:
    """A description of an input image for a prompt template's {description}: (text, the
    source that wrote it, a warning). The caption source's free text (local VLM or
    OpenAI-compatible endpoint) when it answers; else a phrase from the measured attributes
    (offline; a still has no face or motion metrics, so mostly colours), with the reason the
    model was not used: a call never fails because a captioning model is down or missing."""
    warning = ""
    try:
        sources = sources_factory(captioning or CaptioningSettings())(source)
    except InvalidInput as exc:  # the model is not provisioned on this worker
        sources, warning = [AttributeSource()], f"caption source {source}: {exc}; used attributes"
    clip = ClipInput(clip_id="input", keyframes=[path])
    slots: dict[str, str] = {}
    for s in reversed(sources):  # a model's text first; attributes are the fallback
        try:
            draft = s.describe(clip)
        except Exception as exc:
            log.warning("caption source %s failed on the input image: %s", s.name, exc)
            warning = f"caption source {s.name} failed ({exc}); used attributes"
            continue
        if draft.text.strip():
            return draft.text.strip().rstrip("."), s.name, warning
        slots.update(draft.slots)
    parts = ["a scene"]
    if slots.get("colors"):
        parts.append(f"in {slots['colors']} tones")
    if slots.get("lighting"):
        parts.append(f"with {slots['lighting']}")
    return " ".join(parts), "attributes", warning


# ------------------------------------------------------------------ the call as a job

RendererFor = Callable[[Deployment, Path], Awaitable["DeploymentRenderer"]]


class DeploymentCallWork:
    """`work(job, ctx)` of a deployment call: inputs checked, prompt filled, rendered on the
    deployment's renderer (`renderer_for`: the warm one, or one loaded cold), stored."""

    def __init__(
        self,
        store: ObjectStore,
        renderer_for: RendererFor,
        *,
        captioning: CaptioningSettings | None = None,
        tick_s: float = 0.5,
        warm: bool = False,
    ):
        self._store = store
        self._renderer_for = renderer_for
        self._captioning = captioning
        self._tick_s = tick_s
        self._warm = warm

    async def __call__(self, job: Job, ctx: JobContext) -> JobOutcome:
        ref = ProjectRef(job.tenant, job.project)
        params = DeploymentCallParams.model_validate(job.params)
        prefix, key = render_prefix(ref, job.id), record_key(ref, job.id)
        if await asyncio.to_thread(self._store.stat, Bucket.RENDERS, key) is not None:
            record: CallRecord = await asyncio.to_thread(self._store.get_json, Bucket.RENDERS, key)
            return outcome(job, record)
        deployment = await asyncio.to_thread(Deployments(self._store).get, ref, params.deployment)
        if deployment.state is DeploymentStatus.STOPPED:
            raise InvalidInput(f"deployment {deployment.name!r} is stopped")
        check_call_inputs(deployment, params)
        progress = LatestProgress()
        cancelled = threading.Event()
        with tempfile.TemporaryDirectory(prefix=f"call-{job.id}-") as tmp:
            keys = [params.image, params.last_image]
            images = await asyncio.to_thread(
                fetch_input_images, self._store, ref, keys, Path(tmp) / "in"
            )
            started = time.monotonic()
            renderer = await self._renderer_for(deployment, Path(tmp))
            load_s = time.monotonic() - started
            d = deployment.spec.defaults
            first = renderer.fit(images[params.image]) if params.image else None
            last = renderer.fit(images[params.last_image]) if params.last_image else None
            description, described_by, caption_warning = "", "", ""
            settings = deployment.spec.prompt
            by_input = settings.use_input_prompt and params.prompt.strip()
            if settings.needs_description and not by_input and first is not None:
                await ctx.progress(0.02, f"describing the input image ({settings.caption_source})")
                description, described_by, caption_warning = await asyncio.to_thread(
                    describe_image, images[params.image], settings.caption_source, self._captioning
                )
            prompt, prompt_from = fill_prompt(
                settings,
                trigger=deployment.trigger,
                call_prompt=params.prompt,
                description=description,
            )
            if not prompt:
                raise InvalidInput(
                    f"deployment {deployment.name!r}: the prompt came out empty "
                    "(no input image to describe and no prompt given): pass a prompt"
                )
            call = PreparedCall(
                prompt=prompt,
                seed=d.seed if params.seed is None else params.seed,
                first=first,
                last=last,
            )

            def run() -> Path:
                return renderer.render(
                    call,
                    Path(tmp) / "out",
                    cancelled=cancelled.is_set,
                    progress=progress.update,
                )

            started = time.monotonic()
            task = asyncio.ensure_future(asyncio.to_thread(run))
            try:
                while not task.done():
                    await asyncio.wait({task}, timeout=self._tick_s)
                    if not task.done():
                        await ctx.progress(0.05 + 0.85 * progress.fraction, progress.message)
            except Cancelled:
                cancelled.set()
                await asyncio.gather(task, return_exceptions=True)
                raise
            path = task.result()
            render_s = time.monotonic() - started
            warnings = [caption_warning] if caption_warning else []
            if deployment.trigger and deployment.trigger not in prompt:
                warnings.append(
                    f"the prompt does not contain the trigger {deployment.trigger!r}; "
                    "the LoRA will barely show"
                )
            info: CallInfo = {
                "deployment": deployment.name,
                "lora": deployment.lora_ref,
                "lora_key": deployment.lora_key,
                "preset": deployment.preset,
                "mode": deployment.mode,
                "strength": deployment.strength,
                "prompt": prompt,
                "prompt_from": prompt_from,
                "description": description,
                "described_by": described_by,
                "seed": call.seed,
                "inputs": {"image": params.image, "last_image": params.last_image},
                "width": renderer.width,
                "height": renderer.height,
                "frames": renderer.frames if renderer.video else 1,
                "fps": renderer.fps,
                "steps": renderer.scenario.steps,
                "warm": self._warm,
                "load_s": round(load_s, 3),
                "render_s": round(render_s, 3),
                "placement": renderer.placement,
                "warnings": warnings,
            }
            record = await asyncio.to_thread(self._upload, prefix, key, path, info)
        return outcome(job, record)

    def _upload(self, prefix: str, key: str, path: Path, info: CallInfo) -> CallRecord:
        kind, content_type = (
            ("video", "video/mp4") if path.suffix == ".mp4" else ("image", "image/png")
        )
        stored = self._store.put_file(
            Bucket.RENDERS, f"{prefix}/{path.name}", path, content_type=content_type
        )
        artifact: Artifact = {
            "bucket": "renders",
            "key": stored.key,
            "kind": kind,
            "size": stored.size,
            "sha256": stored.sha256 or "",
        }
        record: CallRecord = {**info, "output": stored.key, "kind": kind, "artifacts": [artifact]}
        self._store.put_json(Bucket.RENDERS, key, record)
        return record


def check_call_inputs(deployment: Deployment, params: DeploymentCallParams) -> None:
    """The images a deployment's mode needs, and no others: a refusal says which to pass."""
    mode, name = deployment.mode, deployment.name
    if params.deployment != name:
        raise InvalidInput(f"this call is for {params.deployment!r}, not {name!r}")
    if mode == "flf2v" and not (params.image and params.last_image):
        raise InvalidInput(
            f"deployment {name!r} renders from a first and a last frame "
            f"({deployment.preset}): pass both image and last_image"
        )
    if mode == "i2v" and not params.image:
        raise InvalidInput(
            f"deployment {name!r} renders from a first frame ({deployment.preset}): pass image"
        )
    if mode == "i2v" and params.last_image:
        raise InvalidInput(
            f"deployment {name!r} ({deployment.preset}) takes a first frame only; "
            "deploy on an flf2v preset for first + last frame"
        )
    if mode in ("t2v", "image") and (params.image or params.last_image):
        raise InvalidInput(
            f"deployment {name!r} ({deployment.preset}) is text-to-"
            f"{'video' if mode == 't2v' else 'image'}: it takes no input image"
        )


def outcome(job: Job, record: CallRecord) -> JobOutcome:
    data = {
        "job_id": job.id,
        "deployment": record["deployment"],
        "output": record["output"],
        "kind": record["kind"],
        "prompt": record["prompt"],
        "prompt_from": record["prompt_from"],
        "seed": record["seed"],
        "warm": record["warm"],
        "load_s": record["load_s"],
        "render_s": record["render_s"],
        "warnings": record["warnings"],
        "placement": record.get("placement", {}),
    }
    return JobOutcome(
        message=f"{record['kind']} rendered by deployment {record['deployment']}"
        + (" (warm)" if record["warm"] else " (loaded cold)"),
        artifacts=[ArtifactRef.model_validate(a) for a in record["artifacts"]],
        result=data,
        events=[
            Event(
                id=f"render-completed-{job.id}",
                type=COMPLETED_EVENT,
                tenant=job.tenant,
                project=job.project,
                data=data,
            )
        ],
    )


def cold_renderer(
    store: ObjectStore,
    *,
    models_dir: Path | None,
    placement: Placement,
    free_bytes: int | None = None,
    steps: int | None = None,
) -> RendererFor:
    """Load the deployment here for this one call (no warm worker took it)."""

    async def load(deployment: Deployment, tmp: Path) -> DeploymentRenderer:
        path = await asyncio.to_thread(
            store.download,
            Bucket.LORAS,
            deployment.lora_key,
            tmp / "lora" / "deployment.safetensors",
        )
        renderer = DeploymentRenderer(
            deployment,
            path,
            models_dir=models_dir,
            placement=placement,
            free_bytes=free_bytes,
            steps=steps,
        )
        await asyncio.to_thread(renderer.load)
        return renderer

    return load


# ------------------------------------------------------------------ starting a call


async def start_call(
    jobs: JobStore,
    bus: EventBus,
    store: ObjectStore,
    tenant: str,
    project: str,
    params: DeploymentCallParams,
    request_id: str | None = None,
) -> Job:
    """A render job for a deployment call, its request published to the deployment's warm
    workers. Bad input (unknown deployment, missing images, the wrong images for its mode)
    is refused here, before a job exists."""
    ref = ProjectRef(tenant, project)
    deployment = await asyncio.to_thread(Deployments(store).get, ref, params.deployment)
    if deployment.state is DeploymentStatus.STOPPED:
        raise InvalidInput(f"deployment {deployment.name!r} is stopped; deploy it again")
    check_call_inputs(deployment, params)
    await asyncio.to_thread(check_input_images, store, ref, [params.image, params.last_image])
    job_id = new_job_id(request_id, scope=f"{tenant}/{project}/render")
    job, _ = await jobs.create_or_get(
        Job(
            id=job_id,
            kind="render",
            tenant=tenant,
            project=project,
            params=params.model_dump(mode="json"),
        )
    )
    if job.state is JobState.PENDING:
        await bus.publish(
            Event(
                id=f"render-call-{job.id}",
                type=deployment.call_subject,
                tenant=tenant,
                project=project,
                data={"job_id": job.id},
            )
        )
    return job


async def request_warm(bus: EventBus, deployment: Deployment, generation: str = "0") -> None:
    """Ask for `capacity` warm workers (one event per slot; `generation` renews the ids when
    the slots are asked again after their workers died)."""
    for slot in range(deployment.spec.capacity):
        await bus.publish(
            Event(
                id=f"deploy-warm-{deployment.tenant}-{deployment.project}-{deployment.name}-"
                f"{deployment.created_at.timestamp():.0f}-{generation}-{slot}",
                type=WARM_EVENT,
                tenant=deployment.tenant,
                project=deployment.project,
                data={"deployment": deployment.name, "slot": slot},
            )
        )


# ------------------------------------------------------------------ the warm pool


class _Busy(Exception):
    """Not this worker (slots full, or it already holds the deployment): redelivered to another."""


@dataclass
class _Held:
    deployment: Deployment
    renderer: DeploymentRenderer
    consumer: Consumer | None = None
    beat_task: asyncio.Task[None] | None = None
    tmp: tempfile.TemporaryDirectory[str] | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class WarmPool:
    """Deployments this worker keeps warm (at most `slots`), and their call consumers."""

    def __init__(
        self,
        bus: EventBus,
        store: ObjectStore,
        jobs: JobStore,
        *,
        slots: int = 1,
        models_dir: Path | None = None,
        placement: Placement = Placement(),
        captioning: CaptioningSettings | None = None,
        free_bytes: int | None = None,
        steps: int | None = None,
        beat_s: float = BEAT_S,
        worker_id: str | None = None,
    ):
        self._bus, self._store, self._jobs = bus, store, jobs
        self._slots = slots
        self._models_dir, self._placement = models_dir, placement
        self._captioning, self._free_bytes, self._steps = captioning, free_bytes, steps
        self._beat_s = beat_s
        self.worker_id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        self.held: dict[tuple[str, str, str], _Held] = {}
        self._records = Deployments(store)

    async def start(self) -> None:
        if self._slots > 0:
            await self._bus.subscribe("render-deploy", WARM_EVENT, self.on_warm)

    async def on_warm(self, event: Event, delivery: Delivery) -> None:
        ref = ProjectRef(event.tenant, event.project)
        name = str(event.data.get("deployment", ""))
        try:
            deployment = await asyncio.to_thread(self._records.get, ref, name)
        except NotFound:
            return  # deleted before a worker took it
        if deployment.state is DeploymentStatus.STOPPED:
            return
        key = (ref.tenant, ref.project, name)
        if key in self.held:
            raise _Busy(
                f"{self.worker_id} already holds {name} warm; another worker takes this slot"
            )
        if len(self.held) >= self._slots:
            raise _Busy(f"{self.worker_id} has no free warm slot ({self._slots} in use)")
        tmp = tempfile.TemporaryDirectory(prefix=f"warm-{name}-")
        try:
            path = await asyncio.to_thread(
                self._store.download,
                Bucket.LORAS,
                deployment.lora_key,
                Path(tmp.name) / "deployment.safetensors",
            )
            renderer = DeploymentRenderer(
                deployment,
                path,
                models_dir=self._models_dir,
                placement=self._placement,
                free_bytes=self._free_bytes,
                steps=self._steps,
            )
            await asyncio.to_thread(renderer.load)
        except Exception as exc:
            tmp.cleanup()
            if isinstance(exc, LoraforgeError) and not isinstance(exc, Unavailable):
                # a permanent problem (missing LoRA, unprovisioned preset): FAILED with why
                await asyncio.to_thread(
                    self._records.beat,
                    ref,
                    name,
                    WarmBeat(
                        worker=self.worker_id,
                        ready=False,
                        beat_at=time.time(),
                        error=f"could not load: {exc}",
                        created_at=deployment.created_at,
                    ),
                )
                return
            raise
        held = _Held(deployment, renderer, tmp=tmp)
        self.held[key] = held

        async def render_on_warm(d: Deployment, _tmp: Path) -> DeploymentRenderer:
            return held.renderer

        work = DeploymentCallWork(
            self._store, render_on_warm, captioning=self._captioning, warm=True
        )
        worker = JobWorker("render", self._jobs, self._bus, work, durable=deployment.consumer)
        await self._beat(ref, held)  # RUNNING before the first call can arrive
        held.consumer = await self._bus.subscribe(
            deployment.consumer,
            deployment.call_subject,
            worker.handle,
            on_dead_letter=worker.on_dead_letter,
        )
        held.beat_task = asyncio.create_task(self._beat_loop(ref, key), name=f"warm-beat:{name}")
        log.info(
            "deployment %s/%s/%s warm on %s (loaded in %.1fs: %s)",
            *key,
            self.worker_id,
            renderer.load_s,
            renderer.placement,
        )

    async def _beat(self, ref: ProjectRef, held: _Held) -> None:
        await asyncio.to_thread(
            self._records.beat,
            ref,
            held.deployment.name,
            WarmBeat(
                worker=self.worker_id,
                ready=True,
                beat_at=time.time(),
                loaded_s=round(held.renderer.load_s, 3),
                placement=held.renderer.placement,
                created_at=held.deployment.created_at,
            ),
        )

    async def _beat_loop(self, ref: ProjectRef, key: tuple[str, str, str]) -> None:
        while key in self.held:
            await asyncio.sleep(self._beat_s)
            held = self.held.get(key)
            if held is None:
                return
            try:
                current = await asyncio.to_thread(self._records.get, ref, key[2])
            except NotFound:
                current = None
            except Exception:
                log.exception("warm beat of %s could not read the record", key)
                continue
            if (
                current is None
                or current.state is DeploymentStatus.STOPPED
                or current.created_at != held.deployment.created_at
            ):
                await self.release(key)
                return
            try:
                await self._beat(ref, held)
            except Exception:
                log.exception("warm beat of %s could not be written", key)

    async def release(self, key: tuple[str, str, str]) -> None:
        held = self.held.pop(key, None)
        if held is None:
            return
        if held.consumer is not None:
            await held.consumer.stop()
        if held.beat_task is not None and held.beat_task is not asyncio.current_task():
            held.beat_task.cancel()
        held.renderer.release()
        if held.tmp is not None:
            held.tmp.cleanup()
        with contextlib.suppress(Exception):
            await asyncio.to_thread(
                self._records.drop_beat, ProjectRef(key[0], key[1]), key[2], self.worker_id
            )
        log.info("deployment %s/%s/%s released on %s", *key, self.worker_id)

    async def close(self) -> None:
        for key in list(self.held):
            await self.release(key)
