"""`loraforge jobs`: every job of a tenant (or one project) across the backend services, newest
first, from each service's ListJobs. A service that does not answer is skipped with a note."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Any

import typer

from loraforge.cli.output import console, emit_json, err_console, fail

KINDS = ("ingest", "curation", "captioning", "trainer", "render")
STATES = ("pending", "running", "succeeded", "failed", "cancelled")
LIST_TIMEOUT_S = 5.0
KIND_HELP = f"Only these services ({', '.join(KINDS)}); repeatable."
STATE_HELP = f"Only these states ({', '.join(STATES)}); repeatable."


def register(app: typer.Typer) -> None:
    app.command("jobs")(jobs)


def _stub(kind: str, channel: Any) -> Any:
    from loraforge.v1 import (
        captioning_pb2_grpc,
        curation_pb2_grpc,
        ingest_pb2_grpc,
        render_pb2_grpc,
        trainer_pb2_grpc,
    )

    return {
        "ingest": ingest_pb2_grpc.IngestServiceStub,
        "curation": curation_pb2_grpc.CurationServiceStub,
        "captioning": captioning_pb2_grpc.CaptioningServiceStub,
        "trainer": trainer_pb2_grpc.TrainerServiceStub,
        "render": render_pb2_grpc.RenderServiceStub,
    }[kind](channel)


def jobs(
    ctx: typer.Context,
    project: str = typer.Option(
        "", "--project", "-p", help="Only this project (default: all of the tenant's)."
    ),
    tenant: str = typer.Option("default", "--tenant", help="Tenant whose jobs to list."),
    kind: Annotated[list[str] | None, typer.Option("--kind", "-k", help=KIND_HELP)] = None,
    state: Annotated[list[str] | None, typer.Option("--state", "-s", help=STATE_HELP)] = None,
    limit: int = typer.Option(0, "--limit", help="At most this many jobs per service (0: all)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of a table."),
) -> None:
    """List jobs across the services, newest first (with --api: GET /v1/jobs of the key's
    tenant)."""
    from loraforge.runtime.errors import LoraforgeError
    from loraforge.runtime.settings import load_settings

    kind, state = kind or [], state or []
    bad_kinds = [k for k in kind if k.lower() not in KINDS]
    if bad_kinds:
        fail(
            f"unknown --kind {', '.join(bad_kinds)}; choose from {', '.join(KINDS)}",
            as_json=as_json,
            code=2,
        )
    bad_states = [s for s in state if s.lower() not in STATES]
    if bad_states:
        fail(
            f"unknown --state {', '.join(bad_states)}; choose from {', '.join(STATES)}",
            as_json=as_json,
            code=2,
        )
    from loraforge.cli.remote import remote_of

    remote = remote_of(ctx)
    if remote is not None:
        _remote_jobs(remote, project, kind, state, limit, as_json)
        return
    try:
        settings = load_settings()
        if project:
            from loraforge.runtime.keys import ProjectRef

            ProjectRef(tenant, project)  # validates both names
    except LoraforgeError as exc:
        fail(str(exc), as_json=as_json, code=2)

    kinds = [k.lower() for k in kind] or list(KINDS)
    states = [s.lower() for s in state]
    with ThreadPoolExecutor(max_workers=len(kinds)) as pool:
        answers = list(
            pool.map(
                lambda k: _list(k, getattr(settings.endpoints, k), tenant, project, states, limit),
                kinds,
            )
        )
    rows = sorted(
        (j for found, _ in answers for j in found),
        key=lambda j: j["created_at"] or "",
        reverse=True,
    )
    skipped = [note for _, note in answers if note]
    if as_json:
        emit_json({"tenant": tenant, "project": project or None, "jobs": rows, "skipped": skipped})
        return
    for note in skipped:
        err_console.print(
            f"[yellow]skipped[/yellow] {note['service']} ({note['target']}): {note['reason']}"
        )
    _print(rows)


def _remote_jobs(
    remote: Any, project: str, kind: list[str], state: list[str], limit: int, as_json: bool
) -> None:
    params: list[tuple[str, Any]] = [("kind", k.lower()) for k in kind]
    params += [("state", s.upper()) for s in state]
    if project:
        params.append(("project", project))
    if limit:
        params.append(("limit", min(limit, 1000)))
    with remote:
        found = remote.request("GET", "/v1/jobs", params=params, as_json=as_json)["jobs"]
    rows = [
        {
            "service": j["kind"],
            "job_id": j["id"],
            "kind": j["kind"],
            "tenant": None,
            "project": j["project"],
            "state": j["state"],
            "progress": round(j.get("progress", 0.0), 4),
            "message": j.get("message", ""),
            "created_at": j.get("created_at"),
            "updated_at": j.get("updated_at"),
            "finished_at": j.get("finished_at"),
        }
        for j in found
    ]
    if as_json:
        emit_json({"api": remote.api, "project": project or None, "jobs": rows, "skipped": []})
        return
    _print(rows)


def _list(
    kind: str, target: str, tenant: str, project: str, states: list[str], limit: int
) -> tuple[list[dict[str, Any]], dict[str, str] | None]:
    import grpc

    from loraforge.runtime.grpc_client import sync_channel, unavailable_hint
    from loraforge.v1 import common_pb2

    request = common_pb2.ListJobsRequest(
        scope=common_pb2.ProjectScope(tenant=tenant, project=project),
        states=[common_pb2.JobState.Value(f"JOB_STATE_{s.upper()}") for s in states],
        page_size=max(0, limit),
    )
    try:
        with sync_channel(target) as channel:
            response = _stub(kind, channel).ListJobs(request, timeout=LIST_TIMEOUT_S)
    except grpc.RpcError as exc:
        code = exc.code()
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            reason = unavailable_hint(target, kind)
        else:
            reason = f"{code.name}: {exc.details()}"
        return [], {"service": kind, "target": target, "reason": reason}
    return [_row(kind, j) for j in response.jobs], None


def _row(kind: str, job: Any) -> dict[str, Any]:
    from loraforge.cli.jobs import job_state

    def ts(field: str) -> str | None:
        return getattr(job, field).ToDatetime().isoformat() + "Z" if job.HasField(field) else None

    return {
        "service": kind,
        "job_id": job.id,
        "kind": job.kind or kind,
        "tenant": job.tenant,
        "project": job.project,
        "state": job_state(job),
        "progress": round(job.progress, 4),
        "message": job.message,
        "created_at": ts("created_at"),
        "updated_at": ts("updated_at"),
        "finished_at": ts("finished_at"),
    }


def _print(rows: list[dict[str, Any]]) -> None:
    from rich.table import Table

    if not rows:
        console.print("no jobs")
        return
    colors = {"SUCCEEDED": "green", "FAILED": "red", "CANCELLED": "yellow", "RUNNING": "cyan"}
    table = Table("created", "service", "project", "job", "state", "progress", "message")
    for r in rows:
        color = colors.get(r["state"], "white")
        table.add_row(
            (r["created_at"] or "")[:19].replace("T", " "),
            r["service"],
            r["project"],
            r["job_id"],
            f"[{color}]{r['state']}[/{color}]",
            f"{100 * r['progress']:.0f}%",
            r["message"][:80],
        )
    console.print(table)
    console.print(f"{len(rows)} job(s)")
