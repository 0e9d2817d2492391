"""`loraforge train`: train a LoRA on a captioned dataset (a job in the trainer service);
`loraforge presets`: the base models one can train on; `loraforge lora pull`: download a
run's LoRA files from the object store.

    loras  <t>/<p>/runs/<run_id>/last.safetensors, best.safetensors,
           checkpoints/step-N/adapter.safetensors, run.json (written last)
"""

from __future__ import annotations

import json
import uuid
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from loraforge.cli.jobs import call, follow, is_terminal, job_state, scope
from loraforge.cli.output import console, emit_json, fail

lora_app = typer.Typer(help="Trained LoRAs in the object store.", no_args_is_help=True)


class Which(StrEnum):
    BEST = "best"
    LAST = "last"
    ALL = "all"


def register(app: typer.Typer) -> None:
    app.command("train")(train)
    app.command("presets")(presets)
    app.add_typer(lora_app, name="lora")


# ---------------------------------------------------------------- train


def train(
    ctx: typer.Context,
    project: str = typer.Option(..., "--project", "-p", help="Project whose dataset to train on."),
    base: str = typer.Option(..., "--base", help="Base model preset (see `loraforge presets`)."),
    tenant: str = typer.Option("default", "--tenant", help="Tenant the project belongs to."),
    dataset: str | None = typer.Option(
        None, "--dataset", help="Dataset id (default: the project's newest captioned dataset)."
    ),
    rank: int | None = typer.Option(
        None,
        "--rank",
        help="LoRA rank (default: the family's; `loraforge presets --json` shows every default).",
    ),
    alpha: int | None = typer.Option(
        None,
        "--alpha",
        help="LoRA alpha: the update is scaled by "
        "alpha/rank (default: the family's alpha/rank ratio at "
        "this rank).",
    ),
    lr: float | None = typer.Option(None, "--lr", help="Learning rate (default: the family's)."),
    steps: int | None = typer.Option(
        None, "--steps", help="Optimizer steps (default: the family's; or give --epochs)."
    ),
    epochs: int | None = typer.Option(
        None,
        "--epochs",
        help="Passes over the training clips "
        "instead of --steps: steps = epochs x ceil(clips / batch), "
        "shown in the run record.",
    ),
    resolution: int | None = typer.Option(
        None, "--resolution", help="Training resolution (default: the family's)."
    ),
    frames: int | None = typer.Option(
        None, "--frames", help="Frames per video sample, 4k+1 (Wan)."
    ),
    seed: int | None = typer.Option(None, "--seed", help="Random seed."),
    dora: bool = typer.Option(
        False,
        "--dora",
        help="Train DoRA (a learned magnitude per output "
        "row on top of the LoRA pair); ComfyUI loads the file as is.",
    ),
    prompts: list[str] = typer.Option(
        [],
        "--prompt",
        help=(
            "Validation prompt for the previews rendered at each checkpoint, repeatable (the trigger "
            "is put in front where missing); default: the trigger alone and a few captions."
        ),
    ),
    options: list[str] = typer.Option(
        [],
        "--set",
        metavar="KEY=VALUE",
        help=(
            "Any other training option, repeatable (values are JSON, else text), e.g. --set "
            "block_swap=20 --set fp8_base=true --set timestep_sampling=logit_normal; "
            "`loraforge-train --help` lists them."
        ),
    ),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="Follow the job to its end."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Train a LoRA on a captioned dataset; prints where the LoRA files are stored."""
    from loraforge.cli.remote import remote_of
    from loraforge.runtime.errors import LoraforgeError, NotFound, Unavailable
    from loraforge.runtime.grpc_client import sync_channel
    from loraforge.runtime.keys import ProjectRef
    from loraforge.runtime.servicers import dict_from_struct
    from loraforge.runtime.settings import load_settings
    from loraforge.runtime.storage import ObjectStore
    from loraforge.trainer.presets import get_preset
    from loraforge.v1 import trainer_pb2, trainer_pb2_grpc

    remote = remote_of(ctx)
    try:
        get_preset(base)  # the service's rule, before any network call
        extra = (
            parse_options(options)
            | ({"use_dora": True} if dora else {})
            | ({"eval_prompts": list(prompts)} if prompts else {})
            | ({"epochs": epochs} if epochs is not None else {})
        )
    except LoraforgeError as exc:
        fail(str(exc), as_json=as_json, code=2)
    if remote is not None:
        _remote_train(
            remote,
            project,
            base,
            dataset,
            rank,
            lr,
            steps,
            resolution,
            frames,
            seed,
            extra,
            wait,
            as_json,
            alpha=alpha,
        )
        return
    try:
        settings = load_settings()
        ref = ProjectRef(tenant, project)
    except LoraforgeError as exc:
        fail(str(exc), as_json=as_json, code=2)
    store = ObjectStore.connect(settings.s3)
    try:
        dataset_id = dataset or newest_captioned_dataset(store, ref)
    except Unavailable as exc:
        fail(str(exc), as_json=as_json)
    except (NotFound, LoraforgeError) as exc:
        fail(str(exc), as_json=as_json, code=2)
    run = training_run(
        dataset_id,
        base,
        rank=rank,
        alpha=alpha,
        learning_rate=lr,
        steps=steps,
        resolution=resolution,
        frames=frames,
        seed=seed,
        extra=extra,
    )
    wire = scope(tenant, project)
    target = settings.endpoints.trainer
    with sync_channel(target) as channel:
        stub = trainer_pb2_grpc.TrainerServiceStub(channel)
        request = trainer_pb2.StartTrainingRequest(
            scope=wire, request_id=f"cli-{uuid.uuid4().hex}", run=run
        )
        job = call(stub.StartTraining, request, service="trainer", target=target, as_json=as_json)
        if wait and not is_terminal(job):
            job = follow(stub, wire, job, service="trainer", target=target, as_json=as_json)
    state = job_state(job)
    result = dict_from_struct(job.result)
    view = _view(
        job.id,
        state,
        job.message,
        result,
        tenant=tenant,
        project=project,
        dataset_id=dataset_id,
        base_preset=base,
    )
    if not _succeeded(view, as_json):
        return
    console.print(f"trained [bold]{base}[/bold] LoRA on dataset {dataset_id}: {job.message}")
    console.print(
        f"  best  loras/{view.get('best_key', '?')}"
        + (f" (step {view['best_step']})" if view.get("best_step") is not None else "")
    )
    if view.get("best_reason"):
        console.print(f"        why: {view['best_reason']}")
    if view.get("report_key"):
        console.print(f"  report  loras/{view['report_key']}")
    console.print(f"  last  loras/{view.get('last_key', '?')}")
    console.print(
        f"pull it with: loraforge lora pull {job.id} --project {project} "
        + ("" if tenant == "default" else f"--tenant {tenant} ")
        + "--out DIR"
    )


RESULT_KEYS = (
    "run_prefix",
    "last_key",
    "best_key",
    "trigger",
    "steps",
    "final_loss",
    "best_step",
    "best_reason",
    "report_key",
)


def _view(
    job_id: str, state: str, message: str, result: dict[str, Any], **context: Any
) -> dict[str, Any]:
    """What `train` reports (and prints with --json), local or remote."""
    return {
        "job_id": job_id,
        "run_id": job_id,
        "state": state,
        "message": message,
        **context,
        **{k: result[k] for k in RESULT_KEYS if k in result},
    }


def _succeeded(view: dict[str, Any], as_json: bool) -> bool:
    """Fail on FAILED/CANCELLED, print --json or the not-waited state; True to go on."""
    state, job_id = view["state"], view["job_id"]
    if state in ("FAILED", "CANCELLED"):
        fail(f"training job {job_id} {state.lower()}: {view['message']}", as_json=as_json)
    if as_json:
        emit_json(view)
        return False
    if state != "SUCCEEDED":
        console.print(
            f"training job [bold]{job_id}[/bold] {state} on dataset "
            f"{view['dataset_id']} (not waiting for it: --no-wait)"
        )
        return False
    return True


def training_run(dataset_id: str, base: str, extra: dict[str, Any], **numbers: Any) -> Any:
    """The TrainingRun `loraforge train` sends: optional fields, None leaves one unset (the
    family default, filled in by the trainer alone), a value is sent as is."""
    from loraforge.v1 import common_pb2

    run = common_pb2.TrainingRun(dataset_id=dataset_id, base_preset=base, **numbers)
    run.extra.update(extra)
    return run


def parse_options(options: list[str]) -> dict[str, Any]:
    """``["block_swap=20", "fp8_base=true", "expert=high"]`` -> a dict for ``TrainingRun.extra``
    (values parsed as JSON, else kept as text); the trainer validates names and values."""
    from loraforge.runtime.errors import InvalidInput

    out: dict[str, Any] = {}
    for option in options:
        key, sep, value = option.partition("=")
        key = key.strip()
        if not sep or not key:
            raise InvalidInput(f"--set {option!r}: expected KEY=VALUE, e.g. --set block_swap=20")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _remote_train(
    remote: Any,
    project: str,
    base: str,
    dataset: str | None,
    rank: int | None,
    lr: float | None,
    steps: int | None,
    resolution: int | None,
    frames: int | None,
    seed: int | None,
    extra: dict[str, Any],
    wait: bool,
    as_json: bool,
    alpha: int | None = None,
) -> None:
    """POST .../training-runs and follow it; the LoRA comes with `lora pull --api`."""
    with remote:
        dataset_id = dataset or remote.newest_dataset(project, as_json=as_json)
        job = remote.start(
            project,
            "trainer",
            {
                "dataset_id": dataset_id,
                "preset": base,
                "rank": rank,
                "alpha": alpha,
                "learning_rate": lr,
                "steps": steps,
                "resolution": resolution,
                "frames": frames,
                "seed": seed,
                "extra": extra,
            },
            as_json=as_json,
        )
        if wait and job["state"] not in ("SUCCEEDED", "FAILED", "CANCELLED"):
            job = remote.follow(project, "trainer", job, as_json=as_json)
    state, result = job["state"], job.get("result") or {}
    view = _view(
        job["id"],
        state,
        job.get("message", ""),
        result,
        project=project,
        dataset_id=dataset_id,
        base_preset=base,
        api=remote.api,
    )
    if not _succeeded(view, as_json):
        return
    console.print(f"trained [bold]{base}[/bold] LoRA on dataset {dataset_id}: {view['message']}")
    console.print(
        f"pull it with: loraforge --api {remote.api} lora pull {job['id']} "
        f"--project {project} --out DIR"
    )


def newest_captioned_dataset(store: Any, ref: Any) -> str:
    """The committed dataset whose captioning run record is the newest."""
    from loraforge.captioning.review import RUN_RECORD
    from loraforge.cli.datasets import dataset_ids
    from loraforge.runtime.errors import NotFound
    from loraforge.runtime.storage import Bucket

    best: tuple[float, str] | None = None
    bucket = store.bucket_name(Bucket.DATASETS)
    for ds in dataset_ids(store, ref):
        key = ref.key("datasets", ds, "captions", RUN_RECORD)
        if store.stat(Bucket.DATASETS, key) is None:
            continue
        with store._errors(f"stat {bucket}/{key}"):
            modified = store._client.stat_object(bucket, key).last_modified
        stamp = (modified.timestamp() if modified else 0.0, ds)
        if best is None or stamp > best:
            best = stamp
    if best is None:
        raise NotFound(
            f"project {ref.tenant}/{ref.project} has no captioned dataset yet; run "
            "`loraforge caption` first (or pass --dataset ID)"
        )
    return best[1]


# ---------------------------------------------------------------- presets


def presets(
    as_json: bool = typer.Option(
        False, "--json", help="Print a JSON list (with each preset's effective training defaults)."
    ),
) -> None:
    """Base model presets: family, whether the weights are provisioned, where they come from,
    and (--json) the training defaults a run gets for every option left unset."""
    from loraforge.trainer.presets import list_presets

    try:
        from loraforge.runtime.settings import load_settings

        models_dir = Path(load_settings().models.dir)
    except Exception:
        models_dir = None
    rows = list_presets(models_dir)
    if as_json:
        emit_json(rows)
        return
    from rich.table import Table

    table = Table(
        "preset", "family", "variant", "ready", "rank/alpha", "lr", "steps", "description"
    )
    for r in rows:
        d = r["defaults"]  # what a run that sets nothing gets (--json: every field)
        table.add_row(
            r["name"],
            r["family"],
            r["variant"],
            "yes" if r["provisioned"] else "no",
            f"{d['rank']}/{d['alpha']:g}",
            f"{d['learning_rate']:g}",
            str(d["steps"]),
            r["description"],
        )
    console.print(table)
    missing = [r for r in rows if not r["provisioned"]]
    if missing:
        console.print(
            f"{len(missing)} preset(s) need their weights provisioned, e.g. {missing[0]['weights']}"
        )


# ---------------------------------------------------------------- lora pull


def _remote_pull(
    remote: Any, run_id: str, out: Path, project: str, which: str, as_json: bool
) -> None:
    """GET .../training-runs/RUN_ID/lora?which= (an expiring link), then download it; `all`
    takes every checkpoint and score file from .../artifacts."""
    base = f"/v1/projects/{project}/training-runs/{run_id}"
    with remote:
        if which == "all":
            arts = remote.request("GET", f"{base}/artifacts", as_json=as_json)
            links = [
                link for group in ("checkpoints", "scores", "other") for link in arts.get(group, [])
            ]
            prefix = f"runs/{run_id}/"
        else:
            links = [
                remote.request("GET", f"{base}/lora", params={"which": which}, as_json=as_json)
            ]
            prefix = ""
        if not links:
            fail(f"run {run_id} has no files to pull yet", as_json=as_json, code=2)
        written = []
        for link in links:
            key = link["key"]
            rel = key.split(prefix, 1)[1] if prefix and prefix in key else key.rsplit("/", 1)[-1]
            dest = out / rel
            remote.download(link["url"], dest, as_json=as_json)
            written.append(str(dest))
    if as_json:
        emit_json({"run_id": run_id, "api": remote.api, "files": written})
        return
    for path in written:
        console.print(path)


@lora_app.command("pull")
def pull(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(help="Training run (job) id.")],
    out: Annotated[Path, typer.Option("--out", help="Folder to write the files to.")],
    project: str = typer.Option(..., "--project", "-p", help="Project of the run."),
    tenant: str = typer.Option("default", "--tenant", help="Tenant the project belongs to."),
    which: Annotated[
        Which,
        typer.Option("--which", help="best, last, or all (LoRA files, checkpoints and run.json)."),
    ] = Which.BEST,
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Download a trained LoRA from loras/<tenant>/<project>/runs/RUN_ID/."""
    from loraforge.cli.remote import remote_of

    remote = remote_of(ctx)
    if remote is not None:
        _remote_pull(remote, run_id, out, project, which.value, as_json)
        return
    from loraforge.runtime.errors import LoraforgeError, Unavailable
    from loraforge.runtime.keys import ProjectRef
    from loraforge.runtime.settings import load_settings
    from loraforge.runtime.storage import Bucket, ObjectStore
    from loraforge.trainer.worker import RECORD, run_prefix

    try:
        settings = load_settings()
        prefix = run_prefix(ProjectRef(tenant, project), run_id)
    except LoraforgeError as exc:
        fail(str(exc), as_json=as_json, code=2)
    store = ObjectStore.connect(settings.s3)
    try:
        if store.stat(Bucket.LORAS, f"{prefix}/{RECORD}") is None:
            fail(
                f"run {run_id} of {tenant}/{project} has no {RECORD} in loras/{prefix}/: it does "
                "not exist or has not finished (check the training job)",
                as_json=as_json,
                code=2,
            )
        keys = [o.key for o in store.list(Bucket.LORAS, prefix + "/")]
        if which is not Which.ALL:
            keys = [
                k
                for k in keys
                if k.rsplit("/", 1)[-1].startswith(f"{which.value}.")
                and k.count("/") == prefix.count("/") + 1
            ]
        written = []
        for key in sorted(keys):
            dest = out / key[len(prefix) + 1 :]
            store.download(Bucket.LORAS, key, dest)
            written.append(str(dest))
    except Unavailable as exc:
        fail(str(exc), as_json=as_json)
    except LoraforgeError as exc:
        fail(str(exc), as_json=as_json)
    if not written:
        fail(f"run {run_id} has no {which.value} LoRA file", as_json=as_json, code=2)
    if as_json:
        emit_json({"run_id": run_id, "prefix": prefix, "files": written})
        return
    for path in written:
        console.print(path)
