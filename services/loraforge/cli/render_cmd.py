"""`loraforge render`: check a scenario here, optionally export it as a ComfyUI workflow, submit
it to the render service, follow the job and show what came out (keyframes, transitions, film)
with download links."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Annotated, Any

import typer

from loraforge.cli.jobs import call, follow, is_terminal, job_state, scope
from loraforge.cli.output import console, emit_json, err_console, fail


def register(app: typer.Typer) -> None:
    app.command("render")(render)


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
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of tables."),
) -> None:
    """Render a scenario: keyframe images, transition videos and the joined film."""
    from loraforge.render.scenario import parse_scenario
    from loraforge.runtime.errors import LoraforgeError

    try:
        text = scenario_file.read_text()
    except OSError as exc:
        fail(f"cannot read {scenario_file}: {exc.strerror or exc}", as_json=as_json, code=2)
    try:
        scenario = parse_scenario(text)
    except LoraforgeError as exc:
        fail(f"{scenario_file}: {exc}", as_json=as_json, code=2)
    try:  # the user's own keyframes given as local files: checked here, uploaded on submit
        local_images = _local_images(scenario_file, scenario)
    except LoraforgeError as exc:
        fail(f"{scenario_file}: {exc}", as_json=as_json, code=2)
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
        from loraforge.render.comfyui import export_workflow

        workflow = export_workflow(scenario)
        try:
            comfyui_out.parent.mkdir(parents=True, exist_ok=True)
            comfyui_out.write_text(json.dumps(workflow, indent=2) + "\n")
        except OSError as exc:
            fail(f"cannot write {comfyui_out}: {exc.strerror or exc}", as_json=as_json)
        view["comfyui_workflow"] = str(comfyui_out)
        if not as_json:
            console.print(f"ComfyUI workflow ({len(workflow)} nodes) written to {comfyui_out}")
    if not submit:
        if as_json:
            emit_json(view)
        elif comfyui_out is None:
            console.print(
                f"scenario {scenario.name!r} is valid: {len(scenario.shots)} shot(s), "
                f"{len(scenario.pairs())} transition(s)"
            )
        return

    if not project:
        fail(
            "--project is required to submit a render (or pass --no-submit to only check/export)",
            as_json=as_json,
            code=2,
        )
    from loraforge.cli.remote import remote_of

    remote = remote_of(ctx)
    if remote is not None:
        if local_images:
            with remote:
                keys = {
                    i: remote.upload(project, path, as_json=as_json)["key"]
                    for i, path in local_images.items()
                }
            text = _with_image_keys(text, keys)
        _remote_render(remote, view, text, project, request_id, wait, links, as_json)
        return
    from loraforge.runtime.keys import ProjectRef
    from loraforge.runtime.settings import load_settings

    try:
        settings = load_settings()
        ref = ProjectRef(tenant, project)
    except LoraforgeError as exc:
        fail(str(exc), as_json=as_json, code=2)

    if local_images:
        try:
            text = _with_image_keys(text, _upload_images(settings, ref, local_images))
        except LoraforgeError as exc:
            fail(f"uploading the shots' images: {exc}", as_json=as_json)
    from loraforge.runtime.grpc_client import sync_channel
    from loraforge.v1 import common_pb2, render_pb2, render_pb2_grpc

    target = settings.endpoints.render
    sc = scope(ref.tenant, ref.project)
    with sync_channel(target) as channel:
        stub = render_pb2_grpc.RenderServiceStub(channel)
        request = render_pb2.SubmitRenderRequest(
            scope=sc,
            request_id=request_id or f"cli-{uuid.uuid4().hex}",
            render=common_pb2.RenderRequest(scenario_yaml=text),
        )
        job = call(stub.SubmitRender, request, service="render", target=target, as_json=as_json)
        if wait and not is_terminal(job):
            job = follow(stub, sc, job, service="render", target=target, as_json=as_json)
    view.update(_job_view(job))
    if links and view["state"] == "SUCCEEDED":
        _add_links(settings, view)
    if as_json:
        emit_json(view)
    else:
        _print(view, waited=wait)
    if view["state"] in ("FAILED", "CANCELLED"):
        raise SystemExit(1)


def _local_images(scenario_file: Path, scenario: Any) -> dict[int, Path]:
    """Shots whose `image:` names a local file (relative to the scenario file, or absolute)
    rather than a raw-bucket key: shot index -> path, each checked as the service would."""
    from loraforge.render.inputs import check_image_file

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


def _upload_images(settings: Any, ref: Any, images: dict[int, Path]) -> dict[int, str]:
    """Store each local keyframe in raw like any upload (content-addressed, stored once)."""
    import hashlib

    from loraforge.ingest.layout import original_ext, original_key
    from loraforge.runtime.storage import Bucket, ObjectStore

    store = ObjectStore.connect(settings.s3)
    keys = {}
    for i, path in images.items():
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        key = original_key(ref, digest, original_ext(path.name))
        if store.stat(Bucket.RAW, key) is None:
            store.put_file(Bucket.RAW, key, path, sha256=digest)
        keys[i] = key
    return keys


def _with_image_keys(text: str, keys: dict[int, str]) -> str:
    """The scenario text with those shots' `image:` replaced by their raw-bucket keys."""
    import yaml

    data = json.loads(text) if text.lstrip().startswith("{") else yaml.safe_load(text)
    for i, key in keys.items():
        data["shots"][i]["image"] = key
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def _remote_render(
    remote: Any,
    view: dict[str, Any],
    text: str,
    project: str,
    request_id: str,
    wait: bool,
    links: bool,
    as_json: bool,
) -> None:
    """POST .../renders, follow, then GET .../renders/{id}/results (expiring links)."""
    with remote:
        job = remote.start(
            project,
            "render",
            {"scenario_yaml": text, "request_id": request_id or None},
            as_json=as_json,
        )
        if wait and job["state"] not in ("SUCCEEDED", "FAILED", "CANCELLED"):
            job = remote.follow(project, "render", job, as_json=as_json)
        results = (
            remote.request(
                "GET", f"/v1/projects/{project}/renders/{job['id']}/results", as_json=as_json
            )["results"]
            if links and job["state"] == "SUCCEEDED"
            else []
        )
    result = job.get("result") or {}
    view.update(
        {
            "job_id": job["id"],
            "state": job["state"],
            "message": job.get("message", ""),
            "tenant": None,
            "project": job.get("project", project),
            "progress": job.get("progress", 0.0),
            "keyframes": list(result.get("keyframes") or []),
            "transitions": list(result.get("transitions") or []),
            "film": result.get("film"),
            "thumbnails": result.get("thumbnails"),
            "render_warnings": list(result.get("warnings") or []),
            "artifacts": job.get("artifacts") or [],
            "links": {r["key"]: r["url"] for r in results},
        }
    )
    if as_json:
        emit_json(view)
    else:
        view["tenant"] = "(key's tenant)"
        _print(view, waited=wait)
    if view["state"] in ("FAILED", "CANCELLED"):
        raise SystemExit(1)


