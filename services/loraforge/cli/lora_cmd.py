"""`loraforge lora list|show|promote|tag|rm|checkpoints`: the project's LoRA library
(loraforge.library). Against the local stack the CLI reads and writes the library in the
object store itself (as `lora pull` does); with `--api URL --key KEY` it calls the gateway's
`/v1/projects/{p}/loras` routes. Both apply the same rules (library/store.py).

A training run is not a release: nothing is added to the library until someone promotes a
run (`loraforge lora promote RUN --name NAME`), by default its automatic pick, or another
checkpoint with `--checkpoint step-N --reason "..."`. The hosted fine-tune API is the one
exception: a fine-tune's `finetuned_output` name gets the automatic pick as version 1 when it
succeeds, because seed 004's users deploy that name directly.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from loraforge.cli.backend import backend_of
from loraforge.cli.output import Command, console, json_option, show
from loraforge.cli.train_cmd import lora_app
from loraforge.library import parse_spec
from loraforge.runtime.errors import InvalidInput

PROJECT = typer.Option(..., "--project", "-p", help="Project of the library.")
TENANT = typer.Option("default", "--tenant", help="Tenant the project belongs to (local stack).")
AS_JSON = json_option("Print one JSON object.")


def register(app: typer.Typer) -> None:
    """Adds its commands to the `lora` group (train_cmd.lora_app, already on `app`)."""
    del app


def _print_version(v: dict[str, Any]) -> None:
    console.print(
        f"[bold]{v['ref']}[/bold]  {v['base_preset']} ({v.get('family', '')}), "
        f"type {v.get('lora_type') or '-'}, trigger {v.get('trigger') or '-'}"
    )
    console.print(f"  run {v['run_id']} {v['checkpoint']} ({v['chosen']}): {v['reason']}")
    strength = v.get("recommended_strength")
    console.print(
        f"  strength {strength if strength is not None else '-'}; dataset "
        f"{v.get('dataset_id') or '-'}; file {v['lora_key']}"
    )
    scores = {
        k: s
        for k, s in (v.get("scores") or {}).items()
        if k in ("val_loss", "likeness", "basis") and s is not None
    }
    if scores:
        console.print("  scores " + ", ".join(f"{k} {s}" for k, s in scores.items()))


@lora_app.command(cls=Command, name="list")
def list_(
    ctx: typer.Context, project: str = PROJECT, tenant: str = TENANT, as_json: bool = AS_JSON
) -> None:
    """Every LoRA name of the project with its aliases and versions."""
    with backend_of(ctx, tenant) as backend:
        rows = backend.loras(project)
    show({"loras": rows}, lambda v: _print_list(project, v["loras"]))


def _print_list(project: str, rows: list[dict[str, Any]]) -> None:
    if not rows:
        console.print(
            f"no LoRAs in {project} yet; promote a run with `loraforge lora promote "
            "RUN --name NAME`"
        )
    for row in rows:
        aliases = ", ".join(f"{a}->{v}" for a, v in sorted(row["aliases"].items()))
        console.print(f"{row['name']}: {len(row['versions'])} version(s); {aliases}")


@lora_app.command(cls=Command, name="show")
def show_(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="NAME (all versions), NAME:N or NAME:ALIAS.")],
    project: str = PROJECT,
    tenant: str = TENANT,
    as_json: bool = AS_JSON,
) -> None:
    """One version (NAME:N, NAME:ALIAS), or a name's versions and aliases (NAME)."""
    name, _, _ = parse_spec(ref)
    with backend_of(ctx, tenant) as backend:
        out = backend.lora(project, ref)
    show(out, _print_version if ":" in ref else lambda v: _print_name(name, v))


def _print_name(name: str, out: dict[str, Any]) -> None:
    console.print(
        f"[bold]{name}[/bold] aliases: "
        + ", ".join(f"{a}->{v}" for a, v in sorted(out["aliases"].items()))
    )
    for v in out["versions"]:
        _print_version(v)


