"""The evaluation report a user reads before shipping a LoRA: the per-checkpoint table, plots
over steps and a short explanation of the choice, as Markdown and as a self-contained HTML page
(plots next to it as PNG files).

Plots use matplotlib's object API (``Figure`` with the Agg canvas) rather than pyplot, so no
global backend state is touched and reports can be written from worker threads.
"""

from __future__ import annotations

import csv
import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from loraforge.evaluation.choose import CheckpointChoice
from loraforge.evaluation.diversity import COLLAPSE_THRESHOLD
from loraforge.evaluation.validation import ValidationLog

COLUMNS = [
    "step",
    "total",
    "likeness",
    "identity_mean",
    "identity_p10",
    "face_rate",
    "match_rate",
    "collapse_similarity",
    "collapsed",
    "adherence",
    "clip_score",
    "val_loss",
    "chosen",
]


@dataclass(frozen=True)
class ReportFiles:
    markdown: Path
    html: Path
    csv: Path
    plots: dict[str, Path]


def _plot(
    path: Path,
    title: str,
    ylabel: str,
    series: Sequence[tuple[str, Sequence[int], Sequence[float | None]]],  # None: not measured
    chosen: int | None,
    hline: tuple[float, str] | None = None,
) -> Path:
    fig = Figure(figsize=(6, 3.2), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for label, xs, ys in series:
        pts = [(x, y) for x, y in zip(xs, ys, strict=True) if y is not None]
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label)
    if hline is not None:
        ax.axhline(hline[0], color="red", linestyle="--", linewidth=1, label=hline[1])
    if chosen is not None:
        ax.axvline(chosen, color="green", linestyle=":", linewidth=1.5, label=f"chosen {chosen}")
    ax.set_title(title)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path


def _cells(row: Mapping[str, object]) -> list[tuple[str, object]]:
    """(column, value) of a checkpoint row in the report's column order."""
    return [(c, row[c]) for c in COLUMNS]


def _fmt(v: object) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def write_report(
    choice: CheckpointChoice,
    out_dir: Path | str,
    validation: ValidationLog | None = None,
    title: str = "LoRA evaluation",
) -> ReportFiles:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = choice.rows
    steps = [r["step"] for r in rows]
    plots = {
        "identity": _plot(
            out / "identity.png",
            "Identity similarity",
            "similarity (0.5 = same person threshold)",
            [
                ("mean", steps, [r["identity_mean"] for r in rows]),
                ("p10", steps, [r["identity_p10"] for r in rows]),
                ("face found rate", steps, [r["face_rate"] for r in rows]),
            ],
            choice.step,
            (0.5, "same-person threshold"),
        ),
        "collapse": _plot(
            out / "collapse.png",
            "Non-face similarity across renders",
            "mean pairwise similarity",
            [("collapse similarity", steps, [r["collapse_similarity"] for r in rows])],
            choice.step,
            (rows[0].get("collapse_threshold", COLLAPSE_THRESHOLD), "collapse threshold"),
        ),
    }
    if any(r["adherence"] is not None for r in rows):
        plots["adherence"] = _plot(
            out / "adherence.png",
            "Prompt adherence (CLIP)",
            "normalised CLIP cosine",
            [("adherence", steps, [r["adherence"] for r in rows])],
            choice.step,
        )
    v_steps, v_loss = validation.series() if validation is not None else ([], [])
    if not v_steps:
        v_steps = [r["step"] for r in rows if r["val_loss"] is not None]
        v_loss = [r["val_loss"] for r in rows if r["val_loss"] is not None]
    if v_steps:
        plots["validation_loss"] = _plot(
            out / "validation_loss.png",
            "Held-out denoising loss",
            "loss",
            [("validation loss", v_steps, v_loss)],
            choice.step,
        )

    with (out / "checkpoints.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)

    header = "| " + " | ".join(COLUMNS) + " |"
    sep = "|" + "---|" * len(COLUMNS)
    body = [
        "| "
        + " | ".join(
            ("**" + _fmt(cell) + "**") if r.get("chosen") and c == "step" else _fmt(cell)
            for c, cell in _cells(r)
        )
        + " |"
        for r in rows
    ]
    adh_note = next((r["adherence_note"] for r in rows if r["adherence_note"]), "")
    md = [
        f"# {title}",
        "",
        f"**Chosen checkpoint: step {choice.step}**",
        "",
        f"Why: {choice.reason}.",
        "",
        f"Objective: `{choice.objective}`.",
        "",
    ]
    if not choice.adherence_used:
        md += [
            f"Prompt adherence was not used: {adh_note or 'not scored for every checkpoint'}.",
            "",
        ]
    md += ["## Checkpoints", "", header, sep, *body, "", "## Plots", ""]
    md += [f"![{k}]({p.name})" for k, p in plots.items()]
    md_path = out / "report.md"
    md_path.write_text("\n".join(md) + "\n")

    th = "".join(f"<th>{html.escape(c)}</th>" for c in COLUMNS)
    trs = "".join(
        ("<tr style='background:#dfd'>" if r.get("chosen") else "<tr>")
        + "".join(f"<td>{html.escape(_fmt(cell))}</td>" for _c, cell in _cells(r))
        + "</tr>"
        for r in rows
    )
    imgs = "".join(
        f"<img src='{html.escape(p.name)}' alt='{html.escape(k)}'>" for k, p in plots.items()
    )
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
        "</title><style>body{font-family:sans-serif}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:3px 6px}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><p><b>Chosen checkpoint: step {choice.step}</b></p>"
        f"<p>Why: {html.escape(choice.reason)}.</p>"
        f"<p>Objective: <code>{html.escape(choice.objective)}</code></p>"
        + (
            ""
            if choice.adherence_used
            else f"<p>Prompt adherence not used: {html.escape(adh_note or 'not scored')}</p>"
        )
        + f"<table><tr>{th}</tr>{trs}</table><h2>Plots</h2>{imgs}</body></html>"
    )
    html_path = out / "report.html"
    html_path.write_text(page)
    return ReportFiles(md_path, html_path, out / "checkpoints.csv", plots)


def write_loss_curve(
    path: Path | str,
    train_losses: Sequence[float],
    first_step: int = 1,
    eval_losses: dict[int, float] | None = None,
) -> Path:
    """Training loss per optimizer step (raw, and a moving average: a flow-matching loss is
    dominated by the sampled timestep, so single steps are noise) plus the validation loss."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(7, 3.4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    steps = list(range(first_step, first_step + len(train_losses)))
    if train_losses:
        ax.plot(steps, train_losses, color="#9ab", linewidth=0.8, label="train loss")
        window = max(1, min(50, len(train_losses) // 10))
        if window > 1:
            avg = [
                sum(train_losses[max(0, i - window + 1) : i + 1]) / (i + 1 - max(0, i - window + 1))
                for i in range(len(train_losses))
            ]
            ax.plot(steps, avg, color="#246", linewidth=1.6, label=f"moving average ({window})")
    if eval_losses:
        xs = sorted(eval_losses)
        ax.plot(
            xs,
            [eval_losses[x] for x in xs],
            color="#c50",
            marker="o",
            label="validation loss (held-out clips, fixed noise/timesteps)",
        )
    ax.set_title("Loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path
