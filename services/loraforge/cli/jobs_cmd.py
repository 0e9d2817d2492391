"""`loraforge jobs`: every job of a tenant (or one project) across the backend services, newest
first: each service's ListJobs on the local stack (a service that does not answer is skipped
with a note), GET /v1/jobs of the key's tenant with --api."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from loraforge.cli.backend import KINDS, Job, backend_of
from loraforge.cli.output import command, console, err_console, json_option, show
from loraforge.runtime.errors import InvalidInput

STATES = ("pending", "running", "succeeded", "failed", "cancelled")
KIND_HELP = f"Only these services ({', '.join(KINDS)}); repeatable."
STATE_HELP = f"Only these states ({', '.join(STATES)}); repeatable."


def register(app: typer.Typer) -> None:
    command(app, "jobs")(jobs)


def jobs(
    ctx: typer.Context,
    project: str = typer.Option(
        "", "--project", "-p", help="Only this project (default: all of the tenant's)."
    ),
    tenant: str = typer.Option("default", "--tenant", help="Tenant whose jobs to list."),
    kind: Annotated[list[str] | None, typer.Option("--kind", "-k", help=KIND_HELP)] = None,
    state: Annotated[list[str] | None, typer.Option("--state", "-s", help=STATE_HELP)] = None,
    limit: int = typer.Option(0, "--limit", help="At most this many jobs per service (0: all)."),
    as_json: bool = json_option("Print one JSON object instead of a table."),
) -> None:
    """List jobs across the services, newest first (with --api: GET /v1/jobs of the key's
    tenant)."""
    kinds = [k.lower() for k in kind or []]
    states = [s.lower() for s in state or []]
    bad_kinds = [k for k in kinds if k not in KINDS]
    if bad_kinds:
        raise InvalidInput(f"unknown --kind {', '.join(bad_kinds)}; choose from {', '.join(KINDS)}")
    bad_states = [s for s in states if s not in STATES]
    if bad_states:
        raise InvalidInput(
            f"unknown --state {', '.join(bad_states)}; choose from {', '.join(STATES)}"
        )
    with backend_of(ctx, tenant) as backend:
        found = backend.list_jobs(project, kinds or list(KINDS), states, limit)
    rows = sorted((_row(j) for j in found.jobs), key=lambda r: r["created_at"] or "", reverse=True)
    view: dict[str, Any] = {"project": project or None, "jobs": rows, "skipped": found.skipped}
    if backend.tenant is None:
        view["api"] = backend.where
    else:
        view["tenant"] = backend.tenant
    show(view, _print)


def _row(job: Job) -> dict[str, Any]:
    return {
        "service": job.service,
        "job_id": job.id,
        "kind": job.kind,
        "tenant": job.tenant,
        "project": job.project,
        "state": job.state,
        "progress": round(job.progress, 4),
        "message": job.message,
        "created_at": job.created_at,
        "updated_at": job.updated_at,
        "finished_at": job.finished_at,
    }


def _print(view: dict[str, Any]) -> None:
    for note in view["skipped"]:
        err_console.print(
            f"[yellow]skipped[/yellow] {note['service']} ({note['target']}): {note['reason']}"
        )
    rows = view["jobs"]
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
