"""Per-type dataset builders: what a LoRA type's dataset is made of, after curation selected clips.

Curation measures, decides and selects clips under the type's policy (`pipeline.curate`). A
builder then turns the selection into the type's training items: a background set gets frames
with every person masked out and filled in, a character set the subject isolated from other
people, a style set full frames without titles and off-style outliers, and so on. Types without
a builder train on the selected clips as they are.

The interface (stable; H5/H6 and later types build on it):

    class MyBuilder:                      # one per LoRA type (and media kind, see REGISTRY)
        lora_type = "background"
        Options = MyOptions               # pydantic model (extra="forbid") or None
        def build(self, ctx: BuildContext) -> BuildResult: ...

- `ctx.result` is the CurationResult: every clip's metrics (`ClipMetrics`) and decision, and
  `ctx.selected` the selected clips' results in pick order. Builders never change decisions;
  they decide about their own items (frames, crops) and say why in `Dropped`.
- `ctx.frames(clip_id, indices)` decodes frames of a clip at its own resolution (BGR uint8),
  downloading the clip on first use; `ctx.sampled(clip_id)` are the frame indices curation
  measured (the best frame is `metrics.best_frame_index`). Photos have one frame, index 0.
- `ctx.people` (MediaPipe person detector / segmenter / pose, people.py) and `ctx.backend` (the
  face backend, faces.py) are the models curation already loaded; `ctx.references` the
  reference photos; `ctx.options` the builder's validated Options (policy.build_options);
  `ctx.models_dir` the provisioned models directory (LORAFORGE_MODELS__DIR) or None.
- A builder writes each item's file under `ctx.out_dir / ctx.item_path(clip_id, name)`
  (`derived/<clip_id>/<name>`, inside the dataset folder) and returns an `Item` naming it, with
  the evidence of its decisions (`evidence`: JSON-able, e.g. {"fill_fraction": 0.12,
  "scene_cluster": 2}). Items are the dataset: `dataset.json`'s `selected` lists them (bucket
  "datasets"), so captioning, the trainer and exports read them like clips.
- `BuildResult.dropped` names every frame/clip the builder left out, with a stable code and a
  message (`code: what (limit)`, as decision.Reason), `summary` what the report shows (clusters,
  counts), `missing` what the user could add.
- Bad options raise InvalidInput (checked at the start: `check_options`); a model the builder
  needs that is not provisioned raises ConfigurationError naming the directory to provision.

The worker calls `run_builder` between selection and commit (worker.py: `_compute`) and
`write_build` records the outcome: `build.json`, the manifest's `build` section and per-clip
rows (`derived_items`, `build_dropped`), and the report's build section.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np
from pydantic import BaseModel, ValidationError

from loraforge.curation.builders.media import read_frames
from loraforge.curation.manifest import write_manifest
from loraforge.curation.record import selection_hash
from loraforge.curation.report import write_report
from loraforge.curation.size_range import (
    SIZE_OPTIONS,
    DatasetTooSmall,
    SizeCheck,
    check_size,
    size_overrides,
)
from loraforge.ingest.proxy import sample_indices
from loraforge.runtime.errors import InvalidInput
from loraforge.runtime.keys import validate_key_part

if TYPE_CHECKING:
    from loraforge.curation.faces import FaceBackend
    from loraforge.curation.metrics import ClipMetrics
    from loraforge.curation.people import PeopleDetector
    from loraforge.curation.pipeline import ClipResult, CurationResult
    from loraforge.curation.policy import CurationPolicy

BUILD_RECORD = "build.json"
DERIVED = "derived"  # derived/<clip_id>/<name> inside the dataset folder
ItemKind = Literal["image", "video"]

# lora_type, or "<lora_type>:<kind>" (kind: video | photo, the dataset's media) -> the builder
# class as "module:Class". A module that does not exist yet means "no builder": the type trains
# on the selected clips as they are. Looked up kind-specific first, then by type.
REGISTRY: dict[str, str] = {
    "character": "loraforge.curation.builders.character:CharacterBuilder",
    "background": "loraforge.curation.builders.background:BackgroundBuilder",
    "style": "loraforge.curation.builders.style:StyleBuilder",
    "pose": "loraforge.curation.builders.pose:PoseBuilder",  # H5
    "expression": "loraforge.curation.builders.expression:ExpressionBuilder",  # H5
    "lighting": "loraforge.curation.builders.lighting:LightingBuilder",  # H5
    "character:photo": "loraforge.curation.builders.photos:PhotoBuilder",  # H6 (seed 002)
}


@dataclass
class Item:
    """One training item the builder produced (or kept): a derived image/clip, or the source
    clip itself (`path` None: the clip's own object is the item)."""

    item_id: str  # unique in the dataset; a key part (letters, digits, - _ .)
    clip_id: str  # the clip it came from
    path: str | None  # relative to out_dir (derived/<clip_id>/<name>), None: the clip itself
    kind: ItemKind = "image"
    frame_index: int | None = None  # the clip's frame it was made from (images)
    variant: str = "full"  # e.g. full | subject_crop | cutout | masked | inpainted
    evidence: dict[str, Any] = field(default_factory=dict)  # measured values behind the decision

    def __post_init__(self) -> None:
        validate_key_part(self.item_id)


@dataclass
class Dropped:
    """A frame or clip the builder left out, and why (code: stable id; message: what, limit)."""

    clip_id: str
    code: str
    message: str
    frame_index: int | None = None
    evidence: dict[str, Any] = field(default_factory=dict)


@dataclass
class BuildResult:
    items: list[Item]
    dropped: list[Dropped] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)  # clusters, counts: report + record
    missing: list[str] = field(default_factory=list)  # what more input would help, as sentences

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for d in self.dropped:
            out[d.code] = out.get(d.code, 0) + 1
        return dict(sorted(out.items(), key=lambda kv: (-kv[1], kv[0])))


