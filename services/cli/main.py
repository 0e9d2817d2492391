"""`loraforge`: the command line. Each command group lives in its own module and registers
itself here; commands talk to the local stack by default (settings.endpoints)."""

from __future__ import annotations

import typer

from loraforge.cli import curate_cmd, ingest_cmd, run_cmd, stack_cmd

app = typer.Typer(
    name="loraforge",
    help="Raw footage or photos in, a trained LoRA and renders out.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

for module in (stack_cmd, run_cmd, ingest_cmd, curate_cmd):
    module.register(app)


if __name__ == "__main__":
    app()
