"""`loraforge deploy create|list|show|rm` and `loraforge generate`: deployments (a LoRA version
kept warm on render workers, loraforge.library.deployments) and calls by name, over the local
stack (render gRPC + S3) or a gateway (`--api`, `/v1/projects/{p}/deployments`)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from loraforge.cli.backend import backend_of
from loraforge.cli.jobs import follow
from loraforge.cli.output import EXIT_FAILED, Command, command, console, json_option, show
from loraforge.render.inputs import check_image_file
from loraforge.runtime.errors import InvalidInput

deploy_app = typer.Typer(
    help="Deploy LoRA versions (kept warm on render workers) and manage them.", no_args_is_help=True
)

PROJECT = typer.Option(..., "--project", "-p", help="Project name.")
TENANT = typer.Option("default", "--tenant", help="Tenant the project belongs to (local stack).")
AS_JSON = json_option("Print one JSON object instead of text.")
POLL_S = 1.0


def register(app: typer.Typer) -> None:
    app.add_typer(deploy_app, name="deploy")
    command(app, "generate")(generate)


def _print(d: dict[str, Any]) -> None:
    color = {"RUNNING": "green", "FAILED": "red", "STOPPED": "yellow"}.get(d["status"], "cyan")
    console.print(
        f"deployment [bold]{d['name']}[/bold] [{color}]{d['status']}[/{color}] "
        f"warm {d['warm_workers']}/{d['capacity']}: {d['lora']} on {d['preset']} "
        f"({d['mode']}, strength {d['strength']}, trigger {d['trigger'] or '-'})"
        + (f" - {d['message']}" if d.get("message") else "")
    )


@deploy_app.command(cls=Command, name="create")
def create(
    ctx: typer.Context,
    lora: Annotated[str, typer.Argument(help="name:version, name:alias, or run:<run_id>[@step-N]")],
    project: str = PROJECT,
    tenant: str = TENANT,
    name: str = typer.Option("", "--name", help="Deployment name (default: generated)."),
    preset: str = typer.Option("", "--preset", help="Base preset (default: the LoRA's)."),
    template: str | None = typer.Option(
        None,
        "--template",
        help=("Prompt template with {description} (of the input image), {trigger}, {lora_prompt}."),
    ),
    lora_prompt: str = typer.Option("", "--lora-prompt", help="The effect's fixed motion text."),
    use_input_prompt: bool = typer.Option(
        False, "--use-input-prompt", help="A call's own prompt replaces the template."
    ),
    caption_source: str = typer.Option(
        "attributes", "--caption-source", help="Describes the input image: attributes, vlm, openai."
    ),
    width: int | None = typer.Option(None, "--width"),
    height: int | None = typer.Option(None, "--height"),
    frames: int | None = typer.Option(None, "--frames"),
    fps: int | None = typer.Option(None, "--fps"),
    steps: int | None = typer.Option(None, "--steps"),
    cfg: float | None = typer.Option(None, "--cfg"),
    strength: float | None = typer.Option(None, "--strength"),
    capacity: int = typer.Option(1, "--capacity", help="Warm workers to ask for."),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="Wait until it is RUNNING."),
    timeout_s: float = typer.Option(900, "--timeout", help="Give up waiting after this long."),
    as_json: bool = AS_JSON,
) -> None:
    """Deploy a LoRA version: warm workers load it, then `loraforge generate` calls it."""
    defaults = {
        k: v
        for k, v in {
            "width": width,
            "height": height,
            "frames": frames,
            "fps": fps,
            "steps": steps,
            "cfg": cfg,
            "strength": strength,
        }.items()
        if v is not None
    }
    prompt: dict[str, Any] = {
        "lora_prompt_default": lora_prompt,
        "use_input_prompt": use_input_prompt,
        "caption_source": caption_source,
    }
    if template is not None:
        prompt["template"] = template
    spec = {
        "lora": lora,
        "name": name,
        "preset": preset,
        "capacity": capacity,
        "defaults": defaults,
        "prompt": prompt,
    }
    with backend_of(ctx, tenant) as backend:
        d = backend.create_deployment(project, spec)
        deadline = time.monotonic() + timeout_s
        while wait and d["status"] == "PENDING" and time.monotonic() < deadline:
            time.sleep(POLL_S)
            d = backend.deployment(project, d["name"])
    show(d, _print)
    if d["status"] == "FAILED" or (wait and d["status"] != "RUNNING"):
        raise SystemExit(EXIT_FAILED)  # the deployment's status says why


@deploy_app.command(cls=Command, name="list")
def list_(
    ctx: typer.Context, project: str = PROJECT, tenant: str = TENANT, as_json: bool = AS_JSON
) -> None:
    """The project's deployments and their status."""
    with backend_of(ctx, tenant) as backend:
        items = backend.deployments(project)
    show({"deployments": items}, lambda v: _print_list(v["deployments"]))


