"""Seed a project the way ingest leaves it: clips made from real photos, keyframes beside
them, one manifest JSON per source; then run the curation service in-process."""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import cv2

sys.path.insert(0, str(Path(__file__).parents[2] / "unit" / "curation"))

import curation_media as M

from loraforge.ingest import layout
from loraforge.ingest.manifest import MANIFEST_VERSION, ClipEntry, SourceManifest, SourceRef
from loraforge.runtime.keys import ProjectRef
from loraforge.runtime.storage import Bucket, ObjectStore

TENANT, PROJECT = "acme", "jane"
# test clips are 480x360, 2.5 s at 8 fps: lower the size floor, sample fewer frames
OVERRIDES = {"min_short_side_px": 256, "frames_per_clip": 6}


@dataclass(frozen=True)
class LocalClip:
    clip_id: str
    source: str  # which fake source (video) it was cut from
    path: Path
    keyframe: Path


def _later(t: int):
    return M.astronaut_frame(t + 10)


CLIPS: dict[str, tuple[str, Callable]] = {
    # two sources: the astronaut alone (kept), and a mixed one with two people and a dark shot
    "ast-000": ("source-a", M.astronaut_frame),
    "ast-001": ("source-a", _later),
    "two-000": ("source-b", M.two_people_frame),
    "dark-001": ("source-b", lambda t: M.darken(M.astronaut_frame(t))),
}


def make_clips(d: Path) -> list[LocalClip]:
    out = []
    for cid, (source, fn) in CLIPS.items():
        path = M.write_clip(d / f"{cid}.mp4", fn)
        kf = d / f"{cid}.kf0.jpg"
        cv2.imwrite(str(kf), fn(0))
        out.append(LocalClip(cid, source, path, kf))
    return out


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


OPTIONS_HASH = "0123abcd0123abcd"  # what ingest's options hash would be; any 16 hex digits


def clip_entry(
    clip_id: str,
    key: str,
    path: Path,
    keyframe_keys: list[str],
    *,
    kind: Literal["clip", "photo"] = "clip",
    frames: int = 20,
    fps: float = float(M.FPS),
    size: tuple[int, int] = (M.W, M.H),
) -> ClipEntry:
    """A manifest's entry for a clip (or photo) stored at `key` from the local file `path`."""
    return ClipEntry(
        clip_id=clip_id,
        kind=kind,
        key=key,
        size=path.stat().st_size,
        keyframes=dict(zip(("first", "middle", "last"), keyframe_keys, strict=False))
        if kind == "clip"
        else {"image": key},
        keyframe_keys=keyframe_keys,
        duration=frames / fps if fps else 0.0,
        shot_index=0,
        source_start=0.0,
        source_end=frames / fps if fps else 0.0,
        source_start_frame=0,
        source_end_frame=frames,
        frames=frames,
        fps=fps,
        width=size[0],
        height=size[1],
        sha256=_sha(path),
    )


def put_manifest(
    store: ObjectStore,
    tenant: str,
    project: str,
    source_sha256: str,
    kind: Literal["video", "photo"],
    clips: list[ClipEntry],
) -> str:
    """Store the source's manifest as ingest writes it (ingest/manifest.py); returns its key."""
    ref = ProjectRef(tenant, project)
    name = f"{source_sha256}.{'mp4' if kind == 'video' else 'png'}"
    manifest = SourceManifest(
        manifest_version=MANIFEST_VERSION,
        tenant=tenant,
        project=project,
        source_sha256=source_sha256,
        source=SourceRef(key=ref.key("sources", name), name=name, submitted_as=name),
        options_hash=OPTIONS_HASH,
        options={},
        clips_prefix=layout.clips_prefix(ref, source_sha256),
        job_id="seeded",
        created_at=datetime.now(UTC),
        kind=kind,
        format="mp4" if kind == "video" else "png",
        clips=clips,
    )
    key = layout.manifest_key(ref, source_sha256, OPTIONS_HASH)
    store.put_json(Bucket.CLIPS, key, manifest.dump())
    return key


def seed_project(
    store: ObjectStore, clips: list[LocalClip], tenant: str = TENANT, project: str = PROJECT
) -> dict[str, str]:
    """Upload clips + keyframes + one manifest per source in ingest's layout; clip id -> key."""
    keys: dict[str, str] = {}
    by_source: dict[str, list[ClipEntry]] = {}
    for c in clips:
        sha = hashlib.sha256(c.source.encode()).hexdigest()
        base = layout.clips_prefix(ProjectRef(tenant, project), sha)
        key = f"{base}{c.clip_id}.mp4"
        kf_key = f"{base}{c.clip_id}.kf0.jpg"
        store.put_file(Bucket.CLIPS, key, c.path, content_type="video/mp4")
        store.put_file(Bucket.CLIPS, kf_key, c.keyframe, content_type="image/jpeg")
        keys[c.clip_id] = key
        by_source.setdefault(sha, []).append(clip_entry(c.clip_id, key, c.path, [kf_key]))
    for sha, entries in by_source.items():
        put_manifest(store, tenant, project, sha, "video", entries)
    return keys
