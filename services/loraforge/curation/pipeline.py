"""curate(): local media in, measured + decided + selected clips out, optionally written as a
manifest and report to a folder (the service layer uploads that folder).

Order matters: identity needs every clip's embedding; duplicates are resolved only among clips
that pass every other check, so that a rejected copy never "wins" over a usable one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from loraforge.curation import identity
from loraforge.curation.decision import Decision, Reason, dataset_context, decide
from loraforge.curation.dedup import duplicate_groups
from loraforge.curation.faces import FaceBackend, make_backend
from loraforge.curation.frames import load_media
from loraforge.curation.manifest import write_manifest
from loraforge.curation.metrics import ClipMetrics, MeasuredClip, measure
from loraforge.curation.people import PeopleDetector
from loraforge.curation.policy import CurationPolicy
from loraforge.curation.report import write_report
from loraforge.curation.selection import Selection, select
from loraforge.curation.threads import measuring_pool, measuring_threads
from loraforge.runtime.errors import InvalidInput


@dataclass(frozen=True)
class MediaItem:
    path: Path
    clip_id: str | None = None  # default: the file stem
    source_id: str | None = None  # the original upload this clip was cut from; default: clip_id
    # ingest's analysis proxy of the clip (ingest/proxy.py): its sampled frames are read from
    # there and the clip is not decoded (then `path` need not exist unless the proxy falls short)
    analysis: Path | None = None


@dataclass
class ClipResult:
    metrics: ClipMetrics
    decision: Decision
    selected: bool = False
    thumbnail: np.ndarray | None = field(default=None, repr=False)


@dataclass
class CurationResult:
    clips: list[ClipResult]
    selection: Selection
    policy: CurationPolicy
    backend: str
    identity_threshold: float | None
    outputs: dict[str, Path] = field(default_factory=dict)
    # the type's dataset builder's record (builders.build_doc), once it ran: the manifest and
    # the report add it when present
    build: dict[str, Any] | None = None

    def clip(self, clip_id: str) -> ClipResult:
        for c in self.clips:
            if c.metrics.clip_id == clip_id:
                return c
        raise KeyError(clip_id)

    def rejection_counts(self) -> dict[str, int]:
        counts = Counter(code for c in self.clips for code in c.decision.reason_codes)
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


@dataclass(frozen=True)
class _Input:
    """A MediaItem with its defaults applied: the ids measure records."""

    path: Path
    clip_id: str
    source_id: str
    analysis: Path | None


def _items(items: Sequence[MediaItem | Path | str]) -> list[_Input]:
    out: list[_Input] = []
    seen: set[str] = set()
    for given in items:
        it = given if isinstance(given, MediaItem) else MediaItem(Path(given))
        cid = it.clip_id or Path(it.path).stem
        if cid in seen:
            raise InvalidInput(f"two inputs share the clip id {cid!r}; give each a unique clip_id")
        seen.add(cid)
        out.append(_Input(Path(it.path), cid, it.source_id or cid, it.analysis))
    return out


def measure_all(
    items: Sequence[MediaItem | Path | str],
    policy: CurationPolicy,
    backend: FaceBackend,
    people: PeopleDetector | None = None,
    workers: int | None = None,
) -> list[MeasuredClip]:
    people = people or PeopleDetector()

    def one(it: _Input) -> MeasuredClip:
        media = load_media(it.path, policy.frames_per_clip, it.analysis)
        return measure(
            media,
            backend,
            people,
            clip_id=it.clip_id,
            source_id=it.source_id,
            embed_frames=policy.embed_frames,
            people_frames=policy.people_frames,
            body_keypoints=policy.require_full_body,  # pose datasets: keypoints of the body
            light_on=policy.light_on,  # what quality_score ranks on: the subject or the frame
        )

    # several clips in flight (measuring_threads); results keep input order, so the outcome
    # does not depend on scheduling
    workers = max(1, workers or measuring_threads())
    if workers == 1:
        return [one(it) for it in _items(items)]
    return list(measuring_pool(workers).map(one, _items(items)))


def curate(
    items: Sequence[MediaItem | Path | str],
    policy: CurationPolicy | None = None,
    *,
    references: Sequence[Path | str] = (),
    backend: FaceBackend | None = None,
    people: PeopleDetector | None = None,
    out_dir: Path | str | None = None,
    measured: Sequence[MeasuredClip] | None = None,
    training_fps: Mapping[str, float] | None = None,
) -> CurationResult:
    """`measured`: clips measured already (by measure_all, here or on other workers: the
    service's per-clip measure tasks); `items` is then not read. `training_fps`: clip id -> the
    rate ingest cut for (Wan's 16); slower clips are flagged `low_frame_rate`."""
    policy = policy or CurationPolicy()
    backend = backend or make_backend("dlib")
    if not items and not measured:
        raise InvalidInput("no clips or photos to curate; give at least one file")
    if measured is None:
        measured = measure_all(items, policy, backend, people)
    metrics = [mc.metrics for mc in measured]

    threshold = policy.identity_max_distance or backend.same_person_distance
    ref = (
        identity.reference_embedding([Path(r) for r in references], backend) if references else None
    )
    ids = identity.assign(
        metrics, threshold, ref, policy.identity_cluster if policy.face_type else None
    )
    for m in metrics:
        res = ids[m.clip_id]
        m.identity_distance, m.identity_match, m.identity_cluster = (
            res.distance,
            res.match,
            res.cluster,
        )

    # what a decision needs from the other clips (effect types: the majority motion direction)
    ctx = dataset_context(metrics, policy)
    first = {
        m.clip_id: decide(m, policy, identity_threshold=threshold, context=ctx) for m in metrics
    }
    dup_max = policy.duplicate_max_distance or backend.duplicate_distance
    dups = duplicate_groups(
        [m for m in metrics if first[m.clip_id].keep], policy.duplicate_max_phash, dup_max
    )
    results = []
    for mc in measured:
        m = mc.metrics
        d = (
            decide(
                m, policy, identity_threshold=threshold, duplicate_of=dups[m.clip_id], context=ctx
            )
            if m.clip_id in dups
            else first[m.clip_id]
        )
        target = (training_fps or {}).get(m.clip_id)
        if target and m.kind == "video" and 0 < m.fps < target * (1 - LOW_RATE_TOLERANCE):
            d.flags.append(low_frame_rate(m.fps, target))
        results.append(ClipResult(m, d, False, mc.thumbnail))
    results.sort(key=lambda c: c.metrics.clip_id)

    kinds = {m.kind for m in metrics}
    selection = select(
        [c.metrics for c in results if c.decision.keep],
        policy,
        "video" if "video" in kinds else "photo",
    )
    chosen = set(selection.selected)
    for c in results:
        c.selected = c.metrics.clip_id in chosen
    result = CurationResult(results, selection, policy, backend.name, threshold)
    if out_dir is not None:
        write_outputs(result, Path(out_dir))
    return result


# as ingest's plan.clip_rate: within 1 % of the training rate counts as that rate
LOW_RATE_TOLERANCE = 0.01


def low_frame_rate(fps: float, target: float) -> Reason:
    """A flag, not a rejection: ingest keeps a slow source's own rate (no repeated frames), so
    trained at `target` its motion plays target/fps times faster."""
    return Reason(
        "low_frame_rate",
        f"{fps:g} fps source, below the {target:g} fps training rate: the clip keeps its "
        f"own rate (no repeated frames), so its motion plays {target / fps:.1f}x faster "
        f"when trained; prefer 24-30 fps footage",
    )


def write_outputs(result: CurationResult, out_dir: Path) -> dict[str, Path]:
    pq_path, json_path = write_manifest(result, out_dir)
    html_path = write_report(result, out_dir)
    result.outputs = {
        "manifest_parquet": pq_path,
        "manifest_json": json_path,
        "report_html": html_path,
    }
    return result.outputs
