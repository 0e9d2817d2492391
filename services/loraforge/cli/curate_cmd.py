"""`loraforge curate`: select a training set from a project's ingested clips.

Reference photos are local files, uploaded once (content-addressed: the raw bucket on the local
stack, POST .../uploads through a gateway); the job runs in the curation service; the result is
read back from the dataset it stored.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from loraforge.cli.backend import Dataset, Job, backend_of, check_photo
from loraforge.cli.jobs import follow
from loraforge.cli.output import JobFailed, command, console, json_option, show, wants_json
from loraforge.runtime.errors import InvalidInput
from loraforge.runtime.params import LoraType


def register(app: typer.Typer) -> None:
    command(app, "curate")(curate)


def parse_overrides(items: list[str], option: str = "--set") -> dict[str, Any]:
    """KEY=VALUE items, each value JSON when it parses as JSON, else the string."""
    out: dict[str, Any] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise InvalidInput(f"{option} {item!r}: write it as KEY=VALUE, e.g. max_people=1")
        try:
            out[name.strip()] = json.loads(value)
        except ValueError:
            out[name.strip()] = value
    return out


def curate(
    ctx: typer.Context,
    project: str = typer.Option(
        ..., "--project", "-p", help="Project whose ingested clips to curate."
    ),
    tenant: str = typer.Option("default", "--tenant", help="Tenant the project belongs to."),
    reference: Annotated[
        list[Path] | None,
        typer.Option(
            "--reference", "-r", help="Reference photo of the subject (repeat for several)."
        ),
    ] = None,
    # no default of its own: the policy's (50-80 clips, 20-30 photos) is the automatic curation's
    # too, so a plain `curate` after ingest finds that job's dataset instead of curating again
    target: int | None = typer.Option(
        None,
        "--target",
        min=1,
        max=10_000,
        help="Clips to select [default: the policy's, 80 clips / 30 photos].",
    ),
    lora_type: Annotated[
        LoraType, typer.Option("--type", help="What the LoRA learns.")
    ] = LoraType.CHARACTER,
    policy: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="Policy override KEY=VALUE (JSON value), e.g. --set min_short_side_px=256.",
        ),
    ] = None,
    identity_cluster: int | None = typer.Option(
        None,
        "--identity-cluster",
        min=0,
        help="Character/expression: the identity cluster to train on (the report lists them; "
        "0 is the largest) when no --reference names the person; by default, the one with the "
        "most clips where that person is alone.",
    ),
    build: Annotated[
        list[str] | None,
        typer.Option(
            "--build",
            help="Option of the type's dataset builder KEY=VALUE (JSON value), e.g. "
            "--build cutout=true, --build inpainter=lama.",
        ),
    ] = None,
    wait: bool = typer.Option(
        True, "--wait/--no-wait", help="Wait for the job and show the result."
    ),
    as_json: bool = json_option("Print machine-readable JSON (every clip)."),
) -> None:
    """Measure every ingested clip, reject unusable ones, select a balanced training set."""
    overrides = parse_overrides(policy or [])
    # both are policy fields (identity_cluster, build_options): one path to the service
    if identity_cluster is not None:
        overrides["identity_cluster"] = identity_cluster
    if build:
        overrides["build_options"] = parse_overrides(build, "--build")
    references = reference or []
    for path in references:  # before anything is uploaded or started
        check_photo(path)
    with backend_of(ctx, tenant) as backend:
        keys = [backend.upload_reference(project, path) for path in references]
        job = backend.start(
            "curation",
            project,
            {
                "reference_keys": keys,
                "target_size": target,
                "lora_type": lora_type.value,
                "policy_overrides": overrides,
            },
        )
        if not wait:
            show(
                {"job_id": job.id, "state": job.state},
                lambda v: console.print(
                    f"curation job [bold]{v['job_id']}[/bold] started "
                    f"(references: {len(keys)}); follow it with --wait"
                ),
            )
            return
        job = follow(backend, job)
        if job.state != "SUCCEEDED":
            raise JobFailed(f"curation job {job.id} {job.state.lower()}: {job.message}")
        dataset = backend.dataset(project, job, with_clips=wants_json())
    show(_view(job, dataset), _print)


def _view(job: Job, dataset: Dataset) -> dict[str, Any]:
    view: dict[str, Any] = {
        "job_id": job.id,
        "state": job.state,
        "dataset_id": dataset.id,
        "lora_type": dataset.lora_type,
        "policy_hash": dataset.policy_hash,
        "target_size": dataset.target_size,
        "counts": dataset.counts,
        "rejection_counts": dataset.rejection_counts,
        "missing": dataset.missing,
        "report": dataset.report,
    }
    if dataset.selected is not None:  # the local stack's records say which clips, and why
        view["selected"] = dataset.selected
    if dataset.clips is not None:
        view["clips"] = dataset.clips
    return view


def _print(view: dict[str, Any]) -> None:
    counts = view["counts"]
    console.print(
        f"[green]dataset {view['dataset_id']}[/green]: {counts.get('selected', 0)} selected "
        f"(target {view['target_size'] or 'default'}), {counts.get('kept', 0)} kept, "
        f"{counts.get('rejected', 0)} rejected of {counts.get('clips', 0)} clips"
    )
    console.print(f"policy: {view['lora_type']} LoRA (policy {view['policy_hash'] or '?'})")
    if view["rejection_counts"]:
        table = Table("rejected because", "clips")
        for reason, n in view["rejection_counts"].items():
            table.add_row(reason, str(n))
        console.print(table)
    if view["missing"]:
        console.print("[yellow]missing for a balanced set:[/yellow]")
        for line in view["missing"]:
            console.print(f"  - {line}")
    report = view["report"]
    if report.get("url"):
        console.print(f"report: {report['url']}")
    elif report.get("key"):
        console.print(f"report: s3://{report['bucket']}/{report['key']}")
