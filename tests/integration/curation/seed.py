"""Seed a project the way ingest leaves it: clips made from real photos, keyframes beside
them, one manifest JSON per source; then run the curation service in-process."""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2

sys.path.insert(0, str(Path(__file__).parents[2] / "unit" / "curation"))

import curation_media as M

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


def seed_project(
    store: ObjectStore, clips: list[LocalClip], tenant: str = TENANT, project: str = PROJECT
) -> dict[str, str]:
    """Upload clips + keyframes + one manifest per source in ingest's layout; clip id -> key."""
    keys: dict[str, str] = {}
    by_source: dict[str, list[dict]] = {}
    for c in clips:
        sha16 = hashlib.sha256(c.source.encode()).hexdigest()[:16]
        base = f"{tenant}/{project}/clips/{sha16}"
        key = f"{base}/{c.clip_id}.mp4"
        kf_key = f"{base}/{c.clip_id}.kf0.jpg"
        store.put_file(Bucket.CLIPS, key, c.path, content_type="video/mp4")
        store.put_file(Bucket.CLIPS, kf_key, c.keyframe, content_type="image/jpeg")
        keys[c.clip_id] = key
        by_source.setdefault(sha16, []).append(
            {
                "clip_id": c.clip_id,
                "key": key,
                "keyframe_keys": [kf_key],
                "sha256": _sha(c.path),
                "width": M.W,
                "height": M.H,
                "fps": M.FPS,
                "frames": 20,
            }
        )
    for sha16, entries in by_source.items():
        # as services/loraforge/ingest/worker.py writes it: beside the clips, named by the options hash
        store.put_json(
            Bucket.CLIPS,
            f"{tenant}/{project}/clips/{sha16}/manifest-0123abcd.json",
            {
                "source_sha256": sha16 * 4,
                "kind": "video",
                "clips": entries,
                "skipped": [],
            },
        )
    return keys