def _job_view(job: Any) -> dict[str, Any]:
    from loraforge.runtime.servicers import dict_from_struct

    result = dict_from_struct(job.result)
    return {
        "job_id": job.id,
        "state": job_state(job),
        "message": job.message,
        "tenant": job.tenant,
        "project": job.project,
        "progress": job.progress,
        "keyframes": list(result.get("keyframes") or []),
        "transitions": list(result.get("transitions") or []),
        "film": result.get("film"),
        "thumbnails": result.get("thumbnails"),
        "render_warnings": list(result.get("warnings") or []),
        "artifacts": [
            {"bucket": a.bucket, "key": a.key, "kind": a.kind, "size": a.size}
            for a in job.artifacts
        ],
    }


def _add_links(settings: Any, view: dict[str, Any]) -> None:
    """key -> presigned GET URL; left out (keys only) when the store cannot sign."""
    from loraforge.runtime.storage import Bucket, ObjectStore

    keys = [
        k for k in view["keyframes"] + view["transitions"] + [view["film"], view["thumbnails"]] if k
    ]
    try:
        store = ObjectStore.connect(settings.s3)
        view["links"] = {k: store.presigned_get(Bucket.RENDERS, k) for k in keys}
    except Exception as exc:
        view["links"] = {}
        view["links_error"] = str(exc)


def _print(view: dict[str, Any], *, waited: bool) -> None:
    from rich.table import Table

    color = {"SUCCEEDED": "green", "FAILED": "red", "CANCELLED": "yellow"}.get(
        view["state"], "cyan"
    )
    console.print(
        f"render job [bold]{view['job_id']}[/bold] [{color}]{view['state']}[/{color}] "
        f"({view['tenant']}/{view['project']}): {view['message']}"
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
            f"[yellow]no download links[/yellow] ({view['links_error']}); the keys are in the renders bucket"
        )
