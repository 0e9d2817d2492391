"""Human report: an HTML contact sheet, rejection counts and PNG charts, in a local folder.

Charts compare the selected set with the policy targets (angle mix) and show the spread of
expressions, lighting and identity distance. They are drawn with OpenCV (bars, ticks and
labels on a 500x300 canvas): matplotlib took ~4 s of CPU per report for four small charts
(and ~5 s more to import in a fresh process), more than measuring the clips of a small dataset.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from loraforge.curation.metrics import ClipMetrics

if TYPE_CHECKING:
    from loraforge.curation.pipeline import ClipResult, CurationResult

BGR = tuple[int, int, int]

# chart canvas and colours (BGR): matplotlib's default blue and orange, red for a cut line
_CW, _CH = 500, 300
_BLUE, _ORANGE, _CUT, _INK, _GRID = (
    (180, 119, 31),
    (14, 127, 255),
    (40, 39, 214),
    (40, 40, 40),
    (225, 225, 225),
)
_FONT = cv2.FONT_HERSHEY_SIMPLEX
# plot area inside the canvas: room for the title above, tick labels below and left
_L, _T, _R, _B = 48, 34, 488, 236


def _text(
    img: np.ndarray,
    s: str,
    org: tuple[float, float],
    scale: float = 0.42,
    color: BGR = _INK,
    center: bool = False,
) -> None:
    (tw, _th), _ = cv2.getTextSize(s, _FONT, scale, 1)
    x, y = org
    cv2.putText(
        img, s, (int(x - tw / 2) if center else int(x), int(y)), _FONT, scale, color, 1, cv2.LINE_AA
    )


def _nice_max(v: float) -> float:
    """The axis top: the data's maximum rounded up to 1, 2 or 5 times a power of ten."""
    if v <= 0:
        return 1.0
    e = 10 ** np.floor(np.log10(v))
    return float(next(m * e for m in (1, 2, 5, 10) if m * e >= v))


def _axes(title: str, top: float, xlabel: str = "") -> np.ndarray:
    img = np.full((_CH, _CW, 3), 255, np.uint8)
    _text(img, title, (_CW / 2, 22), 0.5, center=True)
    for k in range(5):  # horizontal grid lines with their values
        y = _B - (_B - _T) * k / 4
        cv2.line(img, (_L, int(y)), (_R, int(y)), _GRID if k else _INK, 1)
        v = top * k / 4
        _text(img, f"{v:.2f}".rstrip("0").rstrip(".") if v % 1 else f"{v:.0f}", (4, y + 4), 0.38)
    cv2.line(img, (_L, _T), (_L, _B), _INK, 1)
    if xlabel:
        _text(img, xlabel, (_CW / 2, _CH - 8), 0.4, center=True)
    return img


def _bar_vs_target(
    path: Path,
    title: str,
    labels: Sequence[str],
    actual: Sequence[float],
    target: Sequence[float] | None = None,
) -> None:
    top = _nice_max(max(list(actual) + list(target or []) + [0.0]))
    img = _axes(title, top)
    slot = (_R - _L) / max(1, len(labels))
    series = [(actual, _BLUE)] + ([(target, _ORANGE)] if target else [])
    bw = slot * 0.8 / len(series)
    for i, label in enumerate(labels):
        x0 = _L + slot * i + slot * 0.1
        for j, (vals, color) in enumerate(series):
            h = (_B - _T) * float(vals[i]) / top
            cv2.rectangle(
                img, (int(x0 + j * bw), int(_B - h)), (int(x0 + (j + 1) * bw) - 2, _B), color, -1
            )
        _text(
            img, str(label)[:16], (_L + slot * (i + 0.5), _B + 16 + 12 * (i % 2)), 0.38, center=True
        )
    if target:
        for k, (name, color) in enumerate((("selected", _BLUE), ("target", _ORANGE))):
            y = _T + 6 + 16 * k
            cv2.rectangle(img, (_R - 84, y), (_R - 72, y + 10), color, -1)
            _text(img, name, (_R - 66, y + 10), 0.38)
    cv2.imwrite(str(path), img)


