"""Curation as a user sees it, on 720p H.264 footage built from real photos: `ingest`, then
`curate`, against ffmpeg decoding the same source files, all in the same run.

    .venv/bin/python bench/curation.py [--seconds 12] [--repeat 3] [--profile] [--services]
        [--dump F | --compare F]

A speed change that must not change what curation measures: run with `--dump before.json` on
the old code, then `--compare before.json` on the new one.

Sources (each `--seconds` long, two shots with a hard cut, 1280x720 H.264 as a camera or a
platform gives it: camera noise, film grain on the dark scene, 5 Mbps; see `camera_x264`):
- interview: the astronaut (Eileen Collins) close up, slow pan, then a wider framing, 30 fps;
- film_dark: the same face lit by a spot in a dark room (low-key, film grain), 24 fps;
- hopper: Grace Hopper's portrait, pan and slow zoom, 25 fps;
- crowd: five people side by side at different sizes (both faces, mirrored and rescaled), 30 fps;
- street: faceless photos (coffee, rocket), pans, 30 fps.

Timed: (1) `ffmpeg -i SRC -f null -` on every source (the decode floor, all threads), and on
the same scenes encoded clean (no noise, crf 20: 0.4-1 Mbps, a floor no real file gives);
(2) ingest: `process_source` per source, as the ingest job runs it (probe, shot detection, cut,
keyframes, analysis proxies); (3) curate: `curate()` on the clips it produced, reading each
clip's analysis proxy as the curation service does (faces, people, quality, overlays, motion,
identity, decision, selection, report files). Also (4) curate decoding the clips instead of
reading proxies, to show what the proxies save. (1) and (3) run in turn `--repeat` times and
their medians are compared. Ratios are footage seconds per wall second over the decode floor's:
curation >= 1.0 means curating costs less than decoding the footage once.
Each step's CPU seconds (this process and its children: ffmpeg) are printed too, with the same
ratio on CPU time: on a machine shared with other work, wall times stretch with the load while
CPU time does not, so that column is the steadier comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import dataclasses
import hashlib
import json
import os
import platform
import pstats
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import cv2
import grpc
import matplotlib.cbook
import numpy as np
import skimage.data

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "unit" / "ingest"))
sys.path.insert(0, str(ROOT / "tests" / "unit" / "curation"))

import people_media as PM  # noqa: E402
from footage import encode  # noqa: E402

from loraforge.curation.faces import make_backend  # noqa: E402
from loraforge.curation.main import mount as curation_mount  # noqa: E402
from loraforge.curation.people import PeopleDetector  # noqa: E402
from loraforge.curation.pipeline import MediaItem, curate  # noqa: E402
from loraforge.curation.policy import CurationPolicy  # noqa: E402
from loraforge.ingest import IngestOptions, layout, process_source  # noqa: E402
from loraforge.ingest.main import mount as ingest_mount  # noqa: E402
from loraforge.ingest.tools import MediaTools  # noqa: E402
from loraforge.runtime.host import ServiceProcess  # noqa: E402
from loraforge.runtime.jobs import new_job_id  # noqa: E402
from loraforge.runtime.keys import ProjectRef  # noqa: E402
from loraforge.runtime.settings import NatsSettings, S3Settings, Settings  # noqa: E402
from loraforge.runtime.storage import Bucket, ObjectStore  # noqa: E402
from loraforge.stack.binaries import (  # noqa: E402
    NatsLaunch,
    WeedLaunch,
    free_port,
    free_port_block,
    stop_process,
    wait_for_port,
    write_s3_identities,
)
from loraforge.v1 import (  # noqa: E402
    common_pb2,
    curation_pb2,
    curation_pb2_grpc,
    ingest_pb2,
    ingest_pb2_grpc,
)

W, H = 1280, 720
T = TypeVar("T")
# The sources are encoded as footage users bring is: filmed by a camera, so every frame carries
# its noise (sigma ~2 grey levels; film grain ~6 on the dark scene), and encoded at a camera's or
# a platform's bitrate, here YouTube's recommended upload for 720p at 24-30 fps (H.264 High,
# 2 B-frames, a closed GOP of half the frame rate, 5 Mbps VBR; support.google.com/youtube/answer/
# 1722171). Such files decode at ~13x real time on the 2-core bench machine, as the real
# 720p footage did (2 min in 9 s). The same scenes encoded clean at crf 20 come out at 0.4-1 Mbps
# and decode ~2.6x faster than any real 720p file: that floor is printed too (`clean`).
CAMERA_NOISE, FILM_GRAIN = 4, 10  # ffmpeg noise strengths: luma sigma 2.2 and 6.3 grey levels
CLEAN_X264 = ["-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-pix_fmt", "yuv420p"]


def camera_x264(fps: float) -> list[str]:
    return [
        *("-c:v", "libx264", "-preset", "veryfast", "-profile:v", "high", "-bf", "2"),
        *("-g", str(max(1, round(fps / 2))), "-b:v", "5M", "-maxrate", "7.5M", "-bufsize", "10M"),
        # with a bitrate target, threaded x264 (frame or slice threads) writes other bytes each
        # run as the frames' timing varies; one thread gives the same file every run, which
        # --dump/--compare rest on
        *("-threads", "1", "-pix_fmt", "yuv420p"),
    ]


def _rgb(img: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(img[..., :3])


def astronaut() -> np.ndarray:
    return _rgb(skimage.data.astronaut())


def hopper() -> np.ndarray:
    return _rgb(
        cv2.cvtColor(
            cv2.imread(str(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))),
            cv2.COLOR_BGR2RGB,
        )
    )


def window(img: np.ndarray, cx: float, cy: float, scale: float) -> np.ndarray:
    """A 16:9 window of `img` centred at (cx, cy) (fractions), `scale` of the largest one."""
    ih, iw = img.shape[:2]
    cw = min(iw, int(ih * W / H)) * scale
    ch = cw * H / W
    x = int(np.clip(cx * iw - cw / 2, 0, iw - cw))
    y = int(np.clip(cy * ih - ch / 2, 0, ih - ch))
    return cv2.resize(img[y : y + int(ch), x : x + int(cw)], (W, H), interpolation=cv2.INTER_AREA)


def spot(frame: np.ndarray, cx: float, cy: float) -> np.ndarray:
    """Low-key light: a soft spot on the face, the room falling off to near black (the grain
    comes with the encode: FILM_GRAIN)."""
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    d2 = ((xx - cx * W) / (0.22 * W)) ** 2 + ((yy - cy * H) / (0.35 * H)) ** 2
    gain = 0.12 + 0.95 * np.exp(-d2)
    out = frame.astype(np.float32) * gain[..., None] * 0.85
    return np.clip(out, 0, 255).astype(np.uint8)


def crowd_frame(t: float) -> np.ndarray:
    # the same scene the people tests count (tests/unit/curation/people_media.py), in RGB
    return cv2.cvtColor(PM.crowd(t, W, H), cv2.COLOR_BGR2RGB)


def sources(seconds: float) -> dict[str, tuple[float, callable]]:
    half = seconds / 2
    a, h = astronaut(), hopper()
    coffee, rocket = _rgb(skimage.data.coffee()), _rgb(skimage.data.rocket())

    def interview(t):
        return (
            window(a, 0.42 + 0.05 * t / half, 0.3, 0.55)
            if t < half
            else window(a, 0.5 - 0.02 * (t - half), 0.45, 0.9)
        )

    def film_dark(t):
        f = (
            window(a, 0.44 + 0.03 * t / seconds, 0.3, 0.6)
            if t < half
            else window(a, 0.5, 0.4, 0.85)
        )
        return spot(f, 0.5, 0.45 if t < half else 0.4)

    def grace(t):
        return (
            window(h, 0.45 + 0.1 * t / half, 0.35, 0.75)
            if t < half
            else window(h, 0.5, 0.3, 0.9 - 0.2 * (t - half) / half)
        )

    def street(t):
        return (
            window(coffee, 0.3 + 0.4 * t / half, 0.5, 0.7)
            if t < half
            else window(rocket, 0.5, 0.3 + 0.3 * (t - half) / half, 0.6)
        )

    return {
        "interview": (30.0, interview),
        "film_dark": (24.0, film_dark),
        "hopper": (25.0, grace),
        "crowd": (30.0, crowd_frame),
        "street": (30.0, street),
    }


def make_sources(folder: Path, seconds: float) -> tuple[list[Path], list[Path]]:
    """Each scene as a camera file (what is ingested and curated) and encoded clean (only its
    decode is timed), from one ffmpeg that splits the frames."""
    (folder / "clean").mkdir(parents=True, exist_ok=True)
    out: tuple[list[Path], list[Path]] = ([], [])
    for name, (fps, fn) in sources(seconds).items():
        path, clean = folder / f"{name}.mp4", folder / "clean" / f"{name}.mp4"
        grain = FILM_GRAIN if name == "film_dark" else CAMERA_NOISE
        graph = f"[0:v]split[c][n];[n]noise=alls={grain}:allf=t[cam]"
        outputs = ["-filter_complex", graph, "-map", "[c]", *CLEAN_X264, str(clean)]
        outputs += ["-map", "[cam]", *camera_x264(fps)]  # encode() appends the path
        encode((fn(i / fps) for i in range(int(seconds * fps))), path, (W, H), fps, codec=outputs)
        out[0].append(path)
        out[1].append(clean)
    return out


def cpu_s() -> float:
    """CPU seconds of this process and its finished children (ffmpeg), user + system."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def timed(step: Callable[[], T]) -> tuple[tuple[float, float], T]:
    """((wall s, CPU s), what the step returned)."""
    t, c = time.perf_counter(), cpu_s()
    out = step()
    return (time.perf_counter() - t, cpu_s() - c), out