def apply_size_range(
    build: BuildResult,
    lora_type: str,
    item_kind: str,
    overrides: dict[str, Any] | None = None,
    curation_rejections: dict[str, int] | None = None,
) -> SizeCheck | None:
    """Check a builder's result (items best first) against size_range.py's range, in
    place: above the maximum the lowest ranked items become `Dropped` (code `over_maximum`);
    away from the recommended range the message joins `missing`; the check goes to
    `summary["size_range"]`. Below the minimum raises DatasetTooSmall with the message and what
    was left out (curation's rejection counts, the builder's), since no report is written then."""
    check = check_size(lora_type, item_kind, len(build.items), overrides)
    if check is None:
        return None
    if check.status == "below_minimum":
        why = [
            f"{where}: " + ", ".join(f"{code} {n}" for code, n in counts.items())
            for where, counts in (
                ("rejected by curation", curation_rejections or {}),
                ("left out by the builder", build.counts()),
            )
            if counts
        ]
        raise DatasetTooSmall(
            f"dataset too small: {check.message}" + (f" ({'; '.join(why)})" if why else "")
        )
    if check.keep < len(build.items):
        for it in build.items[check.keep :]:
            build.dropped.append(
                Dropped(
                    it.clip_id,
                    "over_maximum",
                    f"over_maximum: ranked below the best {check.keep} "
                    f"(the {lora_type} maximum, {check.range.source})",
                    it.frame_index,
                    {"item_id": it.item_id},
                )
            )
        del build.items[check.keep :]
    if check.status != "recommended":
        build.missing.append(check.message)
    build.summary["size_range"] = check.as_dict()
    return check