def _histogram(
    path: Path, title: str, values: Sequence[float], cut: float | None, xlabel: str, bins: int = 20
) -> None:
    vals = np.asarray(list(values) or [0.0], np.float64)
    hi = max(float(vals.max()), cut or 0.0)
    lo = min(float(vals.min()), cut if cut is not None else hi)
    lo, hi = (lo - 0.5, hi + 0.5) if hi - lo < 1e-9 else (lo, hi + 1e-9)
    counts, edges = np.histogram(vals, bins=bins, range=(lo, hi))
    top = _nice_max(float(counts.max()))
    img = _axes(title, top, xlabel)

    def px(v: float) -> float:
        return _L + (_R - _L) * (v - lo) / (hi - lo)

    for c, a, b in zip(counts, edges[:-1], edges[1:], strict=True):
        if c:
            cv2.rectangle(
                img, (int(px(a)), int(_B - (_B - _T) * c / top)), (int(px(b)) - 1, _B), _BLUE, -1
            )
    for v in (lo, (lo + hi) / 2, hi):
        _text(img, f"{v:.2f}", (px(v), _B + 16), 0.38, center=True)
    if cut is not None:
        cv2.line(img, (int(px(cut)), _T), (int(px(cut)), _B), _CUT, 2)
        _text(img, "same-person cut", (_L + 8, _T + 14), 0.38, _CUT)
    cv2.imwrite(str(path), img)


def write_charts(result: CurationResult, out_dir: Path) -> list[Path]:
    sel = result.selection
    n = max(1, len(sel.selected))
    groups = list(result.policy.angle_mix)
    paths = []
    p = out_dir / "angles.png"
    _bar_vs_target(
        p,
        "Angle mix (share of selection)",
        groups,
        [sel.angle_counts.get(g, 0) / n for g in groups],
        [result.policy.angle_mix[g] for g in groups],
    )
    paths.append(p)
    for name, counts in (("expressions", sel.expression_counts), ("lighting", sel.lighting_counts)):
        p = out_dir / f"{name}.png"
        labels = sorted(counts) or ["none"]
        _bar_vs_target(
            p, f"{name.capitalize()} in the selection", labels, [counts.get(k, 0) for k in labels]
        )
        paths.append(p)
    p = out_dir / "identity.png"
    d = [
        c.metrics.identity_distance for c in result.clips if c.metrics.identity_distance is not None
    ]
    _histogram(
        p,
        "Identity distance to the subject",
        d,
        result.identity_threshold,
        "embedding distance (lower = more similar)",
    )
    paths.append(p)
    return paths


# evidence boxes drawn on the thumbnails (BGR): what rejected in red, what is flagged in amber,
# the subject region the light was judged on in green
_RED, _AMBER, _GREEN = (40, 40, 220), (0, 170, 255), (60, 180, 60)


def _draw(img: np.ndarray, box: Sequence[float], color: BGR) -> None:
    h, w = img.shape[:2]
    x, y, bw, bh = box
    p0 = (int(round(x * w)), int(round(y * h)))
    p1 = (int(round((x + bw) * w)) - 1, int(round((y + bh) * h)) - 1)
    cv2.rectangle(img, p0, p1, color, 2)


def annotate(thumbnail: np.ndarray, clip: ClipResult) -> np.ndarray:
    """The thumbnail with the subject region and every reason's and flag's evidence box."""
    img = thumbnail.copy()
    m = clip.metrics
    if m.subject_box:
        _draw(img, m.subject_box, _GREEN)
    for reasons, color in ((clip.decision.flags, _AMBER), (clip.decision.reasons, _RED)):
        for r in reasons:
            for e in r.evidence:
                _draw(img, e["box"], color)
    return img


def _subject_line(m: ClipMetrics) -> str:
    s = m.subject_light()
    if s is None:
        return f"no subject: frame luma {m.mean_luma:.0f}, noise {m.noise:.1f}"
    return (
        f"{m.subject_source} luma {s.luma:.0f} (frame {m.mean_luma:.0f}), "
        f"sharp {s.sharpness:.0f}, noise {s.noise:.1f}"
    )


