"""`loraforge ingest`: upload local footage (or pass URLs / raw keys), start an ingest job,
follow it to the end and show what came out of each file."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Annotated, Any

import typer

from loraforge.cli.backend import Backend, Job, backend_of
from loraforge.cli.jobs import follow
from loraforge.cli.output import (
    EXIT_FAILED,
    command,
    console,
    err_console,
    json_option,
    show,
    wants_json,
)
from loraforge.ingest.layout import is_url
from loraforge.ingest.upload import expand_paths


def register(app: typer.Typer) -> None:
    command(app, "ingest")(ingest)


def ingest(
    ctx: typer.Context,
    sources: Annotated[
        list[str],
        typer.Argument(
            metavar="PATH_OR_URL...",
            show_default=False,
            help="Videos, photos, folders, zips, http(s) URLs, or keys already in the raw bucket "
            "(<tenant>/<project>/...).",
        ),
    ],
    project: str = typer.Option(..., "--project", "-p", help="Project name, e.g. jane-doe."),
    tenant: str = typer.Option("default", "--tenant", help="Tenant the project belongs to."),
    min_s: float = typer.Option(2.0, "--min-s", help="Shortest clip, seconds."),
    max_s: float = typer.Option(5.0, "--max-s", help="Longest clip, seconds."),
    fps: float = typer.Option(
        16.0, "--fps", help="Frame rate of the clips (a slower source keeps its own)."
    ),
    max_long_side: int = typer.Option(
        0, "--max-long-side", help="Cap on the clips' longest side in pixels (0: keep)."
    ),
    lora_type: str = typer.Option(
        "",
        "--type",
        help="LoRA type the clips are for (character, expression, pose, style, background, "
        "lighting, effect): the automatic curation after ingest uses its policy. "
        "Default: the project's captioning defaults' type, else character.",
    ),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="Follow the job until it ends."),
    as_json: bool = json_option(),
) -> None:
    """Cut footage into training clips and keyframes (the first pipeline stage)."""
    with backend_of(ctx, tenant) as backend:
        backend.ensure_project(project)  # ingest is the first stage: it may make the project
        keys, local_names = _resolve_sources(backend, project, sources)
        job = backend.start(
            "ingest",
            project,
            {
                "sources": keys,
                "min_s": min_s,
                "max_s": max_s,
                "fps": fps,
                "max_long_side": max_long_side or None,  # 0: keep
                "lora_type": lora_type or None,
            },
        )
        if wait and not job.terminal:
            job = follow(backend, job)
    view = _view(job, backend, local_names)
    show(view, lambda v: _print(v, waited=wait))
    if job.state in ("FAILED", "CANCELLED"):
        raise SystemExit(EXIT_FAILED)  # the view says why


# -- sources -----------------------------------------------------------------------------------


def _resolve_sources(
    backend: Backend, project: str, sources: list[str]
) -> tuple[list[str], dict[str, str]]:
    """URLs and keys already in the raw bucket (`<tenant>/<project>/...`) pass through; local
    paths are uploaded. Returns (job sources, key -> local name for the report)."""
    keys: list[str] = []
    local: list[str] = []
    for s in sources:
        parts = s.split("/")
        stored = (
            len(parts) > 2
            and parts[1] == project
            and (backend.tenant is None or parts[0] == backend.tenant)
        )
        if is_url(s) or (stored and not Path(s).exists()):
            keys.append(s)
        else:
            local.append(s)
    names: dict[str, str] = {}
    if local:
        files = expand_paths(local)  # refuse a missing path before touching the network
        quiet = wants_json()
        with err_console.status("uploading") if not quiet else nullcontext() as status:

            def on_file(path: Path, i: int, total: int) -> None:
                if status is not None:
                    status.update(f"uploading {i + 1}/{total}: {path.name}")

            uploaded = backend.upload_sources(project, files, on_file)
        for u in uploaded:
            names[u.key] = str(u.path)
            keys.append(u.key)
        if not quiet:
            new = sum(u.created for u in uploaded)
            console.print(f"uploaded {new} new file(s), {len(uploaded) - new} already stored")
    return list(dict.fromkeys(keys)), names


# -- output ------------------------------------------------------------------------------------


def _view(job: Job, backend: Backend, local_names: dict[str, str]) -> dict[str, Any]:
    """What `ingest` reports: the job and each source's clips, under the user's own names."""
    result = job.result
    head = {
        "job_id": job.id,
        "state": job.state,
        "message": job.message,
        "tenant": job.tenant,
        "project": job.project,
        "progress": job.progress,
    }
    if backend.tenant is None:  # over HTTP: the key's tenant, and which gateway
        head["api"] = backend.where
    sources = []
    for r in result.get("sources", []):
        name = local_names.get(r.get("source", ""), r.get("source"))
        error = r.get("error")
        key_name = str(r.get("source", "")).rsplit("/", 1)[-1]
        if error and r.get("source") in local_names and key_name:
            # The service names uploads by content hash; show the user's file name instead.
            error = error.replace(key_name, Path(local_names[r["source"]]).name)
        if r.get("archive"):
            name = f"{name} :: {r.get('file')}"
        sources.append(
            {
                "source": name,
                "key": r.get("source"),
                "clips": int(r.get("clips") or 0),
                "skipped": r.get("skipped") or [],
                "error": error,
                "reused": bool(r.get("reused")),
                "manifest": r.get("manifest_key"),
                "frame_rate": r.get("frame_rate"),
            }
        )
    return {
        **head,
        "clips": int(result.get("clips") or 0),
        "sources": sources,
        "errors": [s for s in sources if s["error"]],
    }


def _print(view: dict[str, Any], *, waited: bool) -> None:
    from rich.table import Table

    color = {"SUCCEEDED": "green", "FAILED": "red", "CANCELLED": "yellow"}.get(
        view["state"], "cyan"
    )
    tenant = view["tenant"] or "(key's tenant)"
    console.print(
        f"job [bold]{view['job_id']}[/bold] [{color}]{view['state']}[/{color}] "
        f"({tenant}/{view['project']}): {view['message']}"
    )
    if not view["sources"]:
        if not waited:
            console.print("not waiting for it (--no-wait)")
        return
    table = Table("source", "clips", "skipped", "note")
    for s in view["sources"]:
        note = (
            f"[red]{s['error']}[/red]"
            if s["error"]
            else ("already ingested" if s["reused"] else "")
        )
        rate = s.get("frame_rate") or {}
        if rate.get("below_target"):  # clips keep the slower rate: never padded with repeats
            note = (f"{note}; " if note else "") + (
                f"[yellow]{rate['source_fps']:g} fps source, below "
                f"{rate['target_fps']:g} fps: clips keep its rate[/yellow]"
            )
        table.add_row(s["source"], str(s["clips"]), str(len(s["skipped"])), note)
    console.print(table)
    console.print(f"{view['clips']} clip(s) in total, {len(view['errors'])} file(s) with errors")
