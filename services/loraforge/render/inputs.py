"""The user's own keyframes (a scenario shot's `image:`): checked and fetched before any model
loads, so a bad one fails the submission with the reason instead of a GPU job minutes later.

An input image is a key in the project's raw bucket (`<tenant>/<project>/...`, where the CLI
and the gateway store uploads: `sources/<sha256>.<ext>`). Refused, with what to fix:
a key outside the job's tenant/project or with `..`; a missing object; more than
:data:`MAX_IMAGE_BYTES`; not an image PIL can read, or truncated/corrupt; smaller than
:data:`MIN_SIDE` or larger than :data:`MAX_PIXELS` (read from the header, before decoding: a
decompression bomb never gets decoded); an aspect ratio beyond :data:`MAX_ASPECT`.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from loraforge.runtime.errors import InvalidInput
from loraforge.runtime.keys import ProjectRef
from loraforge.runtime.storage import Bucket, ObjectStore

# A 50 MB ceiling admits any camera JPEG/PNG/WebP photo (a 45 MP full-frame JPEG is 15-30 MB,
# a 24 MP 16-bit PNG about 45 MB) and refuses videos or archives uploaded by mistake.
MAX_IMAGE_BYTES = 50 * 1024 * 1024
# 50 MP admits every phone and most camera sensors (8K frames are 33 MP, a Sony A7R IV 61 MP
# is the exception: downscale it) and refuses decompression bombs (PIL's own warning is at
# 89 MP, its error at 179 MP).
MAX_PIXELS = 50_000_000
# Keyframes are rendered at >= 256 px; an image under 64 px on a side (a thumbnail, an icon)
# upscaled to 480x832 gives a blur the video model animates faithfully.
MIN_SIDE = 64
# A 4:1 panorama still crops to a 16:9 or 9:16 frame with something left; a 1x4000 banner
# does not.
MAX_ASPECT = 4.0


def check_image_key(ref: ProjectRef, key: str, shot: int) -> str:
    if not key.startswith(ref.prefix) or ".." in key.split("/") or "//" in key:
        raise InvalidInput(
            f"shot {shot}: image {key!r} is not a key of this project's raw bucket (it must "
            f"start with {ref.prefix}, e.g. {ref.prefix}sources/<sha256>.jpg as uploads are "
            "stored): renders only read images of their own project"
        )
    return key


def check_image_file(path: Path, label: str) -> tuple[int, int]:
    """(width, height) of a readable, sane image file, else InvalidInput saying why."""
    from PIL import Image, UnidentifiedImageError

    size = path.stat().st_size
    if size > MAX_IMAGE_BYTES:
        raise InvalidInput(
            f"{label}: {size / 2**20:.1f} MB is over the {MAX_IMAGE_BYTES // 2**20} MB "
            "limit for an input image; export it as a JPEG"
        )
    try:
        with Image.open(path) as img:
            w, h = img.size
            fmt = img.format
    except Image.DecompressionBombError:
        # raised only while PIL's limit is set (MAX_IMAGE_PIXELS None turns the check off)
        raise InvalidInput(
            f"{label} claims more than {(Image.MAX_IMAGE_PIXELS or 0) / 1e6:.0f} MP (a "
            f"decompression bomb or a huge scan), over the {MAX_PIXELS / 1e6:.0f} "
            "MP limit; downscale it"
        ) from None
    except UnidentifiedImageError:
        raise InvalidInput(
            f"{label} is not an image PIL can read (JPEG, PNG, WebP, ...); "
            "upload the picture itself"
        ) from None
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"{label} cannot be read as an image ({exc})") from None
    if w * h > MAX_PIXELS:
        raise InvalidInput(
            f"{label} is {w}x{h} ({w * h / 1e6:.0f} MP), over the "
            f"{MAX_PIXELS / 1e6:.0f} MP limit; downscale it (the render uses at "
            "most the output size)"
        )
    if min(w, h) < MIN_SIDE:
        raise InvalidInput(
            f"{label} is {w}x{h}: under {MIN_SIDE} px on a side it is too small "
            "to be a keyframe; use the full-size picture"
        )
    if max(w, h) / min(w, h) > MAX_ASPECT:
        raise InvalidInput(
            f"{label} is {w}x{h}, an aspect ratio over {MAX_ASPECT:g}:1; crop it "
            "closer to the output's aspect ratio"
        )
    try:  # decode it whole: a truncated or corrupt file fails here, not in the render
        with Image.open(path) as img:
            img.load()
            img.convert("RGB")
    except (OSError, ValueError, SyntaxError) as exc:
        raise InvalidInput(
            f"{label} ({fmt}, {w}x{h}) is corrupt or truncated ({exc}); upload it again"
        ) from None
    return w, h


def fetch_input_images(
    store: ObjectStore, ref: ProjectRef, keys: list[str], dest: Path
) -> dict[str, Path]:
    """Check and download each shot image key (index order = shot order, "" = no image);
    returns key -> local file."""
    out: dict[str, Path] = {}
    dest.mkdir(parents=True, exist_ok=True)
    for shot, key in enumerate(keys, start=1):
        if not key or key in out:
            continue
        check_image_key(ref, key, shot)
        stat = store.stat(Bucket.RAW, key)
        if stat is None:
            raise InvalidInput(
                f"shot {shot}: image raw/{key} does not exist; upload it first "
                "(loraforge render uploads local paths in `image:` itself)"
            )
        if stat.size > MAX_IMAGE_BYTES:
            raise InvalidInput(
                f"shot {shot}: image raw/{key} is {stat.size / 2**20:.1f} MB, over "
                f"the {MAX_IMAGE_BYTES // 2**20} MB limit; export it as a JPEG"
            )
        path = store.download(Bucket.RAW, key, dest / f"shot-{shot:02d}{Path(key).suffix}")
        check_image_file(path, f"shot {shot}: image raw/{key}")
        out[key] = path
    return out


def check_input_images(store: ObjectStore, ref: ProjectRef, keys: list[str]) -> None:
    """The same checks, for a submission (the files are dropped)."""
    if not any(keys):
        return
    with tempfile.TemporaryDirectory(prefix="render-inputs-") as tmp:
        fetch_input_images(store, ref, keys, Path(tmp))
