"""`loraforge run`: the main job, one command from footage to a LoRA.

ingest -> curate -> caption -> train (with the best checkpoint chosen) -> preview render, each
stage a job on the local stack (started when it is not running), with one progress view and a
final summary. A stage that fails stops the run; the summary says which and why.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Annotated, Any

import grpc
import typer
import yaml
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from loraforge.cli.backend import RPC_TIMEOUT_S, GrpcBackend, Job, local_only
from loraforge.cli.jobs import follow, scope
from loraforge.cli.output import EXIT_FAILED, command, console, json_option, show, wants_json
from loraforge.ingest.layout import ingested_event_id
from loraforge.ingest.upload import upload_local
from loraforge.runtime.errors import InvalidInput, LoraforgeError, Unavailable
from loraforge.runtime.grpc_client import sync_channel
from loraforge.runtime.job_service import follow_up_request_id
from loraforge.runtime.jobs import new_job_id
from loraforge.runtime.keys import ProjectRef
from loraforge.runtime.params import LoraType
from loraforge.runtime.settings import load_settings
from loraforge.runtime.storage import ObjectStore
from loraforge.stack.local import LocalStack
from loraforge.v1 import (
    captioning_pb2,
    captioning_pb2_grpc,
    common_pb2,
    curation_pb2,
    curation_pb2_grpc,
    ingest_pb2,
    ingest_pb2_grpc,
    render_pb2,
    render_pb2_grpc,
    trainer_pb2,
    trainer_pb2_grpc,
)


def register(app: typer.Typer) -> None:
    command(app, "run")(run)


def run(
    ctx: typer.Context,
    paths: list[Path] = typer.Argument(
        None,
        help="Footage: videos, photos, folders or zips. "
        "Without paths, example footage is generated from photos "
        "that installed packages ship.",
    ),
    trigger: str = typer.Option(
        "ohwx_woman", "--trigger", help="The rare token the LoRA binds to."
    ),
    project: str = typer.Option("demo", "--project", "-p", help="Project name."),
    tenant: str = typer.Option("default", "--tenant", help="Tenant the project belongs to."),
    base: str = typer.Option("tiny-wan2.1-t2v", "--base", help="Base model preset to train on."),
    target: int = typer.Option(0, "--target", help="How many clips to select (0: policy default)."),
    lora_type: Annotated[
        LoraType,
        typer.Option(
            "--type", help="What the LoRA learns: decides the curation policy and the captions."
        ),
    ] = LoraType.CHARACTER,
    stage_timeout: float = typer.Option(
        900.0, "--stage-timeout", help="Seconds per stage at most."
    ),
    as_json: bool = json_option("Print the summary as JSON."),
) -> None:
    """Run the whole pipeline on the local stack and print a summary."""
    local_only(ctx, "run")
    settings = load_settings()
    ref = ProjectRef(tenant, project)

    def say(msg: str) -> None:
        if not as_json:
            console.print(f"[dim]{msg}[/dim]")

    stack = LocalStack(settings)
    try:
        say("starting the local stack (if needed)...")
        stack.up(log=say)
    except LoraforgeError as exc:
        raise Unavailable(f"the local stack did not come up: {exc}") from exc
    settings = stack.client_settings()  # the stack's own ports, whatever the defaults

    if not paths:
        # imports numpy (a third of a second): only a run without footage pays for it
        from loraforge.stack.examples import write_example_footage

        say("no footage given: generating example footage from packaged photos...")
        paths = write_example_footage(settings.stack.data_dir / "example-footage")

    summary: dict[str, Any] = {
        "project": f"{tenant}/{project}",
        "trigger": trigger,
        "base": base,
        "lora_type": lora_type.value,
        "stages": {},
    }
    store = ObjectStore.connect(settings.s3)
    try:
        uploaded = upload_local(store, ref, paths)
    except Unavailable:
        raise
    except LoraforgeError as exc:  # the footage given cannot be used
        raise InvalidInput(str(exc)) from exc
    summary["inputs"] = len(uploaded)

    run_id = uuid.uuid4().hex[:12]
    stages = _stages(
        settings, ref, [u.key for u in uploaded], trigger, base, target, run_id, lora_type.value
    )
    backend = GrpcBackend(settings, tenant)
    with backend, _progress() as progress:
        for name, starter in stages:
            task = progress.add_task(name, total=1.0)
            try:
                job, _stub, service, _endpoint = starter(summary["stages"])
            except grpc.RpcError as exc:
                summary["stages"][name] = {"state": "UNAVAILABLE", "message": exc.details()}
                progress.update(task, description=f"{name}: {exc.details()}")
                break
            job = follow(
                backend,
                Job.from_wire(job, service),
                timeout_s=stage_timeout,
                progress=(progress, task) if isinstance(progress, Progress) else None,
            )
            summary["stages"][name] = _job_summary(job)
            if not job.terminal:
                summary["stages"][name].update(
                    state="FAILED",
                    message=f"{name} did not finish in {stage_timeout:.0f}s "
                    f"(job {job.id} keeps running)",
                )
            state = summary["stages"][name]["state"]
            progress.update(
                task,
                completed=1.0 if state == "SUCCEEDED" else job.progress,
                description=f"{name}: {state.lower()}",
            )
            if state != "SUCCEEDED":
                break
    _summarize(summary)
    show(summary, _print_summary)
    if any(s.get("state") != "SUCCEEDED" for s in summary["stages"].values()):
        raise SystemExit(EXIT_FAILED)  # the summary says which stage and why


def _stages(
    settings: Any,
    ref: Any,
    keys: list[str],
    trigger: str,
    base: str,
    target: int,
    run_id: str,
    lora_type: str = "character",
) -> list[tuple[str, Any]]:
    """(stage, start(previous stages) -> (Job, stub, service, endpoint)) in pipeline order."""
    wire = scope(ref.tenant, ref.project)
    tiny = base.startswith("tiny-")

    def ingest(prev: dict[str, Any]) -> tuple[Any, Any, str, str]:
        endpoint = settings.endpoints.ingest
        stub = ingest_pb2_grpc.IngestServiceStub(sync_channel(endpoint))
        # the type goes with the ingest: the automatic curation it starts uses the type's policy
        job = stub.StartIngest(
            ingest_pb2.StartIngestRequest(
                scope=wire, request_id=f"run-{run_id}-ingest", sources=keys, lora_type=lora_type
            ),
            timeout=RPC_TIMEOUT_S,
        )
        return job, stub, "ingest", endpoint

    def curate(prev: dict[str, Any]) -> tuple[Any, Any, str, str]:
        endpoint = settings.endpoints.curation
        stub = curation_pb2_grpc.CurationServiceStub(sync_channel(endpoint))
        # Ingest's `clips.ingested` already started a curation job with default settings and
        # this run's type (sent with the ingest): follow it instead of curating twice.
        default = not target
        auto = _automatic_curation(stub, wire, ref, prev["ingest"]["job_id"]) if default else None
        job = auto or stub.StartCuration(
            curation_pb2.StartCurationRequest(
                scope=wire,
                request_id=f"run-{run_id}-curate",
                target_size=target or None,
                lora_type=lora_type,
            ),
            timeout=RPC_TIMEOUT_S,
        )
        return job, stub, "curation", endpoint

    def caption(prev: dict[str, Any]) -> tuple[Any, Any, str, str]:
        endpoint = settings.endpoints.captioning
        stub = captioning_pb2_grpc.CaptioningServiceStub(sync_channel(endpoint))
        job = stub.StartCaptioning(
            captioning_pb2.StartCaptioningRequest(
                scope=wire,
                request_id=f"run-{run_id}-caption",
                dataset_id=prev["curate"]["result"]["dataset_id"],
                trigger=trigger,
                lora_type=lora_type,
                source="attributes",
                base_preset=base,
            ),
            timeout=RPC_TIMEOUT_S,
        )
        return job, stub, "captioning", endpoint

    def train(prev: dict[str, Any]) -> tuple[Any, Any, str, str]:
        endpoint = settings.endpoints.trainer
        stub = trainer_pb2_grpc.TrainerServiceStub(sync_channel(endpoint))
        # Tiny presets are the demo: few steps at the preset's small default size. Real presets
        # get the family defaults (an unset optional field = default).
        run = common_pb2.TrainingRun(
            dataset_id=prev["curate"]["result"]["dataset_id"],
            base_preset=base,
            rank=8 if tiny else None,
            steps=40 if tiny else None,
            seed=1,
        )
        job = stub.StartTraining(
            trainer_pb2.StartTrainingRequest(scope=wire, request_id=f"run-{run_id}-train", run=run),
            timeout=RPC_TIMEOUT_S,
        )
        return job, stub, "trainer", endpoint

    def preview(prev: dict[str, Any]) -> tuple[Any, Any, str, str]:
        endpoint = settings.endpoints.render
        stub = render_pb2_grpc.RenderServiceStub(sync_channel(endpoint))
        scenario = preview_scenario(base, prev["train"]["result"]["best_key"], trigger, lora_type)
        job = stub.SubmitRender(
            render_pb2.SubmitRenderRequest(
                scope=wire,
                request_id=f"run-{run_id}-preview",
                render=common_pb2.RenderRequest(scenario_yaml=scenario),
            ),
            timeout=RPC_TIMEOUT_S,
        )
        return job, stub, "render", endpoint

    return [
        ("ingest", ingest),
        ("curate", curate),
        ("caption", caption),
        ("train", train),
        ("preview render", preview),
    ]


def _automatic_curation(
    stub: Any, wire: Any, ref: Any, ingest_job_id: str, wait_s: float = 10.0
) -> Any | None:
    """The curation job that `clips.ingested` of this ingest job started, if it shows up."""
    request_id = follow_up_request_id(ingested_event_id(ingest_job_id))
    job_id = new_job_id(request_id, scope=f"{ref.tenant}/{ref.project}/curation")
    request = common_pb2.GetJobRequest(scope=wire, job_id=job_id)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            return stub.GetJob(request, timeout=RPC_TIMEOUT_S)
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.NOT_FOUND:
                return None
        time.sleep(0.3)
    return None


def preview_scenario(base: str, lora_key: str, trigger: str, lora_type: str = "character") -> str:
    """A small scenario that shows the trained LoRA: two shots with the trigger, and for a
    video base one transition rendered by the base model with the LoRA on it."""
    video = base.removeprefix("tiny-").startswith("wan")
    tiny = base.startswith("tiny-")
    shots = [
        {"prompt": f"{trigger}, a person looking at the camera, soft light", "seed": 1},
        {"prompt": f"{trigger}, a person turning the head and smiling, outdoors", "seed": 2},
    ]
    scenario: dict[str, Any] = {
        "name": "preview",
        "image_preset": "tiny-sdxl" if tiny else "sdxl",
        "shots": shots if video else shots[:1],
        "loras": [
            {
                "name": "trained",
                "path": lora_key,
                "type": lora_type,
                "trigger": trigger,
                "stage": "video" if video else "image",
            }
        ],
        "output": {"width": 64, "height": 64} if tiny else {"width": 832, "height": 480},
        "steps": 2 if tiny else 30,
    }
    if video:
        scenario["video_preset"] = base
        scenario["transition"] = {"frames": 9 if tiny else 81, "fps": 8 if tiny else 16}
    else:
        scenario["image_preset"] = base
    return yaml.safe_dump(scenario, sort_keys=False)


def _job_summary(job: Job | common_pb2.Job) -> dict[str, Any]:
    """A stage in the summary (the fault suite drives the stages itself, with wire jobs)."""
    if isinstance(job, common_pb2.Job):
        job = Job.from_wire(job, job.kind)
    return {"job_id": job.id, "state": job.state, "message": job.message, "result": job.result}


class _Quiet:
    def __enter__(self) -> _Quiet:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def add_task(self, *a: Any, **k: Any) -> int:
        return 0

    def update(self, *a: Any, **k: Any) -> None:
        return None


def _progress() -> Any:
    if wants_json():
        return _Quiet()
    return Progress(
        TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), console=console
    )


def _n(value: Any) -> Any:
    """Counts come back through protobuf Struct as floats; show them as whole numbers."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _summarize(summary: dict[str, Any]) -> None:
    """The stages' results as the summary's headline fields."""
    stages = summary["stages"]
    ingest = stages.get("ingest", {}).get("result", {})
    curate = stages.get("curate", {}).get("result", {})
    summary["clips"] = {
        "in": summary.get("inputs", 0),
        "made": ingest.get("clips"),
        "kept": curate.get("kept"),
        "rejected": curate.get("rejected"),
        "rejected_by_reason": curate.get("rejection_counts", {}),
    }
    summary["dataset"] = curate.get("dataset_id")
    summary["report"] = curate.get("report_key")
    train = stages.get("train", {}).get("result", {})
    render = stages.get("preview render", {}).get("result", {})
    summary["lora"] = {
        "best": train.get("best_key"),
        "last": train.get("last_key"),
        "best_step": train.get("best_step"),
        "best_reason": train.get("best_reason"),
        "final_loss": train.get("final_loss"),
        "recommended_weight": train.get("recommended_weight"),
        "strength_reason": train.get("strength_reason"),
    }
    summary["preview"] = render.get("film") or (render.get("keyframes") or [None])[0]
    not_built = [
        s for s in ("ingest", "curate", "caption", "train", "preview render") if s not in stages
    ]
    summary["not_run"] = not_built


