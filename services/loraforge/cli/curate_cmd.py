"""`loraforge curate`: select a training set from a project's ingested clips.

Reference photos are local files, uploaded once to the raw bucket under a content-addressed
key; the job runs in the curation service (settings.endpoints.curation); the result is read
back from the dataset it stored.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path
from typing import Annotated, Any

import typer
from google.protobuf import json_format
from rich.table import Table

from loraforge.cli.jobs import call, follow, job_state
from loraforge.cli.jobs import scope as wire_scope
from loraforge.cli.output import console, emit_json, fail
from loraforge.runtime.errors import LoraforgeError
from loraforge.runtime.grpc_client import sync_channel
from loraforge.runtime.keys import ProjectRef
from loraforge.runtime.params import LoraType
from loraforge.runtime.servicers import struct_from_dict
from loraforge.runtime.settings import load_settings
from loraforge.runtime.storage import Bucket, ObjectStore
from loraforge.v1 import common_pb2, curation_pb2, curation_pb2_grpc

PHOTO_TYPES = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".webp": "image/webp",
    ".bmp": "image/bmp",
    ".tif": "image/tiff",
    ".tiff": "image/tiff",
}


def register(app: typer.Typer) -> None:
    app.command("curate")(curate)


def upload_reference(store: ObjectStore, project: ProjectRef, path: Path) -> str:
    """Content-addressed raw key `<tenant>/<project>/references/<sha256>.<ext>`; uploads once."""
    ext = path.suffix.lower()
    if ext not in PHOTO_TYPES:
        raise LoraforgeError(
            f"{path}: a reference must be a photo ({', '.join(sorted(PHOTO_TYPES))})"
        )
    if not path.is_file():
        raise LoraforgeError(f"{path}: no such file")
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    key = project.key("references", f"{h.hexdigest()}{'.jpg' if ext == '.jpeg' else ext}")
    store.put_if_absent_file(Bucket.RAW, key, path, content_type=PHOTO_TYPES[ext])
    return key


def parse_overrides(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise LoraforgeError(f"--set {item!r}: write it as KEY=VALUE, e.g. max_people=1")
        try:
            out[name.strip()] = json.loads(value)
        except ValueError:
            out[name.strip()] = value
    return out


def curate(
    ctx: typer.Context,
    project: str = typer.Option(
        ..., "--project", "-p", help="Project whose ingested clips to curate."
    ),
    tenant: str = typer.Option("default", "--tenant", help="Tenant the project belongs to."),
    reference: Annotated[
        list[Path] | None,
        typer.Option(
            "--reference", "-r", help="Reference photo of the subject (repeat for several)."
        ),
    ] = None,
    # no default of its own: the policy's (50-80 clips, 20-30 photos) is the automatic curation's
    # too, so a plain `curate` after ingest finds that job's dataset instead of curating again
    target: int | None = typer.Option(
        None,
        "--target",
        min=1,
        max=10_000,
        help="Clips to select [default: the policy's, 80 clips / 30 photos].",
    ),
    lora_type: Annotated[
        LoraType, typer.Option("--type", help="What the LoRA learns.")
    ] = LoraType.CHARACTER,
    policy: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="Policy override KEY=VALUE (JSON value), e.g. --set min_short_side_px=256.",
        ),
    ] = None,
    identity_cluster: int | None = typer.Option(
        None,
        "--identity-cluster",
        min=0,
        help="Character/expression: the identity cluster to train on (the report lists them; 0 is the "
        "largest) when no --reference names the person.",
    ),
    build: Annotated[
        list[str] | None,
        typer.Option(
            "--build",
            help="Option of the type's dataset builder KEY=VALUE (JSON value), e.g. --build cutout=true, "
            "--build inpainter=lama.",
        ),
    ] = None,
    wait: bool = typer.Option(
        True, "--wait/--no-wait", help="Wait for the job and show the result."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON (every clip)."),
) -> None:
    """Measure every ingested clip, reject unusable ones, select a balanced training set."""
    reference, policy = reference or [], list(policy or [])
    # both are policy fields (identity_cluster, build_options): one path to the service
    if identity_cluster is not None:
        policy.append(f"identity_cluster={identity_cluster}")
    if build:
        try:
            policy.append("build_options=" + json.dumps(parse_overrides(build)))
        except LoraforgeError as exc:
            fail(str(exc).replace("--set", "--build"), as_json=as_json, code=2)
    from loraforge.cli.remote import remote_of

    remote = remote_of(ctx)
    if remote is not None:
        _remote_curate(remote, project, reference, target, lora_type, policy, wait, as_json)
        return
    try:
        settings = load_settings()
        ref = ProjectRef(tenant, project)
        store = ObjectStore.connect(settings.s3) if (reference or wait) else None
        overrides = parse_overrides(policy)
        keys = [upload_reference(store, ref, p) for p in reference]  # type: ignore[arg-type]
    except LoraforgeError as exc:
        fail(str(exc), as_json=as_json, code=2)
    scope = wire_scope(tenant, project)
    request = curation_pb2.StartCurationRequest(
        scope=scope,
        request_id=uuid.uuid4().hex,
        reference_keys=keys,
        **({"target_size": target} if target is not None else {}),
        lora_type=lora_type.value,
        policy_overrides=struct_from_dict(overrides),
    )
    endpoint = settings.endpoints.curation
    with sync_channel(endpoint) as channel:
        stub = curation_pb2_grpc.CurationServiceStub(channel)
        job = call(
            stub.StartCuration,
            request,
            service="curation",
            target=endpoint,
            as_json=as_json,
            timeout=30,
        )
        if not wait:
            if as_json:
                emit_json({"job_id": job.id, "state": job_state(job)})
            else:
                console.print(
                    f"curation job [bold]{job.id}[/bold] started "
                    f"(references: {len(keys)}); follow it with --wait"
                )
            return
        job = follow(stub, scope, job, service="curation", target=endpoint, as_json=as_json)
    if job.state != common_pb2.JOB_STATE_SUCCEEDED:
        fail(f"curation job {job.id} {job_state(job).lower()}: {job.message}", as_json=as_json)
    result = json_format.MessageToDict(job.result)
    try:
        record = store.get_json(Bucket.DATASETS, result["dataset_key"])  # type: ignore[union-attr]
        manifest = store.get_json(Bucket.DATASETS, result["manifest_key"]) if as_json else None  # type: ignore[union-attr]
    except (LoraforgeError, KeyError) as exc:
        fail(f"job {job.id} succeeded but its dataset cannot be read: {exc}", as_json=as_json)
    report = {"bucket": store.bucket_name(Bucket.DATASETS), "key": result["report_key"]}  # type: ignore[union-attr]
    if as_json:
        emit_json(_json_summary(job, record, manifest, report))
    else:
        _print_summary(job, record, report)


def _json_summary(job: Any, record: dict, manifest: dict | None, report: dict) -> dict:
    clips = [
        {
            "clip_id": c["clip_id"],
            "decision": c["decision"],
            "selected": c["selected"],
            "reason_codes": c["reason_codes"],
            "reasons": c["reasons"],
            "flag_codes": c["flag_codes"],
            "flags": c["flags"],
            "source_id": c.get("source_id"),
        }
        for c in (manifest or {}).get("clips", [])
    ]
    return {
        "job_id": job.id,
        "state": job_state(job),
        "dataset_id": record["id"],
        "lora_type": record["lora_type"],
        "policy_hash": record.get("policy_hash", ""),
        "counts": record["counts"],
        "rejection_counts": record["rejection_counts"],
        "missing": record["missing"],
        "selected": [c["clip_id"] for c in record["selected"]],
        "report": report,
        "clips": clips,
    }


def _print_summary(job: Any, record: dict, report: dict) -> None:
    counts = record["counts"]
    console.print(
        f"[green]dataset {record['id']}[/green]: {counts['selected']} selected "
        f"(target {record.get('target_size')}), {counts['kept']} kept, "
        f"{counts['rejected']} rejected of {counts['clips']} clips"
    )
    console.print(f"policy: {record['lora_type']} LoRA (policy {record.get('policy_hash', '?')})")
    if record["rejection_counts"]:
        table = Table("rejected because", "clips")
        for reason, n in record["rejection_counts"].items():
            table.add_row(reason, str(n))
        console.print(table)
    if record["missing"]:
        console.print("[yellow]missing for a balanced set:[/yellow]")
        for line in record["missing"]:
            console.print(f"  - {line}")
    console.print(f"report: s3://{report['bucket']}/{report['key']}")


def _remote_curate(
    remote: Any,
    project: str,
    reference: list[Path],
    target: int | None,
    lora_type: LoraType,
    policy: list[str],
    wait: bool,
    as_json: bool,
) -> None:
    """POST .../curation-jobs (references uploaded with POST .../uploads), follow, then the
    dataset's summary from GET .../datasets/{id}."""
    try:
        overrides = parse_overrides(policy)
        for path in reference:
            if path.suffix.lower() not in PHOTO_TYPES:
                raise LoraforgeError(
                    f"{path}: a reference must be a photo ({', '.join(sorted(PHOTO_TYPES))})"
                )
            if not path.is_file():
                raise LoraforgeError(f"{path}: no such file")
    except LoraforgeError as exc:
        fail(str(exc), as_json=as_json, code=2)
    with remote:
        keys = [remote.upload(project, path, as_json=as_json)["key"] for path in reference]
        job = remote.start(
            project,
            "curation",
            {
                "reference_keys": keys,
                "target_size": target,
                "lora_type": lora_type.value,
                "policy_overrides": overrides,
            },
            as_json=as_json,
        )
        if not wait:
            if as_json:
                emit_json({"job_id": job["id"], "state": job["state"]})
            else:
                console.print(
                    f"curation job [bold]{job['id']}[/bold] started "
                    f"(references: {len(keys)}); follow it with --wait"
                )
            return
        job = remote.follow(project, "curation", job, as_json=as_json)
        if job["state"] != "SUCCEEDED":
            fail(
                f"curation job {job['id']} {job['state'].lower()}: {job.get('message', '')}",
                as_json=as_json,
            )
        result = job.get("result") or {}
        dataset_id = (
            result.get("dataset_id") or str(result.get("dataset_key", "")).rsplit("/", 2)[-2:][0]
        )
        detail = remote.request(
            "GET", f"/v1/projects/{project}/datasets/{dataset_id}", as_json=as_json
        )
    report = detail.get("report") or {}
    view = {
        "job_id": job["id"],
        "state": job["state"],
        "dataset_id": detail["id"],
        "lora_type": detail.get("lora_type"),
        "policy_hash": detail.get("policy_hash", ""),
        "counts": detail.get("counts", {}),
        "rejection_counts": detail.get("rejection_counts", {}),
        "missing": detail.get("missing", []),
        "report": {"key": report.get("key"), "url": report.get("url")},
    }
    if as_json:
        emit_json(view)
        return
    counts = view["counts"]
    console.print(
        f"[green]dataset {view['dataset_id']}[/green]: {counts.get('selected', 0)} selected "
        f"(target {target or 'default'}), {counts.get('kept', 0)} kept, {counts.get('rejected', 0)} "
        f"rejected of {counts.get('clips', 0)} clips"
    )
    console.print(f"policy: {view['lora_type']} LoRA (policy {view['policy_hash'] or '?'})")
    if view["rejection_counts"]:
        table = Table("rejected because", "clips")
        for reason, n in view["rejection_counts"].items():
            table.add_row(reason, str(n))
        console.print(table)
    for line in view["missing"]:
        console.print(f"  [yellow]missing:[/yellow] {line}")
    if report.get("url"):
        console.print(f"report: {report['url']}")