def median(samples: list[tuple[float, float]]) -> tuple[float, float]:
    """The median wall time and the median CPU time (each on its own)."""
    return (statistics.median(w for w, _ in samples), statistics.median(c for _, c in samples))


def decode_floor(ffmpeg: str, paths: list[Path]) -> float:
    t = time.perf_counter()
    for p in paths:
        subprocess.run(
            [
                ffmpeg,
                "-nostdin",
                "-hide_banner",
                "-loglevel",
                "error",
                "-i",
                str(p),
                "-map",
                "0:v:0",
                "-f",
                "null",
                "-",
            ],
            check=True,
        )
    return time.perf_counter() - t


def through_services(srcs: list[Path], work: Path) -> tuple[float, float, str]:
    """The same footage through the real services, as `loraforge ingest` then `loraforge curate`
    see it: nats-server and SeaweedFS on loopback, the ingest and curation services (in this
    process), sources uploaded to raw, an ingest job, then a user's curation start (which finds
    the automatic curation that clips.ingested started, and follows it). Returns (ingest s,
    curate s, how the curate start was answered)."""
    access, secret = "bench", "bench-" + secrets.token_hex(6)
    nats = NatsLaunch(port=free_port(), monitor_port=free_port(), store_dir=work / "nats")
    weed = WeedLaunch(
        s3_port=free_port(),
        base_port=free_port_block(7),
        data_dir=work / "weed",
        s3_config=write_s3_identities(work / "s3.json", access, secret),
    )
    weed.data_dir.mkdir(parents=True)
    procs = [
        subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        for cmd in (nats.command(), weed.command())
    ]
    settings = Settings(
        env="test",
        nats=NatsSettings(
            url=nats.url, stream="BENCH", subject_root="bench", jobs_bucket="jobs_bench"
        ),
        s3=S3Settings(
            endpoint=weed.endpoint, access_key=access, secret_key=secret, bucket_prefix="bench-"
        ),
        stack={"data_dir": work / "stack"},
    )
    ref = ProjectRef("bench", "footage")
    scope = common_pb2.ProjectScope(tenant=ref.tenant, project=ref.project)
    terminal = {
        common_pb2.JOB_STATE_SUCCEEDED,
        common_pb2.JOB_STATE_FAILED,
        common_pb2.JOB_STATE_CANCELLED,
    }

    async def wait(stub, job_id: str) -> common_pb2.Job:
        while True:
            job = await stub.GetJob(
                common_pb2.GetJobRequest(scope=scope, job_id=job_id), timeout=10
            )
            if job.state in terminal:
                if job.state != common_pb2.JOB_STATE_SUCCEEDED:
                    raise RuntimeError(f"job {job.id}: {job.message}")
                return job
            await asyncio.sleep(0.2)

    async def run() -> tuple[float, float, str]:
        store = ObjectStore.connect(settings.s3)
        for _ in range(200):  # the S3 port opens before SeaweedFS takes writes
            try:
                store.ensure_buckets()
                break
            except Exception:
                await asyncio.sleep(0.3)
        services = [
            ServiceProcess("ingest", settings, ingest_mount, drain_delay_s=0.0),
            ServiceProcess("curation", settings, curation_mount, drain_delay_s=0.0),
        ]
        for sp in services:
            await sp.start()
        try:
            ing = ingest_pb2_grpc.IngestServiceStub(
                grpc.aio.insecure_channel(f"127.0.0.1:{services[0].port}")
            )
            cur = curation_pb2_grpc.CurationServiceStub(
                grpc.aio.insecure_channel(f"127.0.0.1:{services[1].port}")
            )
            t = time.perf_counter()
            keys = []
            for p in srcs:  # what `loraforge ingest PATH` uploads first
                key = layout.original_key(ref, hashlib.sha256(p.read_bytes()).hexdigest(), "mp4")
                await asyncio.to_thread(store.put_file, Bucket.RAW, key, p)
                keys.append(key)
            job = await ing.StartIngest(
                ingest_pb2.StartIngestRequest(scope=scope, request_id="bench", sources=keys),
                timeout=30,
            )
            await wait(ing, job.id)
            t_ing = time.perf_counter() - t
            t = time.perf_counter()
            job = await cur.StartCuration(
                curation_pb2.StartCurationRequest(scope=scope, request_id="user"), timeout=60
            )
            own = new_job_id("user", scope=f"{ref.tenant}/{ref.project}/curation")
            answered = (
                f"{common_pb2.JobState.Name(job.state)} "
                f"{'job of its own' if job.id == own else 'automatic curation job'} {job.id}"
            )
            await wait(cur, job.id)
            t_cur = time.perf_counter() - t
            listed = (await cur.ListJobs(common_pb2.ListJobsRequest(scope=scope), timeout=10)).jobs
            answered += f"; curation jobs in the project: {len({j.id for j in listed})}"
            return t_ing, t_cur, answered
        finally:
            for sp in reversed(services):
                await sp.stop()

    try:
        wait_for_port("127.0.0.1", nats.port, 20, procs[0])
        wait_for_port("127.0.0.1", weed.s3_port, 60, procs[1])
        return asyncio.run(run())
    finally:
        for proc in procs:
            stop_process(proc, grace_s=3)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=12.0, help="length of each of the 5 sources")
    ap.add_argument(
        "--profile", action="store_true", help="print the top functions of the curate step"
    )
    ap.add_argument("--keep", type=Path, default=None)
    ap.add_argument(
        "--repeat", type=int, default=3, help="times the floors and curate run (medians compared)"
    )
    ap.add_argument(
        "--dump",
        type=Path,
        default=None,
        help="write every clip's metrics (ClipMetrics, all fields) to this JSON file",
    )
    ap.add_argument(
        "--compare",
        type=Path,
        default=None,
        help="compare every clip's metrics with a --dump file (a speed-up that should change "
        "nothing: prints each field that moved by more than 1e-6 relative; exit 1 if any did)",
    )
    ap.add_argument(
        "--services",
        action="store_true",
        help="also time ingest and curate through the real services (NATS, S3, gRPC)",
    )
    args = ap.parse_args()
    if args.repeat < 1:
        ap.error("--repeat must be at least 1")
    tools = MediaTools.discover()
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-curation-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        srcs, clean = make_sources(work, args.seconds)
        footage = args.seconds * len(srcs)
        # model loading is a one-off per worker process (the worker holds both)
        backend, people = make_backend("dlib"), PeopleDetector()
        decode_floor(tools.ffmpeg, srcs[:1])  # warm the page cache and the binary
        load0 = os.getloadavg()

        (t_ing, c_ing), results = timed(
            lambda: [
                process_source(p, IngestOptions(), work / "ingest" / p.stem, tools=tools)
                for p in srcs
            ]
        )
        items = [
            MediaItem(c.path, f"{r.source.stem}-{i:02d}", r.source.stem, analysis=c.analysis)
            for r in results
            for i, c in enumerate(r.clips)
        ]

        policy = CurationPolicy()
        # a worker process loads its models and libraries once (dlib, the person and text
        # detectors, sklearn for identity clusters: 5-12 s of CPU to import, pyarrow for the
        # manifest): one untimed run of the same job first, so the timed runs measure per-job work
        curate(items, policy, backend=backend, people=people, out_dir=work / "warm")
        # CPU time as the profile's clock: the curate step runs 2 clips on threads
        prof = cProfile.Profile(time.process_time) if args.profile else None
        # on a shared machine one timing can be 10-15 % off: the floors and the curate step run
        # in turn --repeat times, and the medians are compared
        runs: dict[str, list[tuple[float, float]]] = {"dec": [], "clean": [], "cur": []}
        for r in range(args.repeat):
            runs["dec"].append(timed(lambda: decode_floor(tools.ffmpeg, srcs))[0])
            runs["clean"].append(timed(lambda: decode_floor(tools.ffmpeg, clean))[0])
            if prof and r == 0:
                prof.enable()
            took, res = timed(
                lambda: curate(
                    items, policy, backend=backend, people=people, out_dir=work / "dataset"
                )
            )
            if prof and r == 0:
                prof.disable()
            runs["cur"].append(took)
        (t_dec, c_dec), (t_clean, c_clean), (t_cur, c_cur) = (
            median(runs[k]) for k in ("dec", "clean", "cur")
        )
        (t_cur_dec, c_cur_dec), res_dec = timed(
            lambda: curate(
                [MediaItem(i.path, i.clip_id, i.source_id) for i in items],
                policy,
                backend=backend,
                people=people,
            )
        )
        svc = through_services(srcs, work / "services") if args.services else None
        load1 = os.getloadavg()
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)

    rate = lambda s: footage / s  # noqa: E731
    print(
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {len(srcs)} sources x {args.seconds:g} s "
        f"of {W}x{H} H.264 (24-30 fps) = {footage:g} s; {len(items)} clips; "
        f"{os.cpu_count()} CPUs; python {platform.python_version()}; load average (1/5 min) "
        f"{load0[0]:.2f}/{load0[1]:.2f} before, {load1[0]:.2f}/{load1[1]:.2f} after"
    )
    print("| step | wall s | footage s / wall s | x decode speed | CPU s | x decode (CPU) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, s, cs in [
        ("ffmpeg decode only (floor)", t_dec, c_dec),
        ("ffmpeg decode of the scenes encoded clean", t_clean, c_clean),
        ("ingest (shots, cut, keyframes, proxies)", t_ing, c_ing),
        ("curate (reads the proxies)", t_cur, c_cur),
        ("ingest + curate", t_ing + t_cur, c_ing + c_cur),
        ("curate decoding the clips instead", t_cur_dec, c_cur_dec),
    ]:
        print(
            f"| {name} | {s:.2f} | {rate(s):.1f} | {t_dec / s:.2f} | {cs:.2f} | {c_dec / cs:.2f} |"
        )
    if svc is not None:
        t_si, t_sc, answered = svc
        for name, sec in [
            ("services: upload + ingest job", t_si),
            ("services: user's curate after it", t_sc),
            ("services: ingest + curate", t_si + t_sc),
        ]:
            print(f"| {name} | {sec:.2f} | {rate(sec):.1f} | {t_dec / sec:.2f} | | |")
        print(f"(the user's curate start was answered with the {answered})")
    print(
        f"curate target >= 1.0x decode speed: {t_dec / t_cur:.2f}x (wall), "
        f"{c_dec / c_cur:.2f}x (CPU); against the clean encodes' decode "
        f"{t_clean / t_cur:.2f}x (wall), {c_clean / c_cur:.2f}x (CPU)"
    )
    if args.repeat > 1:  # each run's floor over that run's curate: the spread of the medians
        pairs = list(zip(runs["dec"], runs["cur"], strict=True))
        print(
            "  each run: "
            + ", ".join(f"{d[0] / c[0]:.2f}x/{d[1] / c[1]:.2f}x" for d, c in pairs)
            + " (wall/CPU)"
        )
    per = {}
    for c in res.clips:
        per.setdefault(c.metrics.source_id, []).append(
            "keep" if c.decision.keep else ",".join(c.decision.reason_codes)
        )
    print("decisions: " + "; ".join(f"{k}: {v}" for k, v in per.items()))
    # the proxies hold the frames the clip was encoded from, the decoded clip those frames after
    # x264: measurements differ a little, so a borderline reason may too; keep/reject must not
    proxy = {c.metrics.clip_id: c.decision for c in res.clips}
    decoded = {c.metrics.clip_id: c.decision for c in res_dec.clips}
    same_keep = all(proxy[k].keep == decoded[k].keep for k in proxy)
    print(f"keep/reject from proxies == from decoded clips: {same_keep}")
    for k in sorted(proxy):
        if proxy[k].reason_codes != decoded[k].reason_codes:
            print(f"  {k}: reasons {proxy[k].reason_codes} (proxy) vs {decoded[k].reason_codes}")
    if prof:
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)
    metrics = {
        c.metrics.clip_id: {
            # the motion signature is kilobytes of bytes: its digest tells whether it moved
            k: hashlib.sha256(v).hexdigest() if isinstance(v, bytes) else v
            for k, v in dataclasses.asdict(c.metrics).items()
            if k != "path"
        }
        for c in res.clips
    }
    if args.dump:
        args.dump.write_text(json.dumps(metrics, indent=1, sort_keys=True))
    if args.compare:
        moved = _compare(json.loads(args.compare.read_text()), json.loads(json.dumps(metrics)))
        print("\n".join(moved) or "metrics equal to the dump")
        if moved:
            sys.exit(1)


def _compare(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Fields that differ, numbers by more than 1e-6 relative (float noise), clip by clip."""

    def same(a: Any, b: Any) -> bool:
        if isinstance(a, float) and isinstance(b, float):
            return abs(a - b) <= 1e-6 * max(1.0, abs(a))
        if isinstance(a, list) and isinstance(b, list):
            return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
        if isinstance(a, dict) and isinstance(b, dict):
            return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
        return bool(a == b)

    out = [f"{cid}: not in this run" for cid in old if cid not in new]
    added = sorted({k for cid, f in new.items() if cid in old for k in f if k not in old[cid]})
    if added:
        print(f"fields the dump does not have (not compared): {', '.join(added)}")
    for cid, fields in new.items():
        for k, v in fields.items():
            if k in added:
                continue
            was = old.get(cid, {}).get(k, "<missing>")
            if not same(was, v):
                out.append(f"{cid}.{k}: {str(was)[:100]} -> {str(v)[:100]}")
    return out


if __name__ == "__main__":
    main()
