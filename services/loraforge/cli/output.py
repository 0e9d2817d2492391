"""The CLI's one output and exit policy: rich for people, `--json` for scripts, one error format
and one table of exit codes for both transports.

Commands print through `show(view, printer)` and raise the project's errors
(loraforge.runtime.errors); `Command.invoke` (every command's class, see `command`) turns an
error into its message and exit code. Whether the output is JSON is decided there too, once per
run, from the command's `--json` option (`json_option`), and read with `wants_json()` wherever
output is made (progress bars and spinners stay off with --json).

Exit codes (README, "CLI"):

    0    done
    1    it failed: the job FAILED or was CANCELLED, a service or the gateway cannot be reached
         or errs, the API key is refused, the gateway rate-limits
    2    the request is refused: bad option, input or settings, something named does not
         exist, a conflict (fix the command and run it again); click's usage errors are 2 too
    130  interrupted (Ctrl-C while following a job: the job keeps running)
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, NoReturn, TypeVar

import typer
import typer.core
from rich.console import Console
from typer import _click  # typer vendors click: its commands take this Context

from loraforge.runtime.errors import (
    AlreadyExists,
    ConfigurationError,
    Conflict,
    InvalidInput,
    LoraforgeError,
    NotFound,
)

console = Console(stderr=False)
err_console = Console(stderr=True)

EXIT_FAILED = 1
EXIT_REFUSED = 2
EXIT_INTERRUPTED = 130

# this run's --json, set by Command.invoke / Group.invoke for the code below them (a context
# variable: state of the invocation, so an in-process test runner's runs do not mix)
_json: ContextVar[bool] = ContextVar("loraforge_cli_json", default=False)


class JobFailed(LoraforgeError):
    """The job ended FAILED or CANCELLED (exit 1)."""


class AccessDenied(LoraforgeError):
    """The gateway refused the API key or the action (401/403; exit 1)."""


class Interrupted(LoraforgeError):
    """Ctrl-C while following a job; the message says how to cancel it (exit 130)."""


def exit_code(exc: LoraforgeError) -> int:
    """The one mapping from the project's errors to exit codes (see the module doc)."""
    if isinstance(exc, Interrupted):
        return EXIT_INTERRUPTED
    if isinstance(exc, (InvalidInput, NotFound, AlreadyExists, Conflict, ConfigurationError)):
        return EXIT_REFUSED
    return EXIT_FAILED


def json_option(help: str = "Print one JSON object instead of tables.") -> Any:
    """A command's `--json` option: `as_json: bool = json_option(...)`."""
    return typer.Option(False, "--json", help=help)


def wants_json() -> bool:
    """Whether this run prints JSON (the command's --json, as Command.invoke read it)."""
    return _json.get()


def _asks_json(ctx: _click.Context) -> bool:
    """The --json of this command or of a group above it (`caption --json edit ...`)."""
    at: _click.Context | None = ctx
    while at is not None:
        if at.params.get("as_json"):
            return True
        at = at.parent
    return False


def emit_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, sort_keys=True, default=str) + "\n")


def show(view: Any, printer: Callable[[Any], None]) -> None:
    """The view as JSON with --json, else as `printer` draws it for people."""
    if wants_json():
        emit_json(view)
    else:
        printer(view)


def fail(message: str, *, code: int = EXIT_FAILED) -> NoReturn:
    """Say what went wrong (`{"error": ...}` on stdout with --json, else red on stderr) and
    exit with `code`. Commands raise the project's errors instead; this is for the policy
    below and for an exit code a command decides itself."""
    if wants_json():
        emit_json({"error": message})
    else:
        err_console.print(f"[red]error:[/red] {message}")
    raise SystemExit(code)


def _invoke_with_policy(invoke: Callable[[], Any], ctx: _click.Context) -> Any:
    token = _json.set(_asks_json(ctx))
    try:
        return invoke()
    except LoraforgeError as exc:
        fail(str(exc), code=exit_code(exc))
    finally:
        _json.reset(token)


class Command(typer.core.TyperCommand):
    """Every loraforge command: decides --json for the run, and turns a LoraforgeError raised
    anywhere in it into its message and exit code, the same for both transports."""

    def invoke(self, ctx: _click.Context) -> Any:
        return _invoke_with_policy(lambda: super(Command, self).invoke(ctx), ctx)


class Group(typer.core.TyperGroup):
    """A command group (the root, and those whose own callback does work: `loraforge caption`):
    the same policy for what fails in the group's callback."""

    def invoke(self, ctx: _click.Context) -> Any:
        return _invoke_with_policy(lambda: super(Group, self).invoke(ctx), ctx)


F = TypeVar("F", bound=Callable[..., Any])


def command(app: typer.Typer, name: str, **kwargs: Any) -> Callable[[F], F]:
    """`command(app, "ingest")(ingest)`: registers a command with the CLI's error policy."""
    return app.command(name, cls=Command, **kwargs)
