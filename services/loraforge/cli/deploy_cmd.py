"""`loraforge deploy create|list|show|rm` and `loraforge generate`: deployments (a LoRA version
kept warm on render workers, loraforge.library.deployments) and calls by name, over the local
stack (render gRPC + S3) or a gateway (`--api`, `/v1/projects/{p}/deployments`)."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Annotated, Any

import typer

from loraforge.cli.output import console, emit_json, fail

deploy_app = typer.Typer(
    help="Deploy LoRA versions (kept warm on render workers) and manage them.", no_args_is_help=True
)

PROJECT = typer.Option(..., "--project", "-p", help="Project name.")
TENANT = typer.Option("default", "--tenant", help="Tenant the project belongs to (local stack).")
AS_JSON = typer.Option(False, "--json", help="Print one JSON object instead of text.")
POLL_S = 1.0


def register(app: typer.Typer) -> None:
    app.add_typer(deploy_app, name="deploy")
    app.command("generate")(generate)


class _Local:
    """The render service's deployment calls over gRPC, images uploaded to S3 like `render`."""

    def __init__(self, tenant: str, project: str, as_json: bool):
        from loraforge.runtime.keys import ProjectRef
        from loraforge.runtime.settings import load_settings

        self.as_json = as_json
        try:
            self.settings = load_settings()
            self.ref = ProjectRef(tenant, project)
        except Exception as exc:
            fail(str(exc), as_json=as_json, code=2)
        self.target = self.settings.endpoints.render

    def _rpc(self, method: str, request: Any) -> Any:
        from loraforge.cli.jobs import call
        from loraforge.runtime.grpc_client import sync_channel
        from loraforge.v1 import render_pb2_grpc

        with sync_channel(self.target) as channel:
            stub = render_pb2_grpc.RenderServiceStub(channel)
            return call(
                getattr(stub, method),
                request,
                service="render",
                target=self.target,
                as_json=self.as_json,
            )

    def _req(self, name: str = "", spec: dict[str, Any] | None = None) -> Any:
        from loraforge.cli.jobs import scope
        from loraforge.v1 import render_pb2

        return render_pb2.DeploymentRequest(
            scope=scope(self.ref.tenant, self.ref.project),
            name=name,
            spec_json=json.dumps(spec) if spec else "",
        )

    def create(self, spec: dict[str, Any]) -> dict[str, Any]:
        return json.loads(self._rpc("CreateDeployment", self._req(spec=spec)).deployment_json)

    def get(self, name: str) -> dict[str, Any]:
        return json.loads(self._rpc("GetDeployment", self._req(name)).deployment_json)

    def list(self) -> list[dict[str, Any]]:
        return [json.loads(d) for d in self._rpc("ListDeployments", self._req()).deployment_json]

    def delete(self, name: str) -> dict[str, Any]:
        return json.loads(self._rpc("DeleteDeployment", self._req(name)).deployment_json)

    def upload(self, path: Path) -> str:
        from loraforge.cli.render_cmd import _upload_images

        return _upload_images(self.settings, self.ref, {0: path})[0]

    def call(
        self, name: str, image: str, last_image: str, prompt: str, seed: int | None, wait: bool
    ) -> dict[str, Any]:
        from loraforge.cli.jobs import follow, is_terminal, job_result, job_state, scope
        from loraforge.runtime.grpc_client import sync_channel
        from loraforge.v1 import render_pb2, render_pb2_grpc

        sc = scope(self.ref.tenant, self.ref.project)
        request = render_pb2.CallDeploymentRequest(
            scope=sc,
            request_id=f"cli-{uuid.uuid4().hex}",
            deployment=name,
            image=image,
            last_image=last_image,
            prompt=prompt,
            seed=seed,
        )
        job = self._rpc("CallDeployment", request)
        if wait and not is_terminal(job):
            with sync_channel(self.target) as channel:
                job = follow(
                    render_pb2_grpc.RenderServiceStub(channel),
                    sc,
                    job,
                    service="render",
                    target=self.target,
                    as_json=self.as_json,
                )
        return {
            "id": job.id,
            "state": job_state(job),
            "message": job.message,
            "result": job_result(job),
        }

    def download(self, job_id: str, key: str, dest: Path) -> None:
        from loraforge.runtime.storage import Bucket, ObjectStore

        ObjectStore.connect(self.settings.s3).download(Bucket.RENDERS, key, dest)


class _Remote:
    """The same through a gateway's `/v1/projects/{p}/deployments`."""

    def __init__(self, remote: Any, project: str, as_json: bool):
        self.r, self.project, self.as_json = remote, project, as_json
        self.base = f"/v1/projects/{project}/deployments"

    def create(self, spec: dict[str, Any]) -> dict[str, Any]:
        return self.r.request("POST", self.base, json=spec, as_json=self.as_json)

    def get(self, name: str) -> dict[str, Any]:
        return self.r.request("GET", f"{self.base}/{name}", as_json=self.as_json)

    def list(self) -> list[dict[str, Any]]:
        return self.r.request("GET", self.base, as_json=self.as_json)["deployments"]

    def delete(self, name: str) -> dict[str, Any]:
        return self.r.request("DELETE", f"{self.base}/{name}", as_json=self.as_json)

    def upload(self, path: Path) -> str:
        return self.r.upload(self.project, path, as_json=self.as_json)["key"]

    def call(
        self, name: str, image: str, last_image: str, prompt: str, seed: int | None, wait: bool
    ) -> dict[str, Any]:
        body = {
            "image": image,
            "last_image": last_image,
            "prompt": prompt,
            "seed": seed,
            "request_id": f"cli-{uuid.uuid4().hex}",
        }
        job = self.r.request(
            "POST",
            f"{self.base}/{name}/calls",
            as_json=self.as_json,
            json={k: v for k, v in body.items() if v not in (None, "")},
        )
        if wait and job["state"] not in ("SUCCEEDED", "FAILED", "CANCELLED"):
            job = self.r.follow(self.project, "render", job, as_json=self.as_json)
        return job

    def download(self, job_id: str, key: str, dest: Path) -> None:
        links = self.r.request(
            "GET", f"/v1/projects/{self.project}/renders/{job_id}/results", as_json=self.as_json
        )["results"]
        url = next((x["url"] for x in links if x["key"] == key), None)
        if url is None:
            fail(f"the gateway gave no link for {key}", as_json=self.as_json)
        self.r.download(url, dest, as_json=self.as_json)


