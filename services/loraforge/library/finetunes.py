"""Seed 004's hosted fine-tuning surface: dataset zips in, fine-tune jobs out.

A zip (`wan-i2v-training-dataset.zip` / `wan-kf2v-training-dataset.zip`, the format of
captioning/exports/wan.py) is checked whole before anything is stored (`inspect_zip`), then
becomes a dataset the trainer reads unchanged (`import_zip`): the videos go to `clips/`, the
prompts become approved captions, `dataset.json` is written last (layout.py). A fine-tune
request (`FinetuneCreate`) becomes a training run (`plan_finetune`): seed 004's validation
split and step rule, `eval_epochs` as the checkpoint/evaluation cadence, `max_pixels` as the
training area. `usage` (`usage_tokens`) is the number of latent tokens the denoiser trained
on: steps x batch x tokens per sample (latent frames x (H / 16) x (W / 16) for Wan: VAE 8x,
patch 2), the same unit as the hosted service's "total tokens consumed by training".

Limits (seed 004): data.jsonl <= 20 MB, zip <= 1 GB, images BMP/JPEG/PNG/WEBP <= 4096x4096,
videos MP4/MOV <= 4096x4096 and <= 5 s (the Wan 2.1/2.2 presets loraforge trains; 10 s is
wan2.5's), >= 10 samples.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import secrets
import tempfile
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from PIL import Image, UnidentifiedImageError
from pydantic import BaseModel, ConfigDict, Field

from loraforge.captioning.dataset import read_dataset
from loraforge.captioning.exports.wan import (
    IMAGE_FORMATS,
    MAX_CLIP_S,
    MIN_STEPS,
    VIDEO_FORMATS,
    WanLimits,
    validation_count,
)
from loraforge.captioning.media import probe
from loraforge.captioning.review import CaptionRecord, CaptionReviewStore, CaptionVersion
from loraforge.captioning.trigger import check_trigger
from loraforge.curation import layout as dataset_layout
from loraforge.curation.record import DatasetRecord
from loraforge.library import layout
from loraforge.library.records import LoraVersion
from loraforge.library.store import FINETUNE_PREFIX, Library
from loraforge.runtime.errors import InvalidInput, NotFound
from loraforge.runtime.keys import ProjectRef
from loraforge.runtime.storage import Bucket, ObjectStore
from loraforge.trainer.preset_table import PRESETS

LIMITS = WanLimits()
#: the longest training video: Wan 2.1 / 2.2 (seed 004: "wan2.2 <= 5 s"), the families
#: loraforge's presets train
MAX_VIDEO_S = MAX_CLIP_S["wan2.2"]
REQUIRED = {
    "i2v": ("prompt", "first_frame_path", "video_path"),
    "kf2v": ("prompt", "first_frame_path", "last_frame_path", "video_path"),
}
FIELDS = ("prompt", "first_frame_path", "last_frame_path", "video_path")
#: which preset variant each zip mode trains
MODE_VARIANT = {"i2v": "i2v", "kf2v": "flf2v"}
#: the largest training area a request may ask for: 720p (1280 x 720), the biggest Wan
#: training resolution loraforge has a preset for; the smallest is one 16 x 16 latent patch
MAX_PIXELS_RANGE = (256, 1280 * 720)
#: Wan: pixels per latent token (VAE 8x, patch 2) and video frames per latent frame
PIXELS_PER_TOKEN = 16 * 16
FRAMES_PER_LATENT = 4
STATUS = {
    "PENDING": "PENDING",
    "RUNNING": "RUNNING",
    "SUCCEEDED": "SUCCEEDED",
    "FAILED": "FAILED",
    "CANCELLED": "CANCELED",
}  # seed 004 spells it CANCELED
_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{1,63}")


def now() -> datetime:
    return datetime.now(UTC)


# ---------------------------------------------------------------- zips


@dataclass
class Sample:
    line: int
    prompt: str
    first: str
    video: str
    last: str | None = None
    duration_s: float = 0.0
    width: int = 0
    height: int = 0
    fps: float = 0.0


@dataclass
class ZipDataset:
    mode: str  # i2v | kf2v
    samples: list[Sample]
    trigger: str
    sha256: str
    size: int
    warnings: list[str] = field(default_factory=list)


def _refuse(name: str, reason: str) -> InvalidInput:
    return InvalidInput(f"{name}: {reason}; nothing was stored")


def _member(name: str, path: Any, names: set[str], line: int, key: str) -> str:
    if not isinstance(path, str) or not path.strip():
        raise _refuse(name, f"data.jsonl line {line}: {key} must be a path inside the zip")
    p = PurePosixPath(path)
    if p.is_absolute() or ".." in p.parts or path not in names:
        raise _refuse(
            name,
            f"data.jsonl line {line}: {key} {path!r} is not a file in the zip "
            "(paths are relative to the zip's root, e.g. image/image_1_first.jpg)",
        )
    return path


def detect_trigger(prompts: list[str]) -> str:
    """The rare token every prompt carries (seed 004: `s86b5p`), or '' when none does."""
    common: set[str] | None = None
    for p in prompts:
        tokens = set(_TOKEN.findall(p))
        common = tokens if common is None else common & tokens
    candidates = sorted(t for t in common or () if check_trigger(t) is None)
    return (
        candidates[0]
        if len(candidates) == 1
        else (max(candidates, key=lambda t: (sum(c.isdigit() for c in t), t)) if candidates else "")
    )


def inspect_zip(path: Path, name: str = "") -> ZipDataset:
    """Every rule of seed 004's dataset format, checked on the decoded media; InvalidInput
    names the first broken rule (with the data.jsonl line) and what to fix."""
    name = name or path.name
    size = path.stat().st_size
    if size > LIMITS.max_zip_bytes:
        raise _refuse(name, f"the zip is {size} bytes, over the 1 GB limit")
    if not zipfile.is_zipfile(path):
        raise _refuse(
            name, "not a zip archive; upload the dataset as a .zip with data.jsonl at its root"
        )
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    with zipfile.ZipFile(path) as zf, tempfile.TemporaryDirectory(prefix="lf-ft-zip-") as tmp:
        names = {n for n in zf.namelist() if not n.endswith("/")}
        if "data.jsonl" not in names:
            raise _refuse(
                name,
                "data.jsonl must be at the zip's root (found "
                f"{', '.join(sorted(n for n in names if n.endswith('.jsonl'))) or 'none'})",
            )
        info = zf.getinfo("data.jsonl")
        if info.file_size > LIMITS.max_jsonl_bytes:
            raise _refuse(name, f"data.jsonl is {info.file_size} bytes, over the 20 MB limit")
        try:
            text = zf.read("data.jsonl").decode("utf-8-sig")
        except UnicodeDecodeError:
            raise _refuse(name, "data.jsonl is not UTF-8 text") from None
        samples: list[Sample] = []
        modes: set[str] = set()
        seen: dict[str, int] = {}
        for n, raw in enumerate(text.splitlines(), 1):
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except json.JSONDecodeError as e:
                raise _refuse(name, f"data.jsonl line {n} is not JSON ({e.msg})") from None
            if not isinstance(obj, dict):
                raise _refuse(name, f"data.jsonl line {n} must be a JSON object")
            unknown = sorted(set(obj) - set(FIELDS))
            if unknown:
                raise _refuse(
                    name,
                    f"data.jsonl line {n}: unknown field(s) {', '.join(unknown)}; "
                    f"the fields are {', '.join(FIELDS)}",
                )
            mode = "kf2v" if "last_frame_path" in obj else "i2v"
            missing = [k for k in REQUIRED[mode] if k not in obj]
            if missing:
                raise _refuse(
                    name,
                    f"data.jsonl line {n} lacks {', '.join(missing)} (a {mode} "
                    f"sample needs {', '.join(REQUIRED[mode])})",
                )
            modes.add(mode)
            prompt = obj["prompt"]
            if not isinstance(prompt, str) or not prompt.strip():
                raise _refuse(
                    name,
                    f"data.jsonl line {n}: prompt is empty; write what the "
                    "video shows (subject, background, trigger, motion)",
                )
            s = Sample(
                n,
                prompt.strip(),
                _member(name, obj["first_frame_path"], names, n, "first_frame_path"),
                _member(name, obj["video_path"], names, n, "video_path"),
                _member(name, obj["last_frame_path"], names, n, "last_frame_path")
                if mode == "kf2v"
                else None,
            )
            if s.video in seen:
                raise _refuse(
                    name, f"data.jsonl lines {seen[s.video]} and {n} name the same video {s.video}"
                )
            seen[s.video] = n
            for key, img in (("first_frame_path", s.first), ("last_frame_path", s.last)):
                if img is None:
                    continue
                try:
                    with zf.open(img) as member, Image.open(member) as im:
                        fmt, dims = im.format, im.size
                except (UnidentifiedImageError, OSError) as e:
                    raise _refuse(
                        name, f"line {n}: {key} {img} is not a readable image ({type(e).__name__})"
                    ) from None
                if fmt not in IMAGE_FORMATS:
                    raise _refuse(
                        name,
                        f"line {n}: {img} is {fmt}; images must be "
                        f"{', '.join(sorted(IMAGE_FORMATS))}",
                    )
                if max(dims) > LIMITS.max_side:
                    raise _refuse(
                        name,
                        f"line {n}: {img} is {dims[0]}x{dims[1]}, over "
                        f"{LIMITS.max_side}x{LIMITS.max_side}",
                    )
            suffix = PurePosixPath(s.video).suffix.lower()
            if suffix not in VIDEO_FORMATS:
                raise _refuse(name, f"line {n}: {s.video} is not MP4 or MOV")
            local = Path(tmp) / f"{n}{suffix}"
            with zf.open(s.video) as src, local.open("wb") as dst:
                for chunk in iter(lambda: src.read(1 << 20), b""):
                    dst.write(chunk)
            try:
                media = probe(local)
            except InvalidInput as exc:
                raise _refuse(
                    name, f"line {n}: {s.video} cannot be decoded as video ({exc})"
                ) from None
            finally:
                local.unlink(missing_ok=True)
            if max(media.width, media.height) > LIMITS.max_side:
                raise _refuse(
                    name,
                    f"line {n}: {s.video} is {media.width}x{media.height}, over "
                    f"{LIMITS.max_side}x{LIMITS.max_side}",
                )
            if media.duration_s > MAX_VIDEO_S + 1e-3:
                raise _refuse(
                    name,
                    f"line {n}: {s.video} is {media.duration_s:.2f} s long; "
                    f"videos may be at most {MAX_VIDEO_S:g} s (cut it to 4-5 s)",
                )
            s.duration_s, s.width, s.height, s.fps = (
                media.duration_s,
                media.width,
                media.height,
                media.fps,
            )
            samples.append(s)
    if len(modes) > 1:
        raise _refuse(
            name,
            "data.jsonl mixes first-frame (i2v) and first+last-frame (kf2v) "
            "samples; one zip is one kind: give every line a last_frame_path or none",
        )
    if len(samples) < LIMITS.min_samples:
        raise _refuse(
            name,
            f"{len(samples)} samples; a training set needs at least "
            f"{LIMITS.min_samples} (20-100 recommended)",
        )
    trigger = detect_trigger([s.prompt for s in samples])
    warnings = (
        []
        if trigger
        else [
            "no rare trigger word appears in every prompt (seed 004: a made-up token such as "
            "s86b5p before the shared motion description); the LoRA will be harder to call"
        ]
    )
    return ZipDataset(modes.pop(), samples, trigger, h.hexdigest(), size, warnings)


class FileRecord(BaseModel):
    file_id: str
    name: str
    purpose: str
    description: str = ""
    sha256: str
    size: int
    mode: str
    samples: int
    dataset_id: str
    trigger: str = ""
    warnings: list[str] = Field(default_factory=list)
    zip_key: str
    created_at: datetime = Field(default_factory=now)
    created_by: str = ""


def import_zip(
    store: ObjectStore,
    ref: ProjectRef,
    path: Path,
    *,
    name: str,
    purpose: str = "fine-tune",
    description: str = "",
    by: str = "",
) -> FileRecord:
    """Check, then store: the zip (raw), its media (clips), captions, the dataset (its
    dataset.json last) and the file record. Nothing is written when a check fails."""
    z = inspect_zip(path, name)
    dataset_id = layout.ft_dataset_id(z.sha256)
    if store.stat(Bucket.DATASETS, dataset_layout.record_key(ref, dataset_id)) is None:
        zip_key = layout.ft_zip_key(ref, z.sha256)
        store.put_if_absent_file(
            Bucket.RAW, zip_key, path, sha256=z.sha256, content_type="application/zip"
        )
        folder = layout.ft_clip_folder(ref, z.sha256)
        review = CaptionReviewStore(store, ref, dataset_id)
        selected, rows = [], []
        with zipfile.ZipFile(path) as zf, tempfile.TemporaryDirectory(prefix="lf-ft-") as tmp:
            for i, s in enumerate(z.samples, 1):
                clip_id = f"sample-{i:03d}"
                video_key = f"{folder}/{clip_id}{PurePosixPath(s.video).suffix.lower()}"
                frames = [(s.first, "first")] + ([(s.last, "last")] if s.last else [])
                keyframes = []
                for member, which in [(s.video, None), *frames]:
                    local = Path(zf.extract(member, tmp))
                    suffix = PurePosixPath(member).suffix.lower()
                    key = video_key if which is None else f"{folder}/{clip_id}_{which}{suffix}"
                    ctype = (
                        "video/mp4"
                        if suffix == ".mp4"
                        else "video/quicktime"
                        if which is None
                        else f"image/{suffix.lstrip('.')}"
                    )
                    store.put_file(Bucket.CLIPS, key, local, content_type=ctype)
                    if which is not None:
                        keyframes.append(key)
                selected.append(
                    {
                        "clip_id": clip_id,
                        "key": video_key,
                        "keyframe_keys": keyframes,
                        "source_line": s.line,
                    }
                )
                rows.append(
                    {
                        "clip_id": clip_id,
                        "key": video_key,
                        "kind": "video",
                        "duration_s": s.duration_s,
                        "width": s.width,
                        "height": s.height,
                        "fps": s.fps,
                        "source": s.video,
                        "data_jsonl_line": s.line,
                    }
                )
                rec = CaptionRecord(
                    clip_id=clip_id,
                    dataset_id=dataset_id,
                    approved=True,
                    approved_by=by or "upload",
                    versions=[
                        CaptionVersion(
                            text=s.prompt,
                            author=f"user:{by or 'upload'}",
                            note=f"data.jsonl line {s.line} of {name}",
                        )
                    ],
                )
                store.put_json(Bucket.DATASETS, review.key(clip_id), rec.model_dump(mode="json"))
        review.save_run(
            {"trigger": z.trigger, "lora_type": "effect", "source": "fine-tune zip", "mode": z.mode}
        )
        store.put_json(
            Bucket.DATASETS, dataset_layout.manifest_key(ref, dataset_id), {"clips": rows}
        )
        store.put_json(
            Bucket.DATASETS,
            dataset_layout.record_key(ref, dataset_id),
            DatasetRecord.model_validate(
                {
                    "id": dataset_id,
                    "lora_type": "effect",
                    "selected": selected,
                    "manifest": dataset_layout.MANIFEST,
                    "created_at": now().isoformat(),
                    "source": {
                        "kind": "fine-tune zip",
                        "zip_key": zip_key,
                        "mode": z.mode,
                        "trigger": z.trigger,
                    },
                }
            ).dump(),
        )
    record = FileRecord(
        file_id=f"file-{secrets.token_hex(12)}",
        name=name,
        purpose=purpose,
        description=description,
        sha256=z.sha256,
        size=z.size,
        mode=z.mode,
        samples=len(z.samples),
        dataset_id=dataset_id,
        trigger=z.trigger,
        warnings=z.warnings,
        zip_key=layout.ft_zip_key(ref, z.sha256),
        created_by=by,
    )
    store.put_json(
        Bucket.DATASETS, layout.ft_file_key(ref, record.file_id), record.model_dump(mode="json")
    )
    return record


def get_file(store: ObjectStore, ref: ProjectRef, file_id: str) -> FileRecord:
    key = layout.ft_file_key(ref, file_id)
    if store.stat(Bucket.DATASETS, key) is None:
        raise NotFound(f"file {file_id!r} not found; upload it with POST /api/v1/files")
    return FileRecord.model_validate(store.get_json(Bucket.DATASETS, key))


def list_files(store: ObjectStore, ref: ProjectRef) -> list[FileRecord]:
    return sorted(
        (
            FileRecord.model_validate(store.get_json(Bucket.DATASETS, o.key))
            for o in store.list(Bucket.DATASETS, layout.ft_files_prefix(ref))
            if o.key.endswith(".json")
        ),
        key=lambda r: r.created_at,
    )


# ---------------------------------------------------------------- fine-tune jobs


class HyperParameters(BaseModel):
    """Seed 004's hyper-parameters; the defaults are its documented values."""

    model_config = ConfigDict(extra="forbid")
    n_epochs: int = Field(
        default=400,
        ge=1,
        le=100_000,
        description=(
            "passes over the training set; steps = n_epochs x ceil(train samples / batch_size) "
            f"must reach {MIN_STEPS}"
        ),
    )
    batch_size: int = Field(default=2, ge=1, le=64)
    learning_rate: float = Field(
        default=2e-5,
        gt=0,
        le=1e-2,
        description=("above 1e-2 a LoRA diverges on every family loraforge trains"),
    )
    split: float = Field(
        default=0.9,
        gt=0,
        le=1,
        description=(
            "share of the samples trained on; the rest (at most max_split_val_dataset_sample) "
            "validates"
        ),
    )
    max_split_val_dataset_sample: int = Field(default=5, ge=1, le=1000)
    eval_epochs: int = Field(
        default=20,
        ge=1,
        le=100_000,
        description=("epochs between checkpoints, each evaluated (validation loss, previews)"),
    )
    max_pixels: int = Field(
        default=262_144,
        ge=MAX_PIXELS_RANGE[0],
        le=MAX_PIXELS_RANGE[1],
        description="training area in pixels (512 x 512 = 262144)",
    )


class FinetuneCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "model": "wan2.1-flf2v-14b",
                    "training_file_ids": ["file-3bff1ef7f72d4285bb75aa01"],
                    "training_type": "efficient_sft",
                    "hyper_parameters": {
                        "n_epochs": 400,
                        "batch_size": 4,
                        "learning_rate": 2e-5,
                        "split": 0.9,
                        "eval_epochs": 20,
                        "max_pixels": 262144,
                    },
                }
            ]
        },
    )
    model: str = Field(
        min_length=1,
        max_length=100,
        description=(
            "a loraforge Wan preset: an i2v preset for i2v zips, an flf2v one for kf2v zips"
        ),
    )
    training_file_ids: list[str] = Field(min_length=1, max_length=20)
    validation_file_ids: list[str] = Field(default_factory=list, max_length=20)
    training_type: Literal["efficient_sft"] = Field(
        default="efficient_sft", description="efficient_sft (LoRA): the only kind loraforge trains"
    )
    hyper_parameters: HyperParameters = Field(default_factory=HyperParameters)


@dataclass
class FinetunePlan:
    preset: str
    dataset_id: str
    mode: str
    samples: int
    train_samples: int
    validation_clips: list[str]
    steps_per_epoch: int
    steps: int
    eval_every: int
    resolution: int
    trigger: str
    validation_prompts: list[str] = field(default_factory=list)

    def training_extra(self, hp: HyperParameters) -> dict[str, Any]:
        """The RunConfig options of the run (trainer/worker.py: validate_extra) and, as seed
        004 evaluates, one preview per validation sample, from its prompt."""
        extra: dict[str, Any] = {
            "batch_size": hp.batch_size,
            "resolution": str(self.resolution),
            "eval_every": self.eval_every,
            "checkpoint_every": self.eval_every,
            # every checkpoint stays until it is uploaded (each is promotable)
            "keep_checkpoints": self.steps // self.eval_every + 1,
            "validation_clips": self.validation_clips,
        }
        if self.validation_prompts:
            extra["eval_prompts"] = self.validation_prompts
            extra["eval_previews"] = len(self.validation_prompts)
        return extra


