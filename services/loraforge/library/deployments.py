"""Deployments: a LoRA version kept warm on render workers and called by name (seed 004).

A deployment names one LoRA (a library version `<name>:<version>`, or a training run's
checkpoint), the base preset it renders on, generation defaults and seed 004's prompt
settings (a template with a slot for a description of the input image, the effect's fixed
LoRA prompt, `use_input_prompt`). Creating one stores its record and asks for `capacity` warm
render workers (`render.deploy.warm`, one event per slot, work queue `render-deploy`); a worker
that takes a slot loads the base model and the LoRA at its strength, places them
(`render/device.py`) and from then on serves the deployment's calls from memory, beating a
heartbeat record every few seconds. The status is read from those beats:

    PENDING  created, no warm worker yet (or its workers' beats went stale)
    RUNNING  at least one worker holds it warm (`capacity` = how many do)
    STOPPED  deleted/stopped by the user; workers let it go at their next beat
    FAILED   a worker could not load it (the reason is recorded)

Calls are render jobs (kind `render`, same lifecycle, SSE and webhooks) whose request goes to
`<root>.render.call.<tenant>.<project>.<deployment>`, a work queue consumed only by the
deployment's warm workers (durable `render-call-<tenant>-<project>-<deployment>`); batch
systems publish `<root>.render.requests` with `data.deployment` (see loraforge.render.worker).

    loras  <t>/<p>/deployments/<name>.json                the record (library/layout.py:
                                                          deployment_key; `lora` = {name,
                                                          version} is what Library.in_use reads)
           <t>/<p>/deployments/<name>/warm/<worker>.json  a warm worker's heartbeat
"""

from __future__ import annotations

import builtins
import re
import string
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from loraforge.library import layout
from loraforge.library.store import Library, usage_ref
from loraforge.render.scenario import DEFAULT_LORA_WEIGHTS
from loraforge.runtime.errors import AlreadyExists, InvalidInput, NotFound
from loraforge.runtime.keys import ProjectRef
from loraforge.runtime.params import LoraType
from loraforge.runtime.storage import Bucket, ObjectStore
from loraforge.trainer.preset_table import PRESETS

WARM = "warm"
NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
#: A warm worker beats every BEAT_S; a beat older than STALE_S means the worker is gone
#: (3 missed beats: a loaded GPU box stalls for seconds under load, not for 15).
BEAT_S = 5.0
STALE_S = 15.0
#: Slots of a prompt template. `{description}` is drafted from the input image by a caption
#: source, `{trigger}` is the LoRA's trigger word, `{lora_prompt}` the deployment's default
#: LoRA prompt (the effect's fixed motion text).
SLOTS = ("description", "trigger", "lora_prompt")
CAPTION_SOURCES = ("attributes", "vlm", "openai")