def _print_list(items: list[dict[str, Any]]) -> None:
    for d in items:
        _print(d)
    if not items:
        console.print("no deployments")


@deploy_app.command(cls=Command, name="show")
def show_(
    ctx: typer.Context,
    name: str,
    project: str = PROJECT,
    tenant: str = TENANT,
    as_json: bool = AS_JSON,
) -> None:
    """One deployment: status, warm workers, LoRA, defaults, prompt settings."""
    with backend_of(ctx, tenant) as backend:
        d = backend.deployment(project, name)
    show(d, _print_detail)


def _print_detail(d: dict[str, Any]) -> None:
    _print(d)
    console.print(
        f"defaults: {json.dumps(d['defaults'])}\n"
        f"prompt: {json.dumps(d['prompt'], ensure_ascii=False)}"
    )


@deploy_app.command(cls=Command, name="rm")
def rm(
    ctx: typer.Context,
    name: str,
    project: str = PROJECT,
    tenant: str = TENANT,
    as_json: bool = AS_JSON,
) -> None:
    """Stop a deployment (its workers let it go) and remove it."""
    with backend_of(ctx, tenant) as backend:
        d = backend.delete_deployment(project, name)
    show(d, _print)


def generate(
    ctx: typer.Context,
    deployment: Annotated[str, typer.Argument(help="The deployment to call.")],
    project: str = PROJECT,
    tenant: str = TENANT,
    image: Path | None = typer.Option(None, "--image", help="First frame (i2v, flf2v)."),
    last_image: Path | None = typer.Option(None, "--last-image", help="Last frame (flf2v)."),
    prompt: str = typer.Option("", "--prompt", help="Used when the deployment uses input prompts."),
    seed: int | None = typer.Option(None, "--seed"),
    out: Path | None = typer.Option(None, "--out", "-o", help="Save the video/image here."),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="Follow the job until it ends."),
    as_json: bool = AS_JSON,
) -> None:
    """Generate with a deployment: nothing but its name and the images its mode needs."""
    for path, label in ((image, "--image"), (last_image, "--last-image")):
        if path is None:
            continue
        if not path.is_file():
            raise InvalidInput(f"{label} {path}: no such file")
        check_image_file(path, f"{label} {path}")
    with backend_of(ctx, tenant) as backend:
        keys = [
            backend.upload_sources(project, [p], lambda *_: None)[0].key if p is not None else ""
            for p in (image, last_image)
        ]
        job = backend.call_deployment(
            project,
            deployment,
            {"image": keys[0], "last_image": keys[1], "prompt": prompt, "seed": seed},
        )
        if wait and not job.terminal:
            job = follow(backend, job)
        result = job.result
        view = {
            "job_id": job.id,
            "state": job.state,
            "message": job.message,
            "deployment": deployment,
            "output": result.get("output"),
            "prompt": result.get("prompt"),
            "warm": result.get("warm"),
            "render_s": result.get("render_s"),
        }
        if out is not None and job.state == "SUCCEEDED" and view["output"]:
            backend.download_output(job, view["output"], out)
            view["saved"] = str(out)
    show(view, _print_call)
    if job.state in ("FAILED", "CANCELLED"):
        raise SystemExit(EXIT_FAILED)  # the view says why


def _print_call(view: dict[str, Any]) -> None:
    color = {"SUCCEEDED": "green", "FAILED": "red"}.get(view["state"], "cyan")
    console.print(
        f"call [bold]{view['job_id']}[/bold] of {view['deployment']} [{color}]{view['state']}"
        f"[/{color}]: {view['message']}"
    )
    if view["prompt"]:
        console.print(f"prompt: {view['prompt']}")
    if view.get("saved"):
        console.print(f"saved to {view['saved']}")
    elif view["output"]:
        console.print(f"output: renders/{view['output']}")
