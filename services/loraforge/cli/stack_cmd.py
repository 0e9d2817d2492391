"""`loraforge stack up|down|status`: the local stack without Docker."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import typer
from rich.table import Table

from loraforge.cli.backend import local_only
from loraforge.cli.output import EXIT_FAILED, Command, Group, console, json_option, show
from loraforge.runtime.errors import ConfigurationError, LoraforgeError
from loraforge.runtime.settings import load_settings
from loraforge.stack.local import ComponentStatus, LocalStack

stack_app = typer.Typer(
    cls=Group,
    help="Run NATS, S3 (SeaweedFS) and every service locally, no Docker.",
    no_args_is_help=True,
)

JSON = json_option("Print machine-readable JSON.")


def register(app: typer.Typer) -> None:
    app.add_typer(stack_app, name="stack")


def _stack() -> LocalStack:
    try:
        return LocalStack(load_settings())
    except LoraforgeError as exc:  # settings the stack cannot run with
        raise ConfigurationError(str(exc)) from exc


def _show(statuses: list[ComponentStatus]) -> None:
    show(
        {
            "components": [asdict(s) for s in statuses],
            "healthy": all(s.health == "SERVING" for s in statuses),
        },
        lambda _: _print(statuses),
    )


def _print(statuses: list[ComponentStatus]) -> None:
    table = Table("component", "address", "pid", "health")
    for s in statuses:
        colour = "green" if s.health == "SERVING" else "red"
        table.add_row(s.name, s.address, str(s.pid or "-"), f"[{colour}]{s.health}[/{colour}]")
    console.print(table)


@stack_app.command(cls=Command)
def up(
    ctx: typer.Context,
    timeout: float = typer.Option(90.0, help="Seconds to wait for each component to be healthy."),
    as_json: bool = JSON,
) -> None:
    """Start every component that is not running yet, and wait until each is healthy."""
    local_only(ctx, "stack up")
    stack = _stack()
    say = (lambda msg: None) if as_json else (lambda msg: console.print(f"[dim]{msg}[/dim]"))
    try:
        statuses = stack.up(timeout_s=timeout, log=say)
    except LoraforgeError as exc:
        raise LoraforgeError(
            f"{exc}\nThe components that did start are still running: `loraforge stack down` "
            "stops them."
        ) from exc
    _show(statuses)


@stack_app.command(cls=Command)
def down(ctx: typer.Context, as_json: bool = JSON) -> None:
    """Stop what `up` started (and nothing else). Data stays in the data dir."""
    local_only(ctx, "stack down")
    stack = _stack()
    say = (lambda msg: None) if as_json else (lambda msg: console.print(f"[dim]{msg}[/dim]"))
    stopped = stack.down(log=say)
    show({"stopped": stopped}, _print_stopped)


def _print_stopped(view: dict[str, Any]) -> None:
    if not view["stopped"]:
        console.print("nothing was running")


@stack_app.command(cls=Command)
def status(ctx: typer.Context, as_json: bool = JSON) -> None:
    """Each component with its address and health (SERVING, or why not). Exit 1 if any is
    not SERVING."""
    local_only(ctx, "stack status")
    statuses = _stack().status()
    _show(statuses)
    if not all(s.health == "SERVING" for s in statuses):
        raise SystemExit(EXIT_FAILED)  # the table says which and why