def _client(ctx: typer.Context, tenant: str, project: str, as_json: bool) -> Any:
    from loraforge.cli.remote import remote_of

    remote = remote_of(ctx)
    return (
        _Remote(remote, project, as_json)
        if remote is not None
        else _Local(tenant, project, as_json)
    )


def _print(d: dict[str, Any]) -> None:
    color = {"RUNNING": "green", "FAILED": "red", "STOPPED": "yellow"}.get(d["status"], "cyan")
    console.print(
        f"deployment [bold]{d['name']}[/bold] [{color}]{d['status']}[/{color}] "
        f"warm {d['warm_workers']}/{d['capacity']}: {d['lora']} on {d['preset']} "
        f"({d['mode']}, strength {d['strength']}, trigger {d['trigger'] or '-'})"
        + (f" - {d['message']}" if d.get("message") else "")
    )


@deploy_app.command("create")
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
    client = _client(ctx, tenant, project, as_json)
    d = client.create(spec)
    deadline = time.monotonic() + timeout_s
    while wait and d["status"] == "PENDING" and time.monotonic() < deadline:
        time.sleep(POLL_S)
        d = client.get(d["name"])
    if as_json:
        emit_json(d)
    else:
        _print(d)
    if d["status"] == "FAILED" or (wait and d["status"] != "RUNNING"):
        raise SystemExit(1)


@deploy_app.command("list")
def list_(
    ctx: typer.Context, project: str = PROJECT, tenant: str = TENANT, as_json: bool = AS_JSON
) -> None:
    """The project's deployments and their status."""
    items = _client(ctx, tenant, project, as_json).list()
    if as_json:
        emit_json({"deployments": items})
        return
    for d in items:
        _print(d)
    if not items:
        console.print("no deployments")


@deploy_app.command("show")
def show(
    ctx: typer.Context,
    name: str,
    project: str = PROJECT,
    tenant: str = TENANT,
    as_json: bool = AS_JSON,
) -> None:
    """One deployment: status, warm workers, LoRA, defaults, prompt settings."""
    d = _client(ctx, tenant, project, as_json).get(name)
    if as_json:
        emit_json(d)
    else:
        _print(d)
        console.print(
            f"defaults: {json.dumps(d['defaults'])}\nprompt: {json.dumps(d['prompt'], ensure_ascii=False)}"
        )


@deploy_app.command("rm")
def rm(
    ctx: typer.Context,
    name: str,
    project: str = PROJECT,
    tenant: str = TENANT,
    as_json: bool = AS_JSON,
) -> None:
    """Stop a deployment (its workers let it go) and remove it."""
    d = _client(ctx, tenant, project, as_json).delete(name)
    if as_json:
        emit_json(d)
    else:
        _print(d)


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
    from loraforge.render.inputs import check_image_file
    from loraforge.runtime.errors import LoraforgeError

    for path, label in ((image, "--image"), (last_image, "--last-image")):
        if path is None:
            continue
        try:
            if not path.is_file():
                raise FileNotFoundError(path)
            check_image_file(path, f"{label} {path}")
        except FileNotFoundError:
            fail(f"{label} {path}: no such file", as_json=as_json, code=2)
        except LoraforgeError as exc:
            fail(str(exc), as_json=as_json, code=2)
    client = _client(ctx, tenant, project, as_json)
    keys = [client.upload(p) if p is not None else "" for p in (image, last_image)]
    job = client.call(deployment, keys[0], keys[1], prompt, seed, wait)
    result = job.get("result") or {}
    view = {
        "job_id": job["id"],
        "state": job["state"],
        "message": job.get("message", ""),
        "deployment": deployment,
        "output": result.get("output"),
        "prompt": result.get("prompt"),
        "warm": result.get("warm"),
        "render_s": result.get("render_s"),
    }
    if out is not None and view["state"] == "SUCCEEDED" and view["output"]:
        client.download(job["id"], view["output"], out)
        view["saved"] = str(out)
    if as_json:
        emit_json(view)
    else:
        color = {"SUCCEEDED": "green", "FAILED": "red"}.get(view["state"], "cyan")
        console.print(
            f"call [bold]{view['job_id']}[/bold] of {deployment} [{color}]{view['state']}"
            f"[/{color}]: {view['message']}"
        )
        if view["prompt"]:
            console.print(f"prompt: {view['prompt']}")
        if view.get("saved"):
            console.print(f"saved to {view['saved']}")
        elif view["output"]:
            console.print(f"output: renders/{view['output']}")
    if view["state"] in ("FAILED", "CANCELLED"):
        raise SystemExit(1)