def _print_summary(summary: dict[str, Any]) -> None:
    stages, not_built = summary["stages"], summary["not_run"]
    table = Table("stage", "state", "message", title=f"loraforge run: {summary['project']}")
    for name, stage in stages.items():
        colour = "green" if stage["state"] == "SUCCEEDED" else "red"
        table.add_row(name, f"[{colour}]{stage['state']}[/{colour}]", stage.get("message", "")[:80])
    for name in not_built:
        table.add_row(name, "[yellow]not run[/yellow]", "")
    console.print(table)
    clips = summary["clips"]
    console.print(
        f"files in: {clips['in']}  clips made: {_n(clips['made'])}  "
        f"kept: {_n(clips['kept'])}  rejected: {_n(clips['rejected'])}"
    )
    for reason, count in sorted((clips["rejected_by_reason"] or {}).items()):
        console.print(f"  rejected for {reason}: {_n(count)}")
    for line in stages.get("curate", {}).get("result", {}).get("missing") or []:
        console.print(f"  [yellow]{line}[/yellow]")
    if summary["dataset"]:
        console.print(f"dataset: {summary['dataset']}")
    if summary["report"]:
        console.print(f"report: datasets/{summary['report']}")
    lora = summary["lora"]
    if lora["best"]:
        step = (
            f" (step {_n(lora['best_step'])}: {lora['best_reason']})"
            if lora["best_step"] is not None
            else ""
        )
        console.print(f"LoRA: loras/{lora['best']}{step}")
        console.print(
            f"  pull it: loraforge lora pull {stages['train']['job_id']} "
            f"--project {summary['project'].split('/')[1]} --out ./lora"
        )
    if lora.get("recommended_weight") is not None:
        console.print(
            f"recommended LoRA strength: {lora['recommended_weight']} ({lora['strength_reason']})"
        )
    if lora["final_loss"] is not None:
        console.print(f"final training loss: {lora['final_loss']:.4f}")
    if summary["preview"]:
        console.print(f"preview: renders/{summary['preview']}")
