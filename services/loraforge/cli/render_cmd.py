"""`loraforge render`: check a scenario here, optionally export it as a ComfyUI workflow, submit
it to the render service, follow the job and show what came out (keyframes, transitions, film)
with download links."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.table import Table

from loraforge.cli.backend import Job, backend_of
from loraforge.cli.jobs import follow
from loraforge.cli.output import (
    EXIT_FAILED,
    command,
    console,
    err_console,
    json_option,
    show,
)
from loraforge.render.comfyui import export_workflow
from loraforge.render.inputs import check_image_file
from loraforge.render.scenario import parse_scenario
from loraforge.runtime.errors import InvalidInput, LoraforgeError


def register(app: typer.Typer) -> None:
    command(app, "render")(render)


def render(
    ctx: typer.Context,
    scenario_file: Annotated[
        Path,
        typer.Argument(
            metavar="SCENARIO.yaml",
            show_default=False,
            help="The scenario (YAML or JSON): shots, LoRAs, transitions.",
        ),
    ],
    project: str = typer.Option("", "--project", "-p", help="Project name (needed to submit)."),
    tenant: str = typer.Option("default", "--tenant", help="Tenant the project belongs to."),
    comfyui_out: Annotated[
        Path | None,
        typer.Option(
            "--comfyui-out", help="Also write the scenario as a ComfyUI API workflow (JSON)."
        ),
    ] = None,
    submit: bool = typer.Option(
        True,
        "--submit/--no-submit",
        help="Submit to the render service (--no-submit: check/export only).",
    ),
    request_id: str = typer.Option(
        "", "--request-id", help="Idempotency key: the same id never renders twice."
    ),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="Follow the job until it ends."),
    links: bool = typer.Option(
        True, "--links/--no-links", help="Presigned download links for the outputs."
    ),
    as_json: bool = json_option(),
) -> None:
    """Render a scenario: keyframe images, transition videos and the joined film."""
    try:
        text = scenario_file.read_text()
    except OSError as exc:
        raise InvalidInput(f"cannot read {scenario_file}: {exc.strerror or exc}") from exc
    try:
        scenario = parse_scenario(text)
        # the user's own keyframes given as local files: checked here, uploaded on submit
        local_images = _local_images(scenario_file, scenario)
    except LoraforgeError as exc:
        raise InvalidInput(f"{scenario_file}: {exc}") from exc
    warnings = scenario.warnings()
    if not as_json:
        for w in warnings:
            err_console.print(f"[yellow]warning:[/yellow] {w}")

    view: dict[str, Any] = {
        "scenario": scenario.name,
        "shots": len(scenario.shots),
        "transitions_planned": len(scenario.pairs()),
        "warnings": warnings,
    }
    if comfyui_out is not None:
        workflow = export_workflow(scenario)
        try:
            comfyui_out.parent.mkdir(parents=True, exist_ok=True)
            comfyui_out.write_text(json.dumps(workflow, indent=2) + "\n")
        except OSError as exc:
            raise LoraforgeError(f"cannot write {comfyui_out}: {exc.strerror or exc}") from exc
        view["comfyui_workflow"] = str(comfyui_out)
        if not as_json:
            console.print(f"ComfyUI workflow ({len(workflow)} nodes) written to {comfyui_out}")
    if not submit:
        # the workflow's line said it all when one was written
        show(view, _print_valid if comfyui_out is None else lambda v: None)
        return

    if not project:
        raise InvalidInput(
            "--project is required to submit a render (or pass --no-submit to only check/export)"
        )
    with backend_of(ctx, tenant) as backend:
        if local_images:
            keys = {  # stored in raw like any upload (content-addressed, once)
                i: backend.upload_sources(project, [path], lambda *_: None)[0].key
                for i, path in local_images.items()
            }
            text = _with_image_keys(text, keys)
        job = backend.start(
            "render", project, {"scenario_yaml": text, "request_id": request_id or None}
        )
        if wait and not job.terminal:
            job = follow(backend, job)
        view.update(_job_view(job))
        if links and job.state == "SUCCEEDED":
            try:
                view["links"] = backend.render_links(job)
            except LoraforgeError as exc:  # the keys are shown all the same
                view["links"], view["links_error"] = {}, str(exc)
    show(view, lambda v: _print(v, waited=wait))
    if job.state in ("FAILED", "CANCELLED"):
        raise SystemExit(EXIT_FAILED)  # the view says why


def _local_images(scenario_file: Path, scenario: Any) -> dict[int, Path]:
    """Shots whose `image:` names a local file (relative to the scenario file, or absolute)
    rather than a raw-bucket key: shot index -> path, each checked as the service would."""
    out: dict[int, Path] = {}
    for i, shot in enumerate(scenario.shots):
        if not shot.image:
            continue
        path = Path(shot.image).expanduser()
        if not path.is_absolute():
            path = scenario_file.parent / path
        if path.is_file():
            check_image_file(path, f"shot {i + 1}: {shot.image}")
            out[i] = path
    return out


def _with_image_keys(text: str, keys: dict[int, str]) -> str:
    """The scenario text with those shots' `image:` replaced by their raw-bucket keys."""
    data = json.loads(text) if text.lstrip().startswith("{") else yaml.safe_load(text)
    for i, key in keys.items():
        data["shots"][i]["image"] = key
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def _print_valid(view: dict[str, Any]) -> None:
    console.print(
        f"scenario {view['scenario']!r} is valid: {view['shots']} shot(s), "
        f"{view['transitions_planned']} transition(s)"
    )


def _job_view(job: Job) -> dict[str, Any]:
    result = job.result
    return {
        "job_id": job.id,
        "state": job.state,
        "message": job.message,
        "tenant": job.tenant,
        "project": job.project,
        "progress": job.progress,
        "keyframes": list(result.get("keyframes") or []),
        "transitions": list(result.get("transitions") or []),
        "film": result.get("film"),
        "thumbnails": result.get("thumbnails"),
        "render_warnings": list(result.get("warnings") or []),
        "artifacts": job.artifacts,
    }


def _print(view: dict[str, Any], *, waited: bool) -> None:
    color = {"SUCCEEDED": "green", "FAILED": "red", "CANCELLED": "yellow"}.get(
        view["state"], "cyan"
    )
    tenant = view["tenant"] or "(key's tenant)"
    console.print(
        f"render job [bold]{view['job_id']}[/bold] [{color}]{view['state']}[/{color}] "
        f"({tenant}/{view['project']}): {view['message']}"
    )
    if view["state"] != "SUCCEEDED":
        if not waited:
            console.print("not waiting for it (--no-wait)")
        return
    links = view.get("links") or {}
    table = Table("kind", "key", "link", show_lines=False)
    rows = (
        [("keyframe", k) for k in view["keyframes"]]
        + [("transition", k) for k in view["transitions"]]
        + ([("film", view["film"])] if view["film"] else [])
        + ([("thumbnails", view["thumbnails"])] if view["thumbnails"] else [])
    )
    for kind, key in rows:
        table.add_row(kind, f"renders/{key}", links.get(key, ""))
    console.print(table)
    if view.get("links_error"):
        console.print(
            f"[yellow]no download links[/yellow] ({view['links_error']}); "
            "the keys are in the renders bucket"
        )