@lora_app.command(cls=Command, name="promote")
def promote(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(help="A succeeded training run (job id).")],
    name: str = typer.Option(..., "--name", help="The LoRA's name in the library."),
    checkpoint: str | None = typer.Option(
        None,
        "--checkpoint",
        help=(
            "best (the run's automatic pick, default), last, or step-N (see `loraforge "
            "lora checkpoints RUN`)."
        ),
    ),
    reason: str = typer.Option(
        "", "--reason", help="Why this checkpoint (required when it is not the automatic pick)."
    ),
    project: str = PROJECT,
    tenant: str = TENANT,
    as_json: bool = AS_JSON,
) -> None:
    """Add a run's checkpoint to the library as NAME:N (N = the next version); `latest`
    moves to it."""
    with backend_of(ctx, tenant) as backend:
        out = backend.promote(project, run_id, name, checkpoint, reason)
    show(out, _print_version)


@lora_app.command(cls=Command, name="tag")
def tag(
    ctx: typer.Context,
    ref: Annotated[
        str,
        typer.Argument(help="NAME:N, the version the alias points at (NAME alone with --remove)."),
    ],
    alias: Annotated[str, typer.Argument(help="Alias: prod, staging, any non-numeric slug.")],
    remove: bool = typer.Option(False, "--remove", help="Delete the alias instead."),
    project: str = PROJECT,
    tenant: str = TENANT,
    as_json: bool = AS_JSON,
) -> None:
    """Point ALIAS at NAME:N (moving it when it points elsewhere), or remove it."""
    name, version, _ = parse_spec(ref)
    if remove:
        with backend_of(ctx, tenant) as backend:
            out = backend.untag(project, name, alias)
    else:
        if ":" not in ref or version is None:
            raise InvalidInput(f"{ref!r}: name the version to tag, e.g. {name}:3")
        with backend_of(ctx, tenant) as backend:
            out = backend.tag(project, name, version, alias)
    show(
        out or {"removed": f"{name}:{alias}"},
        lambda v: console.print(
            f"removed {name}:{alias}" if remove else f"{name}:{alias} -> {name}:{version}"
        ),
    )


@lora_app.command(cls=Command, name="rm")
def rm(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="NAME:N, the version to delete.")],
    project: str = PROJECT,
    tenant: str = TENANT,
    as_json: bool = AS_JSON,
) -> None:
    """Delete a version (refused while a deployment uses it)."""
    name, version, _ = parse_spec(ref)
    if version is None:
        raise InvalidInput(
            f"{ref!r}: name a version number, e.g. {name}:3 (aliases move; versions are "
            "deleted one by one)"
        )
    with backend_of(ctx, tenant) as backend:
        out = backend.delete_version(project, name, version)
    show(
        out,
        lambda v: console.print(
            f"deleted {v['deleted']}"
            + (f"; latest is now {name}:{v['latest_now']}" if v.get("latest_now") else "")
        ),
    )


@lora_app.command(cls=Command, name="checkpoints")
def checkpoints(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(help="A succeeded training run (job id).")],
    project: str = PROJECT,
    tenant: str = TENANT,
    as_json: bool = AS_JSON,
) -> None:
    """A run's checkpoints: which one is the automatic pick, their scores, promotable or not."""
    with backend_of(ctx, tenant) as backend:
        rows = backend.checkpoints(project, run_id)
    show({"run_id": run_id, "checkpoints": rows}, lambda v: _print_checkpoints(v["checkpoints"]))


def _print_checkpoints(rows: list[dict[str, Any]]) -> None:
    for c in rows:
        marks = " ".join(
            m for m, on in (("automatic pick", c["automatic_pick"]), ("last", c["last"])) if on
        )
        loss = f"val loss {c['val_loss']:.4f}" if c.get("val_loss") is not None else "no val loss"
        console.print(
            f"{c['name']}: {loss}"
            + (f" [{marks}]" if marks else "")
            + ("" if c["promotable"] else f" (not promotable: {c['why_not']})")
        )
