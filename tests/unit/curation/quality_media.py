"""Footage for the light, noise, text and overlay tests: real photos, lit, noised, panned and
overlaid the way real footage is, encoded with libx264 by ffmpeg (imageio-ffmpeg's binary) like
the clips ingest cuts."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import curation_media as M
import cv2
import imageio_ffmpeg
import numpy as np
import skimage.data

W, H = 640, 360  # 16:9, like the footage users bring
FPS = 8


def write_h264(
    path: Path,
    frame_fn: Callable[[int], np.ndarray],
    seconds: float = 2.5,
    fps: int = FPS,
    crf: int = 20,
) -> Path:
    n = int(round(seconds * fps))
    frames = [frame_fn(i) for i in range(n)]
    h, w = frames[0].shape[:2]
    cmd = [
        imageio_ffmpeg.get_ffmpeg_exe(),
        "-hide_banner",
        "-loglevel",
        "error",
        "-y",
        "-f",
        "rawvideo",
        "-pix_fmt",
        "bgr24",
        "-s",
        f"{w}x{h}",
        "-r",
        str(fps),
        "-i",
        "pipe:0",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-crf",
        str(crf),
        "-pix_fmt",
        "yuv420p",
        str(path),
    ]
    subprocess.run(cmd, input=b"".join(f.tobytes() for f in frames), check=True)
    return path


def portrait(t: int, dx: int = 2) -> np.ndarray:
    """Eileen Collins in a 16:9 frame (head and shoulders), drifting as a handheld camera does."""
    a = M.astronaut()  # 512x512
    canvas = cv2.copyMakeBorder(a, 0, 0, 200, 200, cv2.BORDER_REFLECT)  # 512x912
    x = 120 + dx * t
    return cv2.resize(canvas[0:330, x : x + 587], (W, H), interpolation=cv2.INTER_AREA)


def spotlight(
    img: np.ndarray, cx: float = 0.5, cy: float = 0.3, radius: float = 0.22, floor: float = 0.1
) -> np.ndarray:
    """Low-key light: a soft pool of light at (cx, cy) (fractions of the frame), the rest of the
    room falling to ``floor`` of its brightness, as a single key light on a face does."""
    h, w = img.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    d2 = ((xx / w - cx) / radius) ** 2 + ((yy / h - cy) / (radius * w / h)) ** 2
    gain = floor + (1 - floor) * np.exp(-0.5 * d2)
    return np.clip(img.astype(np.float32) * gain[..., None], 0, 255).astype(np.uint8)


def gain(img: np.ndarray, f: float) -> np.ndarray:
    return np.clip(img.astype(np.float32) * f, 0, 255).astype(np.uint8)


def noisy(img: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    """Gaussian sensor noise, independent per channel and frame."""
    rng = np.random.default_rng(seed)
    return np.clip(img.astype(np.float32) + rng.normal(0, sigma, img.shape), 0, 255).astype(
        np.uint8
    )


def pushed(img: np.ndarray, exposure: float, sigma: float, seed: int) -> np.ndarray:
    """A shot exposed at ``exposure`` of the right level, with sensor noise ``sigma`` at that
    level and 8-bit quantisation, then gained back up in post: noise grows by 1/exposure."""
    dark = noisy(gain(img, exposure), sigma, seed)
    return gain(dark, 1 / exposure)


def coffee() -> np.ndarray:
    return cv2.cvtColor(skimage.data.coffee(), cv2.COLOR_RGB2BGR)  # 400x600


def pan(image: np.ndarray, t: int, px_per_frame: float, zoom: float = 1.0) -> np.ndarray:
    """A horizontal pan over ``image`` (scaled to cover the frame ``zoom`` times), px per frame
    in output pixels."""
    ih, iw = image.shape[:2]
    s = zoom * max(W / iw, H / ih) * 1.4
    big = cv2.resize(image, (round(iw * s), round(ih * s)), interpolation=cv2.INTER_CUBIC)
    x = int(round(px_per_frame * t))
    y = (big.shape[0] - H) // 2
    return big[y : y + H, x : x + W].copy()


def animated_gradient(t: int) -> np.ndarray:
    """Motion-graphics background: a diagonal colour gradient whose hues drift and whose bands
    sweep across the frame."""
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    phase = 0.35 * t
    r = 127 + 120 * np.sin(xx / 90.0 + phase)
    g = 127 + 120 * np.sin((xx + yy) / 140.0 - 0.7 * phase)
    b = 127 + 120 * np.sin(yy / 70.0 + 1.3 * phase)
    return np.stack([b, g, r], -1).clip(0, 255).astype(np.uint8)


def subtitles(img: np.ndarray, t: int) -> np.ndarray:
    """Hard subtitles: white text with a black outline, centred near the bottom, the line
    changing halfway through as dialogue does."""
    out = img.copy()
    text = "Where were you last night?" if t < 10 else "I was at home, I swear."
    font, scale, th = cv2.FONT_HERSHEY_DUPLEX, 0.9, 2
    (tw, _tht), _ = cv2.getTextSize(text, font, scale, th)
    org = ((out.shape[1] - tw) // 2, out.shape[0] - 28)
    cv2.putText(out, text, org, font, scale, (0, 0, 0), th + 3, cv2.LINE_AA)
    cv2.putText(out, text, org, font, scale, (255, 255, 255), th, cv2.LINE_AA)
    return out


def corner_logo(img: np.ndarray, opacity: float = 0.85) -> np.ndarray:
    """A channel bug: a small ringed emblem with initials, top right, blended over the picture."""
    out = img.copy()
    layer = out.copy()
    cx, cy = out.shape[1] - 58, 46
    cv2.circle(layer, (cx, cy), 26, (255, 255, 255), 3, cv2.LINE_AA)
    cv2.circle(layer, (cx, cy), 17, (40, 160, 240), -1, cv2.LINE_AA)
    cv2.line(layer, (cx - 12, cy + 12), (cx + 12, cy - 12), (255, 255, 255), 3, cv2.LINE_AA)
    cv2.rectangle(layer, (cx - 36, cy + 32), (cx + 36, cy + 40), (255, 255, 255), -1)
    return cv2.addWeighted(layer, opacity, out, 1 - opacity, 0)


def with_sign(image: np.ndarray, text: str = "HOTEL PARIS") -> np.ndarray:
    """Scene text: a painted sign on the photo itself, so it moves with the camera."""
    out = image.copy()
    h, w = out.shape[:2]
    x0, y0 = int(0.04 * w), int(0.40 * h)
    cv2.rectangle(out, (x0, y0), (x0 + int(0.42 * w), y0 + int(0.12 * h)), (30, 30, 140), -1)
    cv2.putText(
        out,
        text,
        (x0 + 8, y0 + int(0.09 * h)),
        cv2.FONT_HERSHEY_SIMPLEX,
        0.0023 * w,
        (240, 240, 240),
        2,
        cv2.LINE_AA,
    )
    return out
