"""How many threads curation measures clips on, sized once for every caller
(pipeline.measure_all, the service's `curation.measure` tasks, dlib's detector pool), and the
threads themselves."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from functools import cache


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity: a container's cpuset)."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, n or 1)


def measuring_threads() -> int:
    """Clips a process measures at once: one more than its cores (at most 5). dlib, OpenCV,
    LiteRT and ONNX Runtime release the GIL for most of a clip's work, so with as many clips
    as cores both stay busy except while a clip reads its proxy (disk or S3) or holds the GIL,
    and at a job's end, where the last clip ran alone. On 2 cores, the bench's 19 clips took
    4.26-4.35 s with 3 threads against 4.37-4.53 s with 2. (Looking at each clip's frames on a
    pool of their own, so that the last clip runs on every core, measured no better: 4.36-4.45 s
    against 4.31-4.55 s, alternating runs.)"""
    return min(usable_cores() + 1, 5)


@cache
def measuring_pool(workers: int) -> ThreadPoolExecutor:
    """Threads kept for the process's life that clips are measured on: the detectors' TFLite
    interpreters are per thread (people.py, face_proposals.py, ~0.05-0.09 s of CPU to load),
    so a pool made per job loaded them again for every job, and the service's tasks on
    asyncio's shared executor loaded them on each of its threads."""
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="curation-measure")
