"""`loraforge stack up|down|status`: the local stack without Docker."""

from __future__ import annotations

from dataclasses import asdict

import typer
from rich.table import Table

from loraforge.cli.output import console, emit_json, fail
from loraforge.cli.remote import local_only
from loraforge.runtime.errors import LoraforgeError
from loraforge.runtime.settings import load_settings
from loraforge.stack.local import ComponentStatus, LocalStack

stack_app = typer.Typer(
    help="Run NATS, S3 (SeaweedFS) and every service locally, no Docker.", no_args_is_help=True
)

JSON = typer.Option(False, "--json", help="Print machine-readable JSON.")


def register(app: typer.Typer) -> None:
    app.add_typer(stack_app, name="stack")


def _stack(as_json: bool) -> LocalStack:
    try:
        return LocalStack(load_settings())
    except LoraforgeError as exc:
        fail(str(exc), as_json=as_json, code=2)


def _show(statuses: list[ComponentStatus], as_json: bool) -> None:
    if as_json:
        emit_json(
            {
                "components": [asdict(s) for s in statuses],
                "healthy": all(s.health == "SERVING" for s in statuses),
            }
        )
        return
    table = Table("component", "address", "pid", "health")
    for s in statuses:
        colour = "green" if s.health == "SERVING" else "red"
        table.add_row(s.name, s.address, str(s.pid or "-"), f"[{colour}]{s.health}[/{colour}]")
    console.print(table)


@stack_app.command()
def up(
    ctx: typer.Context,
    timeout: float = typer.Option(90.0, help="Seconds to wait for each component to be healthy."),
    as_json: bool = JSON,
) -> None:
    """Start every component that is not running yet, and wait until each is healthy."""
    local_only(ctx, "stack up", as_json=as_json)
    stack = _stack(as_json)
    say = (lambda msg: None) if as_json else (lambda msg: console.print(f"[dim]{msg}[/dim]"))
    try:
        statuses = stack.up(timeout_s=timeout, log=say)
    except LoraforgeError as exc:
        fail(
            f"{exc}\nThe components that did start are still running: `loraforge stack down` "
            "stops them.",
            as_json=as_json,
            code=1,
        )
    _show(statuses, as_json)


@stack_app.command()
def down(ctx: typer.Context, as_json: bool = JSON) -> None:
    """Stop what `up` started (and nothing else). Data stays in the data dir."""
    local_only(ctx, "stack down", as_json=as_json)
    stack = _stack(as_json)
    say = (lambda msg: None) if as_json else (lambda msg: console.print(f"[dim]{msg}[/dim]"))
    stopped = stack.down(log=say)
    if as_json:
        emit_json({"stopped": stopped})
    elif not stopped:
        console.print("nothing was running")


@stack_app.command()
def status(ctx: typer.Context, as_json: bool = JSON) -> None:
    """Each component with its address and health (SERVING, or why not). Exit 1 if any is
    not SERVING."""
    local_only(ctx, "stack status", as_json=as_json)
    statuses = _stack(as_json).status()
    _show(statuses, as_json)
    if not all(s.health == "SERVING" for s in statuses):
        raise typer.Exit(1)
