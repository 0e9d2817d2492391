"""`loraforge`: the command line. Each command group lives in its own module and registers
itself here; commands talk to the local stack by default (settings.endpoints)."""

from __future__ import annotations

import typer
from loraforge.cli import caption_cmd, curate_cmd, export_cmd, ingest_cmd, run_cmd, stack_cmd
from loraforge.cli import jobs_cmd, render_cmd, sweep_cmd  # render / jobs / sweep
from loraforge.cli import train_cmd  # train / presets / lora pull

app = typer.Typer(
    name="loraforge",
    help="Raw footage or photos in, a trained LoRA and renders out.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

for module in (stack_cmd, run_cmd, ingest_cmd, curate_cmd, caption_cmd, export_cmd,
               render_cmd, jobs_cmd, sweep_cmd,
               train_cmd):
    module.register(app)


if __name__ == "__main__":
    app()