class DeploymentStatus(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    STOPPED = "STOPPED"
    FAILED = "FAILED"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GenerationDefaults(_Strict):
    """What a call renders unless it says otherwise. None = the render defaults (the scenario's:
    832x480, 81 frames at 16 fps, 30 steps; cfg the family's; strength the LoRA's
    recommended weight)."""

    width: int | None = Field(default=None, ge=64, le=4096)
    height: int | None = Field(default=None, ge=64, le=4096)
    frames: int | None = Field(default=None, ge=5, le=1025)
    fps: int | None = Field(default=None, ge=1, le=60)
    steps: int | None = Field(default=None, ge=1, le=200)
    cfg: float | None = Field(default=None, ge=0.0, le=30.0)
    strength: float | None = Field(default=None, ge=-2.0, le=2.0)
    seed: int = Field(default=0, ge=0, le=2**32 - 1)
    negative_prompt: str = Field(default="", max_length=4000)

    @model_validator(mode="after")
    def _shape(self) -> GenerationDefaults:
        for name in ("width", "height"):
            value = getattr(self, name)
            if value is not None and value % 16:
                raise ValueError(
                    f"{name} {value} must be a multiple of 16 (the video model's stride)"
                )
        if self.frames is not None and (self.frames - 1) % 4:
            raise ValueError(
                f"frames {self.frames}: Wan needs 4k+1 frames (e.g. "
                f"{4 * ((self.frames - 1) // 4) + 1})"
            )
        return self


class PromptSettings(_Strict):
    """Seed 004's `aigc_config`. `template` may use {description}, {trigger}, {lora_prompt}
    ({{ and }} for literal braces). A template with no slot is taken as seed 004's instruction
    to a captioning model: the prompt is then `<description> <lora_prompt>`, which is what its
    output template (`[subject][environment]` + the fixed effect text) produces."""

    template: str = Field(default="{description} {lora_prompt}", max_length=20_000)
    lora_prompt_default: str = Field(default="", max_length=4000)
    use_input_prompt: bool = False
    caption_source: Literal["attributes", "vlm", "openai"] = "attributes"

    @field_validator("template")
    @classmethod
    def _slots(cls, template: str) -> str:
        unknown = sorted(set(template_slots(template)) - set(SLOTS))
        if unknown:
            raise ValueError(
                f"the template uses unknown slot(s) {', '.join('{' + u + '}' for u in unknown)}; "
                f"use {', '.join('{' + s + '}' for s in SLOTS)} (and {{{{ }}}} for literal braces)"
            )
        return template

    @property
    def needs_description(self) -> bool:
        slots = template_slots(self.template)
        return "description" in slots or not slots


class DeploymentSpec(_Strict):
    """What a user asks for (CLI, `/v1/.../deployments`, `/api/v1/deployments`)."""

    name: str = Field(default="", pattern=r"^$|" + NAME_PATTERN)  # empty: generated
    lora: str = Field(
        min_length=1, max_length=300
    )  # `<name>:<version>|<alias>` or `run:<run_id>[@<step>]`
    preset: str = Field(default="", max_length=100)  # empty: the LoRA's base preset
    defaults: GenerationDefaults = GenerationDefaults()
    prompt: PromptSettings = PromptSettings()
    capacity: int = Field(default=1, ge=1, le=16)


@dataclass(frozen=True)
class LoraVersion:
    """A resolved LoRA: the file a deployment loads and what it knows about it."""

    ref: str
    key: str  # loras-bucket key of the .safetensors
    base_preset: str
    family: str
    lora_type: str
    trigger: str
    strength: float | None  # the recommended weight, when the run measured or set one
    usage: dict[str, Any]  # what the deployment record carries under `lora`


class Deployment(BaseModel):
    """The stored record (`deployment.json`)."""

    model_config = ConfigDict(extra="ignore")

    name: str
    tenant: str
    project: str
    spec: DeploymentSpec
    lora_key: str
    lora_ref: str
    # the library version served ({name, version}: Library.in_use refuses its deletion), or
    # the run and checkpoint for a deployment made straight from a training run
    lora: dict[str, Any] = Field(default_factory=dict)
    preset: str
    family: str
    variant: str
    trigger: str = ""
    strength: float
    lora_type: str = ""
    state: DeploymentStatus = DeploymentStatus.PENDING  # the user's side: PENDING or STOPPED
    message: str = ""
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    @property
    def mode(self) -> str:
        """What a call needs: t2v (text), i2v (first frame), flf2v (first + last), image."""
        return (
            self.variant
            if self.family == "wan" and self.variant in ("i2v", "flf2v")
            else ("t2v" if self.family == "wan" else "image")
        )

    @property
    def call_subject(self) -> str:
        """The event type a call's request is published as (work queue of its warm workers)."""
        return f"render.call.{self.tenant}.{self.project}.{self.name}"

    @property
    def consumer(self) -> str:
        return f"render-call-{self.tenant}-{self.project}-{self.name}"


class WarmBeat(BaseModel):
    worker: str
    ready: bool
    beat_at: float  # unix seconds
    loaded_s: float = 0.0
    placement: dict[str, Any] = Field(default_factory=dict)
    error: str = ""
    # the record's created_at it was loaded from: a beat for an earlier deployment of the
    # same name (deleted, created again) never counts for the new one
    created_at: datetime | None = None


class DeploymentView(BaseModel):
    """A deployment as read by its callers: record + status computed from the beats."""

    name: str
    status: DeploymentStatus
    capacity: int  # asked
    warm_workers: int  # have it loaded now
    lora: str
    lora_key: str
    preset: str
    mode: str
    trigger: str
    strength: float
    defaults: GenerationDefaults
    prompt: PromptSettings
    message: str = ""
    created_at: datetime


def template_slots(template: str) -> list[str]:
    try:
        return [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as exc:  # a lone { or }
        raise ValueError(
            f"the template is not a valid format string ({exc}); write {{{{ and }}}} "
            "for literal braces"
        ) from None


def fill_prompt(
    prompt: PromptSettings, *, trigger: str, call_prompt: str = "", description: str = ""
) -> tuple[str, str]:
    """(the prompt a call renders with, how it was made). With `use_input_prompt` the caller's
    prompt is used as given; with none given (the call needs nothing else), the template."""
    if prompt.use_input_prompt and call_prompt.strip():
        return call_prompt.strip(), "input"
    values = {
        "description": description.strip(),
        "trigger": trigger,
        "lora_prompt": prompt.lora_prompt_default.strip(),
    }
    if not template_slots(prompt.template):
        text = f"{values['description']} {values['lora_prompt']}"
    else:
        text = prompt.template.format(**values)
    return re.sub(r"\s+", " ", text).strip(), "template"


def parse_spec(data: Any) -> DeploymentSpec:
    """JSON -> DeploymentSpec, or InvalidInput naming each bad field."""
    try:
        return DeploymentSpec.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'deployment'}: "
            f"{e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        )
        raise InvalidInput(f"invalid deployment: {problems}") from None


# ------------------------------------------------------------------ LoRA resolution


def resolve_lora(store: ObjectStore, ref: ProjectRef, lora: str) -> LoraVersion:
    """`<name>:<version>` / `<name>:<alias>` through the LoRA library; `run:<run_id>` (the run's
    automatic pick) or `run:<run_id>@<step>` (a checkpoint) straight from a training run."""
    if lora.startswith("run:"):
        return _from_run(store, ref, lora)
    version = Library(store, ref).resolve(lora)
    return LoraVersion(
        ref=version.ref,
        key=version.lora_key,
        base_preset=version.base_preset,
        family=version.family,
        lora_type=version.lora_type,
        trigger=version.trigger,
        strength=version.recommended_strength,
        usage=usage_ref(version),
    )


def _from_run(store: ObjectStore, ref: ProjectRef, lora: str) -> LoraVersion:
    body = lora.removeprefix("run:")
    run_id, _, step = body.partition("@")
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", run_id):
        raise InvalidInput(
            f"LoRA {lora!r}: not a run id; write run:<run_id> or run:<run_id>@<step>"
        )
    key = layout.run_record_key(ref, run_id)
    if store.stat(Bucket.LORAS, key) is None:
        raise NotFound(f"LoRA {lora!r}: run {run_id} has no finished training in this project")
    run = store.get_json(Bucket.LORAS, key)
    if step:
        # The checkpoint's exported LoRA file (the family's ComfyUI layout, as best/last are),
        # not the raw training adapter beside its optimizer state.
        wanted = f"step-{step.removeprefix('step-')}"
        infos = {info.name: info for info in Library(store, ref).checkpoints(run_id)}
        if wanted not in infos:
            raise NotFound(
                f"LoRA {lora!r}: run {run_id} has no checkpoint {wanted}; "
                f"it has {', '.join(infos) or 'none'}"
            )
        if not infos[wanted].promotable:
            raise InvalidInput(f"LoRA {lora!r}: {infos[wanted].why_not}")
        file_key = infos[wanted].files["main"]
    else:
        file_key = run["best_key"]
    return LoraVersion(
        ref=lora,
        key=file_key,
        base_preset=run.get("base_preset", ""),
        family=run.get("family", ""),
        lora_type=run.get("lora_type", ""),
        trigger=run.get("trigger", ""),
        strength=run.get("recommended_weight"),
        usage={
            "run": run_id,
            "checkpoint": f"step-{step.removeprefix('step-')}" if step else "best",
        },
    )


# ------------------------------------------------------------------ the store


def record_key(ref: ProjectRef, name: str) -> str:
    return layout.deployment_key(ref, name)


def warm_prefix(ref: ProjectRef, name: str) -> str:
    return ref.key(layout.DEPLOYMENTS, name, WARM) + "/"


def new_name(lora: LoraVersion) -> str:
    """Like seed 004's `xxxx-ft-202511111122-xxxx`: what it is, when, and a random tail."""
    import secrets

    stem = re.sub(r"[^a-z0-9]+", "-", lora.ref.split(":")[0].lower()).strip("-")[:24] or "lora"
    return f"{stem}-ft-{datetime.now(UTC):%Y%m%d%H%M}-{secrets.token_hex(2)}"


class Deployments:
    """Deployment records and warm beats in the loras bucket (blocking: call off the loop)."""

    def __init__(self, store: ObjectStore):
        self._store = store

    def create(self, ref: ProjectRef, spec: DeploymentSpec) -> Deployment:
        lora = resolve_lora(self._store, ref, spec.lora)
        if self._store.stat(Bucket.LORAS, lora.key) is None:
            raise NotFound(f"LoRA {spec.lora!r}: its file loras/{lora.key} is missing")
        preset_name = spec.preset or lora.base_preset
        if not preset_name:
            raise InvalidInput(f"LoRA {spec.lora!r} records no base preset: give `preset`")
        # the preset table, not trainer.presets: this module runs in the gateway (no torch)
        preset = PRESETS.get(preset_name)
        if preset is None:
            raise InvalidInput(f"unknown preset {preset_name!r}; `loraforge presets` lists them")
        if lora.family and preset.family != lora.family:
            raise InvalidInput(
                f"LoRA {spec.lora!r} was trained for {lora.family} ({lora.base_preset}); "
                f"preset {preset_name!r} is {preset.family}: deploy it on a "
                f"{lora.family} preset"
            )
        name = spec.name or new_name(lora)
        key = record_key(ref, name)
        if self._store.stat(Bucket.LORAS, key) is not None:
            raise AlreadyExists(f"deployment {name!r} exists; delete it first or pick another name")
        strength = spec.defaults.strength
        if strength is None:
            strength = lora.strength
        if strength is None:
            try:
                strength = DEFAULT_LORA_WEIGHTS[LoraType(lora.lora_type)]
            except ValueError:
                strength = 1.0
        record = Deployment(
            name=name,
            tenant=ref.tenant,
            project=ref.project,
            spec=spec.model_copy(update={"name": name}),
            lora_key=lora.key,
            lora_ref=lora.ref,
            lora=lora.usage,
            preset=preset_name,
            family=preset.family,
            variant=preset.variant,
            trigger=lora.trigger,
            strength=float(strength),
            lora_type=lora.lora_type,
        )
        self._store.put_json(Bucket.LORAS, key, record.model_dump(mode="json"))
        return record

    def get(self, ref: ProjectRef, name: str) -> Deployment:
        if not re.fullmatch(NAME_PATTERN, name):
            raise NotFound(f"deployment {name!r} does not exist")
        key = record_key(ref, name)
        if self._store.stat(Bucket.LORAS, key) is None:
            raise NotFound(f"deployment {name!r} does not exist in project {ref.project}")
        return Deployment.model_validate(self._store.get_json(Bucket.LORAS, key))

    def list(self, ref: ProjectRef) -> list[Deployment]:
        out = []
        prefix = layout.deployments_prefix(ref)
        for obj in self._store.list(Bucket.LORAS, prefix):
            rest = obj.key[len(prefix) :]
            if "/" in rest or not rest.endswith(".json"):
                continue  # a warm beat
            try:
                out.append(Deployment.model_validate(self._store.get_json(Bucket.LORAS, obj.key)))
            except NotFound:  # deleted between the listing and the read
                continue
        return sorted(out, key=lambda d: d.created_at)

    def set_state(
        self, ref: ProjectRef, name: str, state: DeploymentStatus, message: str = ""
    ) -> Deployment:
        record = self.get(ref, name).model_copy(update={"state": state, "message": message})
        self._store.put_json(Bucket.LORAS, record_key(ref, name), record.model_dump(mode="json"))
        return record

    def delete(self, ref: ProjectRef, name: str) -> Deployment:
        """Stop it (workers let it go at their next beat) and remove the record."""
        record = self.get(ref, name).model_copy(
            update={"state": DeploymentStatus.STOPPED, "message": "deleted"}
        )
        # the record first: its LoRA version is deletable again, and a worker's next beat
        # finds no record and lets the pipeline go (a beat written after this is harmless)
        self._store.delete(Bucket.LORAS, record_key(ref, name))
        for obj in list(self._store.list(Bucket.LORAS, warm_prefix(ref, name))):
            self._store.delete(Bucket.LORAS, obj.key)
        return record

    # -- warm beats ----------------------------------------------------------------------------

    def beat(self, ref: ProjectRef, name: str, beat: WarmBeat) -> None:
        self._store.put_json(
            Bucket.LORAS,
            f"{warm_prefix(ref, name)}{beat.worker}.json",
            beat.model_dump(mode="json"),
        )

    def drop_beat(self, ref: ProjectRef, name: str, worker: str) -> None:
        self._store.delete(Bucket.LORAS, f"{warm_prefix(ref, name)}{worker}.json")

    def beats(self, ref: ProjectRef, name: str) -> builtins.list[WarmBeat]:
        out = []
        for obj in self._store.list(Bucket.LORAS, warm_prefix(ref, name)):
            try:
                out.append(WarmBeat.model_validate(self._store.get_json(Bucket.LORAS, obj.key)))
            except NotFound:
                continue  # dropped between list and read
        return out

    def view(self, ref: ProjectRef, name: str, *, now: float | None = None) -> DeploymentView:
        return view_of(self.get(ref, name), self.beats(ref, name), now=now)


def view_of(
    record: Deployment, beats: list[WarmBeat], *, now: float | None = None
) -> DeploymentView:
    now = time.time() if now is None else now
    beats = [b for b in beats if b.created_at is None or b.created_at == record.created_at]
    fresh = [b for b in beats if now - b.beat_at <= STALE_S]
    warm = [b for b in fresh if b.ready]
    failed = [b for b in fresh if b.error]
    message = record.message
    if record.state is DeploymentStatus.STOPPED:
        status = DeploymentStatus.STOPPED
    elif warm:
        status = DeploymentStatus.RUNNING
    elif failed:
        status, message = DeploymentStatus.FAILED, failed[0].error
    else:
        status = DeploymentStatus.PENDING
        if beats and not fresh:
            message = (
                f"no warm worker: the last beat is {now - max(b.beat_at for b in beats):.0f}s old"
            )
    spec = record.spec
    return DeploymentView(
        name=record.name,
        status=status,
        capacity=spec.capacity,
        warm_workers=len(warm),
        lora=record.lora_ref,
        lora_key=record.lora_key,
        preset=record.preset,
        mode=record.mode,
        trigger=record.trigger,
        strength=record.strength,
        defaults=spec.defaults,
        prompt=spec.prompt,
        message=message,
        created_at=record.created_at,
    )