def plan_finetune(store: ObjectStore, ref: ProjectRef, req: FinetuneCreate) -> FinetunePlan:
    """The training run a request becomes, or InvalidInput saying what to change."""
    if req.validation_file_ids:
        raise InvalidInput(
            "validation_file_ids: a separate validation zip is not supported yet (loraforge "
            "measures validation loss on held-out videos, which a validation zip has none of); "
            "leave it out and set hyper_parameters.split / max_split_val_dataset_sample"
        )
    files = []
    for fid in dict.fromkeys(req.training_file_ids):
        try:
            files.append(get_file(store, ref, fid))
        except NotFound as e:
            raise InvalidInput(f"training_file_ids: {e}") from None
    modes = {f.mode for f in files}
    if len(modes) > 1:
        raise InvalidInput("training_file_ids mix i2v and kf2v zips; one fine-tune trains one kind")
    mode = modes.pop()
    preset = PRESETS.get(req.model)
    want = MODE_VARIANT[mode]
    fit = sorted(p.name for p in PRESETS.values() if p.family == "wan" and p.variant == want)
    if preset is None or preset.family != "wan" or preset.variant != want:
        raise InvalidInput(
            f"model {req.model!r}: the {mode} zip(s) train a Wan {want} preset; use one of "
            f"{', '.join(fit)}" + ("" if preset is not None else " (no such preset)")
        )
    dataset_id = (
        files[0].dataset_id
        if len(files) == 1
        else merge_datasets(store, ref, [f.dataset_id for f in files])
    )
    clips = [c.clip_id for c in read_dataset(store, ref, dataset_id).clips]
    hp = req.hyper_parameters
    n = len(clips)
    n_val = validation_count(n, hp.split, hp.max_split_val_dataset_sample)
    if hp.split < 1 and n >= 2:
        n_val = max(1, n_val)  # the trainer's rule: one held-out clip at least (config.py)
    # spread over the set, as exports/wan.py splits: every k-th sample validates
    val = [clips[i] for i in range(0, n, max(1, n // n_val))][:n_val] if n_val else []
    n_train = n - len(val)
    per_epoch = math.ceil(n_train / hp.batch_size)
    steps = hp.n_epochs * per_epoch
    # seed 004's minimum is about real weights; a tiny preset (random weights: tests, demos)
    # is exempt, as the trainer's own warning is (config.py: MIN_REAL_STEPS): 800 tiny steps
    # took minutes on a loaded 2-core CI machine (50 steps with setup: 200 s)
    if steps < MIN_STEPS and not preset.tiny:
        need = math.ceil(MIN_STEPS / per_epoch)
        raise InvalidInput(
            f"hyper_parameters.n_epochs: {hp.n_epochs} epochs x ceil({n_train} training samples "
            f"/ batch_size {hp.batch_size}) = {steps} steps, under the {MIN_STEPS}-step minimum "
            f"(seed 004: steps >= {MIN_STEPS}); use n_epochs >= {need}"
        )
    eval_every = min(steps, hp.eval_epochs * per_epoch)
    side = max(16, math.isqrt(hp.max_pixels) // 16 * 16)
    texts = CaptionReviewStore(store, ref, dataset_id).texts() if val else {}
    # the trainer's limits on preview prompts (checkpoints.py: MAX_PROMPTS, MAX_PROMPT_CHARS)
    prompts = [texts[c][:500] for c in val if texts.get(c)][:16]
    return FinetunePlan(
        req.model,
        dataset_id,
        mode,
        n,
        n_train,
        val,
        per_epoch,
        steps,
        eval_every,
        side,
        files[0].trigger,
        prompts,
    )


def merge_datasets(store: ObjectStore, ref: ProjectRef, dataset_ids: list[str]) -> str:
    """One dataset of several uploaded zips' (their clips and captions; committed last)."""
    digest = hashlib.sha256("\0".join(sorted(dataset_ids)).encode()).hexdigest()
    merged = f"ftm-{digest[:20]}"
    if store.stat(Bucket.DATASETS, dataset_layout.record_key(ref, merged)) is not None:
        return merged
    out = CaptionReviewStore(store, ref, merged)
    selected, triggers = [], []
    for i, ds in enumerate(sorted(dataset_ids)):
        d = read_dataset(store, ref, ds)
        src = CaptionReviewStore(store, ref, ds)
        triggers.append((src.load_run() or {}).get("trigger", ""))
        for c in d.clips:
            cid = f"z{i}-{c.clip_id}"
            rec = src.require(c.clip_id).model_copy(update={"clip_id": cid, "dataset_id": merged})
            store.put_json(Bucket.DATASETS, out.key(cid), rec.model_dump(mode="json"))
            selected.append({"clip_id": cid, "key": c.key, "keyframe_keys": c.keyframe_keys})
    trigger = triggers[0] if len(set(triggers)) == 1 else ""
    out.save_run(
        {
            "trigger": trigger,
            "lora_type": "effect",
            "source": "fine-tune zips",
            "merged": sorted(dataset_ids),
        }
    )
    store.put_json(
        Bucket.DATASETS,
        dataset_layout.record_key(ref, merged),
        DatasetRecord.model_validate(
            {
                "id": merged,
                "lora_type": "effect",
                "selected": selected,
                "source": {"kind": "fine-tune zips", "datasets": sorted(dataset_ids)},
            }
        ).dump(),
    )
    return merged


class FinetuneJob(BaseModel):
    """What the compat API keeps of a fine-tune beside its training run."""

    job_id: str
    model: str
    finetuned_output: str
    training_file_ids: list[str]
    validation_file_ids: list[str] = Field(default_factory=list)
    training_type: str = "efficient_sft"
    hyper_parameters: dict[str, Any]
    dataset_id: str
    steps: int
    train_samples: int
    validation_samples: int
    created_at: datetime = Field(default_factory=now)


def finetuned_output(job_id: str) -> str:
    """The library name a fine-tune's LoRA gets (a slug): `ft-<job id>`."""
    name = f"{FINETUNE_PREFIX}{job_id}"
    if name != name.lower() or len(name) > 63:  # job ids are j<hex> / r<hex>: never happens
        raise InvalidInput(f"job id {job_id!r} cannot name a LoRA")
    return layout.validate_name(name)


def save_job(store: ObjectStore, ref: ProjectRef, job: FinetuneJob) -> None:
    store.put_json(Bucket.LORAS, layout.ft_job_key(ref, job.job_id), job.model_dump(mode="json"))


def get_job(store: ObjectStore, ref: ProjectRef, job_id: str) -> FinetuneJob:
    key = layout.ft_job_key(ref, job_id)
    if store.stat(Bucket.LORAS, key) is None:
        raise NotFound(f"fine-tune job {job_id!r} not found")
    return FinetuneJob.model_validate(store.get_json(Bucket.LORAS, key))


def list_jobs(store: ObjectStore, ref: ProjectRef) -> list[FinetuneJob]:
    return sorted(
        (
            FinetuneJob.model_validate(store.get_json(Bucket.LORAS, o.key))
            for o in store.list(Bucket.LORAS, layout.ft_jobs_prefix(ref))
            if o.key.endswith(".json")
        ),
        key=lambda j: j.created_at,
        reverse=True,
    )


def usage_tokens(record: dict[str, Any] | None) -> int | None:
    """Latent tokens the denoiser trained on, from the finished run's own numbers (steps,
    batch, resolution, frames); None before the run has finished."""
    if record is None:
        return None
    a = record.get("training_args") or {}
    res = str(a.get("resolution") or "")
    w, _, h = res.partition("x")
    side2 = (
        int(w) * int(h) if h.isdigit() and w.isdigit() else int(res) ** 2 if res.isdigit() else 0
    )
    batch, frames = int(a.get("batch_size") or 1), int(a.get("frames") or 1)
    latent_frames = (max(1, frames) - 1) // FRAMES_PER_LATENT + 1
    return int(record.get("steps") or 0) * batch * latent_frames * (side2 // PIXELS_PER_TOKEN)


def ensure_output(store: ObjectStore, ref: ProjectRef, job: FinetuneJob) -> LoraVersion | None:
    """The fine-tune's LoRA in the library (`finetuned_output`, version 1 = the automatic
    pick), registered once its run has finished; None while it has not."""
    return Library(store, ref).finetune_output(job.job_id, job.finetuned_output)