@dataclass
class BuildContext:
    policy: CurationPolicy
    result: CurationResult
    out_dir: Path
    people: PeopleDetector
    backend: FaceBackend | None
    clip_path: Callable[[str], Path]  # clip id -> local file of the clip (downloaded on demand)
    references: Sequence[Path] = ()
    options: Any = None  # the builder's Options instance (None when it has none)
    models_dir: Path | None = None

    @property
    def selected(self) -> list[ClipResult]:
        by_id = {c.metrics.clip_id: c for c in self.result.clips}
        return [by_id[cid] for cid in self.result.selection.selected]

    def metrics(self, clip_id: str) -> ClipMetrics:
        return self.result.clip(clip_id).metrics

    def sampled(self, clip_id: str) -> list[int]:
        """The frame indices curation measured on this clip (what the metrics describe)."""
        m = self.metrics(clip_id)
        if m.kind == "photo":
            return [0]
        count = max(1, round(m.duration_s * m.fps)) if m.fps else self.policy.frames_per_clip
        return sample_indices(count, self.policy.frames_per_clip)

    def frames(self, clip_id: str, indices: Sequence[int]) -> list[tuple[int, np.ndarray]]:
        """(index, BGR image at the clip's own size) for each readable wanted index."""
        return read_frames(self.clip_path(clip_id), indices)

    def item_path(self, clip_id: str, name: str) -> str:
        validate_key_part(clip_id)
        validate_key_part(name)
        return f"{DERIVED}/{clip_id}/{name}"


class DatasetBuilder(Protocol):
    lora_type: str
    Options: type[BaseModel] | None

    def build(self, ctx: BuildContext) -> BuildResult: ...


def _spec(lora_type: str, kind: str) -> str | None:
    for name in (f"{lora_type}:{kind}", lora_type):
        spec = REGISTRY.get(name)
        if spec and importlib.util.find_spec(spec.split(":")[0]) is not None:
            return spec
    return None


def builder_for(lora_type: str, kind: str = "video") -> DatasetBuilder | None:
    """The builder of a type (and media kind), or None when the type has none. A builder whose
    module exists but fails to import raises: that is a bug, not a type without a builder."""
    spec = _spec(lora_type, kind)
    if spec is None:
        return None
    module, cls = spec.split(":")
    builder: DatasetBuilder = getattr(importlib.import_module(module), cls)()
    return builder


def parse_options(builder: DatasetBuilder | None, lora_type: str, options: dict[str, Any]) -> Any:
    """The builder's Options from policy.build_options; InvalidInput naming what to fix."""
    # the dataset's size bounds (min_items, max_items: size_range.py) are every builder's
    size_overrides(options or {})
    options = {k: v for k, v in (options or {}).items() if k not in SIZE_OPTIONS}
    model = getattr(builder, "Options", None) if builder is not None else None
    if model is None:
        if options:
            raise InvalidInput(
                f"build_options {sorted(options)} given, but the {lora_type} type "
                "has no dataset builder options; remove them"
            )
        return None
    try:
        return model.model_validate(options or {})
    except ValidationError as exc:
        fields = sorted(model.model_fields)
        raise InvalidInput(
            f"invalid build_options for the {lora_type} builder: {exc}; "
            f"known options: {', '.join(fields)}"
        ) from None


def check_options(policy: CurationPolicy) -> None:
    """Refuse bad builder options at the start of a job: they must suit the type's video or
    its photo builder (a type may have one for each, e.g. character:photo, with other options;
    which one runs depends on the media, known only later)."""
    errors: list[InvalidInput] = []
    for kind in ("video", "photo"):
        builder = builder_for(policy.lora_type, kind)
        try:
            parse_options(builder, policy.lora_type, dict(policy.build_options))
            return
        except InvalidInput as exc:
            # the message of a builder that has options says which ones it knows
            errors.insert(0 if getattr(builder, "Options", None) is not None else len(errors), exc)
    raise errors[0]


def run_builder(
    ctx_factory: Callable[[Any], BuildContext], policy: CurationPolicy, kind: str
) -> BuildResult | None:
    """Build the type's items, or None when the type has no builder (the clips are the items).
    `ctx_factory(options)` makes the context once the options are parsed."""
    builder = builder_for(policy.lora_type, kind)
    if builder is None:
        return None
    options = parse_options(builder, policy.lora_type, dict(policy.build_options))
    ctx = ctx_factory(options)
    build = builder.build(ctx)
    ids = [i.item_id for i in build.items]
    if len(ids) != len(set(ids)):
        raise RuntimeError(f"{policy.lora_type} builder returned duplicate item ids")
    for item in build.items:
        if item.path is not None and not (ctx.out_dir / item.path).is_file():
            raise RuntimeError(f"{policy.lora_type} builder named {item.path} but did not write it")
    return build


