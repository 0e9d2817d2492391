"""`loraforge ingest`: upload local footage (or pass URLs / raw keys), start an ingest job,
follow it to the end and show what came out of each file."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Annotated, Any

import typer

from loraforge.cli.jobs import call, follow, is_terminal, job_state, scope
from loraforge.cli.output import console, emit_json, err_console, fail


def register(app: typer.Typer) -> None:
    app.command("ingest")(ingest)


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
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of tables."),
) -> None:
    """Cut footage into training clips and keyframes (the first pipeline stage)."""
    from loraforge.cli.remote import remote_of

    remote = remote_of(ctx)
    if remote is not None:
        _remote_ingest(
            remote, sources, project, min_s, max_s, fps, max_long_side, wait, as_json, lora_type
        )
        return
    from loraforge.runtime.errors import LoraforgeError, Unavailable
    from loraforge.runtime.keys import ProjectRef
    from loraforge.runtime.settings import load_settings

    try:
        settings = load_settings()
        ref = ProjectRef(tenant, project)
    except LoraforgeError as exc:
        fail(str(exc), as_json=as_json, code=2)
    try:
        keys, local_names = _resolve_sources(settings, ref, sources, as_json)
    except Unavailable as exc:
        fail(f"{exc}", as_json=as_json)
    except LoraforgeError as exc:
        fail(str(exc), as_json=as_json, code=2)

    from loraforge.runtime.grpc_client import sync_channel
    from loraforge.v1 import ingest_pb2, ingest_pb2_grpc

    target = settings.endpoints.ingest
    with sync_channel(target) as channel:
        stub = ingest_pb2_grpc.IngestServiceStub(channel)
        request = ingest_pb2.StartIngestRequest(
            scope=scope(ref.tenant, ref.project),
            request_id=f"cli-{uuid.uuid4().hex}",
            sources=keys,
            min_s=min_s,
            max_s=max_s,
            fps=fps,
            max_long_side=max_long_side or None,  # 0: keep
            lora_type=lora_type,
        )
        job = call(stub.StartIngest, request, service="ingest", target=target, as_json=as_json)
        if wait and not is_terminal(job):
            job = follow(
                stub,
                scope(ref.tenant, ref.project),
                job,
                service="ingest",
                target=target,
                as_json=as_json,
            )
    view = _job_view(job, local_names)
    if as_json:
        emit_json(view)
    else:
        _print(view, waited=wait)
    if view["state"] in ("FAILED", "CANCELLED"):
        raise SystemExit(1)


# -- sources -----------------------------------------------------------------------------------


def _resolve_sources(
    settings: Any, ref: Any, sources: list[str], as_json: bool
) -> tuple[list[str], dict[str, str]]:
    """URLs and raw keys pass through; local paths are uploaded. Returns (job sources, key ->
    local name for the report)."""
    from loraforge.ingest.layout import is_url

    keys: list[str | None] = []
    local: list[Path] = []
    for s in sources:
        if is_url(s) or (s.startswith(ref.prefix) and not Path(s).exists()):
            keys.append(s)
        else:
            keys.append(None)
            local.append(Path(s))
    names: dict[str, str] = {}
    if local:
        from loraforge.ingest.upload import expand_paths, upload_local
        from loraforge.runtime.storage import ObjectStore

        expand_paths(local)  # refuse a missing path before touching the network
        store = ObjectStore.connect(settings.s3)
        store.ensure_buckets()
        with _spinner(as_json, "uploading") as status:

            def on_file(path: Path, i: int, total: int) -> None:
                if status is not None:
                    status.update(f"uploading {i + 1}/{total}: {path.name}")

            uploaded = upload_local(store, ref, local, on_file=on_file)
        for u in uploaded:
            names[u.key] = str(u.path)
        if not as_json:
            new = sum(u.created for u in uploaded)
            console.print(f"uploaded {new} new file(s), {len(uploaded) - new} already stored")
        uploaded_keys = list(dict.fromkeys(u.key for u in uploaded))
    else:
        uploaded_keys = []
    out = [k for k in keys if k is not None] + uploaded_keys
    return out, names


class _NoSpinner:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _spinner(as_json: bool, text: str) -> Any:
    return _NoSpinner() if as_json else err_console.status(text)


# -- remote (--api) ---------------------------------------------------------------------------


def _remote_ingest(
    remote: Any,
    sources: list[str],
    project: str,
    min_s: float,
    max_s: float,
    fps: float,
    max_long_side: int,
    wait: bool,
    as_json: bool,
    lora_type: str = "",
) -> None:
    """The same job through the gateway: local files are uploaded with POST .../uploads (the
    tenant is the API key's), URLs and raw keys pass through."""
    from loraforge.ingest.layout import is_url
    from loraforge.runtime.errors import LoraforgeError

    with remote:
        remote.ensure_project(project, as_json=as_json)
        keys: list[str] = []
        local: list[str] = []
        for s in sources:
            parts = s.split("/")
            if is_url(s) or (not Path(s).exists() and len(parts) > 2 and parts[1] == project):
                keys.append(s)
            else:
                local.append(s)
        names: dict[str, str] = {}
        if local:
            from loraforge.ingest.upload import expand_paths

            try:
                files = expand_paths(local)
            except LoraforgeError as exc:
                fail(str(exc), as_json=as_json, code=2)
            new = 0
            with _spinner(as_json, "uploading") as status:
                for i, path in enumerate(files):
                    if status is not None:
                        status.update(f"uploading {i + 1}/{len(files)}: {path.name}")
                    up = remote.upload(project, path, as_json=as_json)
                    names[up["key"]] = str(path)
                    new += bool(up.get("created"))
                    keys.append(up["key"])
            if not as_json:
                console.print(f"uploaded {new} new file(s), {len(files) - new} already stored")
        body = {
            "sources": list(dict.fromkeys(keys)),
            "min_s": min_s,
            "max_s": max_s,
            "fps": fps,
            "max_long_side": max_long_side or None,
        }
        if lora_type:
            body["lora_type"] = lora_type
        job = remote.start(project, "ingest", body, as_json=as_json)
        if wait and job["state"] not in ("SUCCEEDED", "FAILED", "CANCELLED"):
            job = remote.follow(project, "ingest", job, as_json=as_json)
    head = {
        "job_id": job["id"],
        "state": job["state"],
        "message": job.get("message", ""),
        "tenant": None,
        "project": job.get("project", project),
        "progress": job.get("progress", 0.0),
        "api": remote.api,
    }
    view = _view(head, job.get("result") or {}, names)
    if as_json:
        emit_json(view)
    else:
        view["tenant"] = "(key's tenant)"
        _print(view, waited=wait)
    if view["state"] in ("FAILED", "CANCELLED"):
        raise SystemExit(1)


# -- output ------------------------------------------------------------------------------------


def _job_view(job: Any, local_names: dict[str, str]) -> dict[str, Any]:
    from loraforge.runtime.servicers import dict_from_struct

    return _view(
        {
            "job_id": job.id,
            "state": job_state(job),
            "message": job.message,
            "tenant": job.tenant,
            "project": job.project,
            "progress": job.progress,
        },
        dict_from_struct(job.result),
        local_names,
    )


def _view(
    head: dict[str, Any], result: dict[str, Any], local_names: dict[str, str]
) -> dict[str, Any]:
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
    console.print(
        f"job [bold]{view['job_id']}[/bold] [{color}]{view['state']}[/{color}] "
        f"({view['tenant']}/{view['project']}): {view['message']}"
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