def write_report(result: CurationResult, out_dir: Path) -> Path:
    out_dir = Path(out_dir)
    thumbs = out_dir / "thumbs"
    thumbs.mkdir(parents=True, exist_ok=True)
    charts = write_charts(result, out_dir)
    counts = result.rejection_counts()
    esc = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>Curation report</title>",
        "<style>body{font-family:sans-serif}.grid{display:flex;flex-wrap:wrap;gap:8px}"
        ".card{width:330px;border:2px solid #ccc;padding:4px;font-size:12px}"
        ".keep{border-color:#2a2}.reject{border-color:#c22}.sel{background:#efe}"
        "img{max-width:320px}</style></head><body>",
        f"<h1>Curation report</h1><p>{len(result.clips)} items, "
        f"{sum(c.decision.keep for c in result.clips)} kept, "
        f"{len(result.selection.selected)} selected (target {result.selection.target_size}).</p>",
        f"<p>Policy: {esc(result.policy.lora_type)} LoRA (policy {result.policy.policy_hash}).</p>",
        "<h2>Rejections by reason</h2><table>",
        *(f"<tr><td>{esc(k)}</td><td>{v}</td></tr>" for k, v in counts.items()),
        "</table><h2>What is missing</h2><ul>",
        *(f"<li>{esc(m.message)}</li>" for m in result.selection.missing),
        "</ul><h2>Charts</h2>",
        *(f"<img src='{esc(p.name)}' alt='{esc(p.stem)}'>" for p in charts),
        "<h2>Contact sheet</h2><div class='grid'>",
    ]
    for c in result.clips:
        m = c.metrics
        thumb = thumbs / f"{m.clip_id}.jpg"
        if c.thumbnail is not None:
            cv2.imwrite(str(thumb), annotate(c.thumbnail, c))
        cls = ("keep" if c.decision.keep else "reject") + (" sel" if c.selected else "")
        lines = [
            f"<b>{esc(m.clip_id)}</b> {'SELECTED' if c.selected else ''} "
            f"{'keep' if c.decision.keep else 'reject'}",
            f"{m.kind} {m.width}x{m.height} {m.duration_s:.1f}s q={m.quality_score:.2f}",
            f"people {m.people_count}, face {m.largest_face_ratio:.0%} "
            f"sharp {m.face_sharpness:.0f}",
            f"angle {m.angle_bucket} (yaw {m.yaw}, pitch {m.pitch}), {m.expression}",
            f"light {m.lighting} luma {m.mean_luma:.0f}, motion {m.motion}"
            + (f" {m.motion_direction}" if m.motion_direction else ""),
            _subject_line(m),
            *(f"<span style='color:#c22'>{esc(r.message)}</span>" for r in c.decision.reasons),
            *(f"<span style='color:#a70'>{esc(r.message)}</span>" for r in c.decision.flags),
        ]
        parts.append(
            f"<div class='card {cls}'><img src='thumbs/{esc(thumb.name)}'><br>"
            + "<br>".join(lines)
            + "</div>"
        )
    parts.append("</div>")
    parts.extend(_build_section(result.build))
    parts.append("</body></html>")
    path = out_dir / "report.html"
    path.write_text("\n".join(parts))
    return path


def _build_section(build: dict[str, Any] | None) -> list[str]:
    """The type's dataset builder (builders/__init__.py): its items with their evidence, what it
    left out and why, its summary (clusters, counts)."""
    if not build:
        return []
    esc = html.escape
    parts = [
        f"<h2>{esc(build['lora_type'])} dataset: {len(build['items'])} items</h2>",
        "<h3>Left out by the builder</h3><table>",
        *(f"<tr><td>{esc(k)}</td><td>{v}</td></tr>" for k, v in build["dropped_counts"].items()),
        "</table><ul>",
        *(f"<li>{esc(m)}</li>" for m in build["missing"]),
        "</ul><h3>Summary</h3><pre>",
        esc(json.dumps(build["summary"], indent=1, default=str)[:20000]),
        "</pre>",
        "<h3>Items</h3><div class='grid'>",
    ]
    for it in build["items"]:
        img = (
            f"<img src='{esc(it['path'])}' style='max-width:320px'><br>"
            if it["path"] and it["kind"] == "image"
            else ""
        )
        ev = ", ".join(f"{esc(str(k))} {esc(str(v))}" for k, v in it["evidence"].items())
        parts.append(
            f"<div class='card keep'>{img}<b>{esc(it['item_id'])}</b> {esc(it['variant'])} "
            f"(clip {esc(it['clip_id'])}, frame {it['frame_index']})<br>{ev}</div>"
        )
    parts.append("</div><h3>Dropped</h3><ul>")
    parts.extend(
        f"<li>{esc(d['clip_id'])} frame {d['frame_index']}: {esc(d['message'])}</li>"
        for d in build["dropped"]
    )
    parts.append("</ul>")
    return parts