def build_dataset(
    result: CurationResult,
    out_dir: Path,
    people: PeopleDetector,
    backend: FaceBackend | None,
    clip_path: Callable[[str], Path],
    references: Sequence[Path] = (),
    models_dir: Path | None = None,
) -> BuildResult | None:
    """Run the type's builder on a curation result and record it in `out_dir` (the folder
    pipeline.curate wrote the manifest and report to). None: the type has no builder. What the
    worker calls; tests call it with `clip_path` pointing at local files."""
    policy = result.policy
    kind = "video" if any(c.metrics.kind == "video" for c in result.clips) else "photo"
    build = run_builder(
        lambda options: BuildContext(
            policy,
            result,
            Path(out_dir),
            people,
            backend,
            clip_path,
            references,
            options,
            models_dir,
        ),
        policy,
        kind,
    )
    if build is not None:
        write_build(build, result, Path(out_dir))
    return build


def write_build(build: BuildResult, result: CurationResult, out_dir: Path) -> Path:
    """build.json (every item and drop with its evidence, the summary) and the manifest's build
    section + per-clip `derived_items` / `build_dropped` (manifest.json and .parquet rewritten
    with them), and the report's build section."""
    doc = build_doc(build, result)
    path = Path(out_dir) / BUILD_RECORD
    path.write_text(json.dumps(doc, indent=1))
    result.build = doc
    write_manifest(result, Path(out_dir))
    write_report(result, Path(out_dir))
    return path


def _plain(o: Any) -> Any:
    """numpy scalars and arrays in builders' evidence, as JSON values."""
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"{type(o).__name__} in a builder's evidence is not JSON-able")


def build_doc(build: BuildResult, result: CurationResult) -> dict[str, Any]:
    """Plain JSON values only: it goes into build.json, the manifest and dataset.json."""
    doc: dict[str, Any] = json.loads(json.dumps(_build_doc(build, result), default=_plain))
    return doc


def _build_doc(build: BuildResult, result: CurationResult) -> dict[str, Any]:
    return {
        "lora_type": result.policy.lora_type,
        "items": [asdict(i) for i in build.items],
        "dropped": [asdict(d) for d in build.dropped],
        "dropped_counts": build.counts(),
        "summary": build.summary,
        "missing": build.missing,
    }


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def apply_to_record(
    record: dict[str, Any],
    build: BuildResult,
    out_dir: Path,
    prefix: str,
    clips: dict[str, dict[str, Any]],
) -> None:
    """dataset.json: `selected` becomes the builder's items. A derived item's object is in the
    datasets bucket under the dataset (`bucket: "datasets"`, its key and keyframe_keys there);
    an item that is a clip itself keeps the clip's entry. `source_clip_id` names the clip an
    item came from (its metrics row in the manifest). The curation's own pick stays as
    `selected_clips`. `clips`: clip id -> its record entry (clip_id, key, sha256, source_id,
    keyframe_keys) for every clip of the curation."""
    items = []
    for it in build.items:
        src = clips.get(it.clip_id, {})
        if it.path is None:
            entry = {**src, "clip_id": it.item_id, "bucket": "clips"}
        else:
            key = f"{prefix}/{it.path}"
            entry = {
                "clip_id": it.item_id,
                "key": key,
                "bucket": "datasets",
                "sha256": _sha256(Path(out_dir) / it.path),
                "source_id": src.get("source_id", ""),
                "keyframe_keys": [key] if it.kind == "image" else [],
            }
        entry.update(
            source_clip_id=it.clip_id,
            kind=it.kind,
            variant=it.variant,
            frame_index=None if it.frame_index is None else int(it.frame_index),
        )
        items.append(entry)
    record["selected_clips"] = record.get("selected", [])
    record["selected"] = items
    record["counts"] = {**record.get("counts", {}), "items": len(items)}
    record["content_hash"] = selection_hash(items)
    record["missing"] = [*record.get("missing", []), *build.missing]
    record["build"] = json.loads(
        json.dumps(
            {
                "record": BUILD_RECORD,
                "items": len(items),
                "dropped_counts": build.counts(),
                "summary": build.summary,
            },
            default=_plain,
        )
    )
