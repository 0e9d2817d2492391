"""`loraforge`: the command line. Each command group lives in its own module and registers
itself here. A command is written once against `backend.Backend`: the local stack by default
(gRPC to settings.endpoints, S3), a gateway with `--api URL --key KEY` (env LF_API /
LF_API_KEY; backend.HttpBackend over remote.Remote). Output (tables or `--json`) and exit codes
are decided in one place, loraforge.cli.output."""

from __future__ import annotations

import typer

from loraforge.cli import (
    caption_cmd,
    curate_cmd,
    deploy_cmd,
    export_cmd,
    ingest_cmd,
    jobs_cmd,
    lora_cmd,  # lora list / show / promote / tag / rm / checkpoints
    remote,
    render_cmd,
    run_cmd,
    stack_cmd,
    sweep_cmd,
    train_cmd,  # train / presets / lora pull
)
from loraforge.cli.output import Group
from loraforge.runtime.errors import InvalidInput

app = typer.Typer(
    cls=Group,
    name="loraforge",
    help="Raw footage or photos in, a trained LoRA and renders out.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def main(
    ctx: typer.Context,
    api: str | None = typer.Option(
        None,
        "--api",
        envvar=remote.ENV_API,
        metavar="URL",
        help="Talk to a remote gateway at URL (e.g. https://lf.example.com) instead of the local "
        f"stack; also ${remote.ENV_API}. Local-only commands (stack, export, sweep, run) refuse "
        "it.",
    ),
    key: str | None = typer.Option(
        None,
        "--key",
        envvar=remote.ENV_KEY,
        metavar="KEY",
        help=f"API key for --api (sent as X-API-Key); also ${remote.ENV_KEY}.",
    ),
) -> None:
    """Raw footage or photos in, a trained LoRA and renders out.

    Talks to the local stack by default; `--api URL --key KEY` (or LF_API / LF_API_KEY) sends
    ingest, curate, caption, train, render, jobs and lora pull to a remote gateway instead."""
    if key and not api:
        raise InvalidInput(f"--key (or ${remote.ENV_KEY}) needs --api URL (or ${remote.ENV_API})")
    if api and not api.startswith(("http://", "https://")):
        raise InvalidInput(f"--api {api!r}: give the gateway's URL, e.g. https://lf.example.com")
    ctx.obj = remote.CliContext(api=api or None, key=key or None)


for module in (
    stack_cmd,
    run_cmd,
    ingest_cmd,
    curate_cmd,
    caption_cmd,
    export_cmd,
    render_cmd,
    jobs_cmd,
    sweep_cmd,
    train_cmd,
    deploy_cmd,
):
    module.register(app)
lora_cmd.register(app)  # its commands join train_cmd's `lora` group


if __name__ == "__main__":
    app()
