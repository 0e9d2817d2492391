"""Photos: one normalised image per upload.

EXIF orientation is applied to the pixels (phones store portrait shots sideways plus a tag),
and the result is saved without EXIF, so no later stage can rotate it a second time.
"""

from __future__ import annotations

import io
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pillow_heif
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from loraforge.ingest.errors import CorruptMedia, UnsupportedFormat, VideoTooLarge, VideoTooSmall
from loraforge.ingest.options import ImageFormat, MediaLimits
from loraforge.ingest.sniff import RAW_PHOTO

_PIL_FORMATS = {
    "JPEG": "jpg",
    "PNG": "png",
    "WEBP": "webp",
    "BMP": "bmp",
    "HEIF": "heic",
    "AVIF": "avif",
    "TIFF": "tiff",
    "GIF": "gif",  # a still GIF (animated ones are videos: sniff.py)
}
# TIFF-based camera RAWs open as a TIFF holding the camera's small preview: refused by their
# DNGVersion tag or their name, not trained on as a thumbnail
_DNG_VERSION = 50706
_RAW_SUFFIXES = {".dng", ".nef", ".nrw", ".arw", ".sr2", ".pef", ".3fr", ".erf", ".kdc", ".iiq"}
# HEIC through libheif. It applies the file's rotation and mirroring (what an iPhone stores for
# a portrait shot) and resets the EXIF orientation to 1, so exif_transpose below does not turn
# the picture a second time; 10-bit (HDR) photos come out as 8-bit RGB.
pillow_heif.register_heif_opener()
_SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PhotoResult:
    path: Path
    width: int
    height: int
    format: str  # source format
    exif_orientation: int  # 1 = upright; 6 = needed 90 deg clockwise, ...


def normalize_photo(
    src: Path,
    dest_stem: Path,
    fmt: ImageFormat = "png",
    max_long_side: int | None = None,
    limits: MediaLimits | None = None,
) -> PhotoResult:
    limits = limits or MediaLimits()
    name = Path(src).name
    try:
        with warnings.catch_warnings():
            # Our own pixel limit below replaces PIL's DecompressionBombWarning.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(src)
    except UnidentifiedImageError as exc:
        raise UnsupportedFormat(
            f"{name}: the image cannot be decoded; save it as JPEG or PNG and upload again"
        ) from exc
    except Image.DecompressionBombError as exc:
        raise VideoTooLarge(
            f"{name}: the image is too large to decode safely; downscale it and upload again"
        ) from exc
    with im:
        kind = _PIL_FORMATS.get(im.format or "")
        if kind is None:
            raise UnsupportedFormat(
                f"{name}: {im.format} images are not supported; convert to JPEG or PNG"
            )
        if kind == "tiff" and (
            Path(src).suffix.lower() in _RAW_SUFFIXES or _DNG_VERSION in getattr(im, "tag_v2", {})
        ):
            raise UnsupportedFormat(f"{name}: {RAW_PHOTO}")
        w, h = im.size
        # Header size check before decoding any pixels.
        if w * h > limits.photo_max_pixels:
            raise VideoTooLarge(
                f"{name}: the photo is {w}x{h} ({w * h / 1e6:.0f} MP), above the limit of "
                f"{limits.photo_max_pixels / 1e6:.0f} MP; downscale it and upload again"
            )
        if min(w, h) < limits.min_side:
            raise VideoTooSmall(
                f"{name}: the photo is {w}x{h} px, below the minimum of {limits.min_side} px per "
                f"side; upload the original, full-size photo"
            )
        orientation = int(im.getexif().get(0x0112, 1) or 1)
        try:
            im.load()
            upright = ImageOps.exif_transpose(im)
        except (OSError, SyntaxError, ValueError) as exc:
            raise CorruptMedia(
                f"{name}: the image data is damaged or truncated ({str(exc).strip()}); "
                "upload it again"
            ) from exc
        upright = _to_rgb(_to_srgb(upright, im.info.get("icc_profile"), name))
        if max_long_side and max(upright.size) > max_long_side:
            upright.thumbnail((max_long_side, max_long_side), Image.Resampling.LANCZOS)
        out = dest_stem.with_suffix("." + fmt)
        out.parent.mkdir(parents=True, exist_ok=True)
        if fmt == "jpg":
            upright.save(out, "JPEG", quality=95, subsampling=0)
        else:
            upright.save(out, "PNG", compress_level=1)  # speed over size: this is a work file
        return PhotoResult(
            path=out,
            width=upright.width,
            height=upright.height,
            format=kind,
            exif_orientation=orientation,
        )


def _to_srgb(im: Image.Image, icc: bytes | None, name: str) -> Image.Image:
    """Pixels in the photo's own colour space (an iPhone's Display P3, a camera's Adobe RGB, a
    print file's CMYK) converted to sRGB by its embedded ICC profile: read as sRGB they come
    out dull (P3, Adobe RGB) or wrong (CMYK). sRGB photos and photos without a profile are
    left as they are."""
    if not icc or im.mode not in ("RGB", "RGBA", "CMYK"):
        return im
    try:
        src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        if "srgb" in ImageCms.getProfileDescription(src).lower().replace(" ", ""):
            return im
        out = ImageCms.profileToProfile(
            im,
            src,
            _SRGB,
            renderingIntent=ImageCms.Intent.PERCEPTUAL,
            outputMode="RGBA" if im.mode == "RGBA" else "RGB",
        )
    except (ImageCms.PyCMSError, OSError, ValueError) as exc:
        log.warning("%s: its colour profile cannot be used (%s); read as sRGB", name, exc)
        return im
    return out if out is not None else im


def _to_rgb(im: Image.Image) -> Image.Image:
    if im.mode == "RGB":
        return im
    if im.mode.startswith("I"):
        # 16-bit greyscale (scans, a raw converter's PNG) opens as I;16 (older PIL: I): PIL's
        # convert would clip every value above 255 to white; keep the top 8 bits instead
        top = (np.asarray(im).astype(np.uint32) >> 8).clip(0, 255).astype(np.uint8)
        return Image.fromarray(top, "L").convert("RGB")
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        # Transparent pixels over white, not PIL's default of whatever colour hides under alpha
        # (often black), which a LoRA would learn as part of the subject.
        rgba = im.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, (255, 255, 255))
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    return im.convert("RGB")
