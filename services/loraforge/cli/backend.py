"""What the commands need from the system, over either transport: a small `Backend` interface
that returns typed results and raises the project's errors (loraforge.runtime.errors).

    backend = backend_of(ctx, tenant)    # GrpcBackend (the local stack) or HttpBackend (--api)
    with backend:
        uploaded = backend.upload_sources(project, paths)
        job = backend.start("ingest", project, {"sources": [...], "min_s": 2.0})
        job = follow(backend, project, job)          # loraforge.cli.jobs

`GrpcBackend` talks gRPC to the services (settings.endpoints) and S3 (settings.s3) for uploads
and dataset records; `HttpBackend` talks to a gateway's REST API through `remote.Remote`. A
command is written once against `Backend`; what only one transport offers is refused on the
other with the transport it needs (`local_only`).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, Self

import grpc
import typer
from google.protobuf import json_format

from loraforge.captioning.auto import save_defaults
from loraforge.captioning.review import RUN_RECORD as CAPTION_RUN_RECORD
from loraforge.captioning.review import CaptionReviewStore
from loraforge.cli.datasets import dataset_ids, resolve_dataset
from loraforge.cli.remote import ENV_API, CliContext, Remote
from loraforge.ingest.upload import Uploaded, upload_local
from loraforge.library import Library, parse_spec
from loraforge.library.layout import run_prefix, run_record_key
from loraforge.runtime.errors import (
    AlreadyExists,
    Conflict,
    InvalidInput,
    LoraforgeError,
    NotFound,
    Unavailable,
)
from loraforge.runtime.grpc_client import sync_channel, unavailable_hint
from loraforge.runtime.keys import ProjectRef
from loraforge.runtime.servicers import dict_from_struct
from loraforge.runtime.settings import Settings, load_settings
from loraforge.runtime.storage import Bucket, ObjectStore
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

KINDS = ("ingest", "curation", "captioning", "trainer", "render")
TERMINAL = ("SUCCEEDED", "FAILED", "CANCELLED")
RPC_TIMEOUT_S = 15.0
LIST_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Job:
    """A job as both transports describe it. `service` is the service that runs it (one of
    KINDS: where to ask about it), `kind` what its record says; `tenant` is None over HTTP (the
    key's tenant)."""

    id: str
    service: str
    kind: str
    state: str  # PENDING, RUNNING, SUCCEEDED, FAILED, CANCELLED
    project: str
    tenant: str | None = None
    progress: float = 0.0
    message: str = ""
    result: dict[str, Any] = field(default_factory=dict)
    created_at: str | None = None
    updated_at: str | None = None
    finished_at: str | None = None
    artifacts: list[dict[str, Any]] = field(default_factory=list)  # bucket, key, kind, size

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL

    @classmethod
    def from_wire(cls, job: common_pb2.Job, service: str) -> Job:
        def ts(name: str) -> str | None:
            return getattr(job, name).ToDatetime().isoformat() + "Z" if job.HasField(name) else None

        return cls(
            id=job.id,
            service=service,
            kind=job.kind or service,
            state=common_pb2.JobState.Name(job.state).removeprefix("JOB_STATE_"),
            project=job.project,
            tenant=job.tenant,
            progress=job.progress,
            message=job.message,
            result=dict_from_struct(job.result) if job.HasField("result") else {},
            created_at=ts("created_at"),
            updated_at=ts("updated_at"),
            finished_at=ts("finished_at"),
            artifacts=[
                {"bucket": a.bucket, "key": a.key, "kind": a.kind, "size": a.size}
                for a in job.artifacts
            ],
        )

    @classmethod
    def from_api(cls, body: dict[str, Any], service: str = "") -> Job:
        return cls(
            id=body["id"],
            service=service or body["kind"],
            kind=body.get("kind") or service,
            state=body["state"],
            project=body.get("project", ""),
            progress=float(body.get("progress") or 0.0),
            message=str(body.get("message") or ""),
            result=body.get("result") or {},
            created_at=body.get("created_at"),
            updated_at=body.get("updated_at"),
            finished_at=body.get("finished_at"),
            artifacts=body.get("artifacts") or [],
        )


@dataclass(frozen=True)
class JobList:
    jobs: list[Job]
    # services that did not answer (the local stack lists each service on its own):
    # {"service", "target", "reason"}
    skipped: list[dict[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class Dataset:
    """A committed dataset's summary. `selected` and `clips` (every clip's decision) are known
    on the local stack only (read from its records); `report` is s3 bucket + key there, a
    link over HTTP."""

    id: str
    lora_type: str | None
    policy_hash: str
    counts: dict[str, int]
    rejection_counts: dict[str, int]
    missing: list[str]
    target_size: int | None = None
    report: dict[str, Any] = field(default_factory=dict)
    selected: list[str] | None = None
    clips: list[dict[str, Any]] | None = None


@dataclass(frozen=True)
class Caption:
    """One clip's caption as review shows it; `warnings` are known from the local stack's
    records (and the gateway's listing), not from an edit's answer."""

    clip_id: str
    dataset_id: str
    text: str
    approved: bool = False
    approved_by: str = ""
    edited: bool = False  # the current version is a person's
    author: str = ""
    versions: int = 1
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Pulled:
    """Files a `lora pull` wrote; `source` says where from (the run's prefix in the loras
    bucket, or the gateway)."""

    files: list[str]
    source: dict[str, str]


class Backend(Protocol):
    """What the commands ask of the system. Every method raises loraforge.runtime.errors."""

    @property
    def where(self) -> str:
        """Said in messages: "the local stack" or the gateway's URL."""

    @property
    def tenant(self) -> str | None:
        """The tenant acted for; None: the API key's."""

    def ensure_project(self, project: str) -> None: ...
    def start(self, kind: str, project: str, fields: dict[str, Any]) -> Job: ...
    def get(self, kind: str, project: str, job_id: str) -> Job: ...
    def list_jobs(
        self, project: str, kinds: Sequence[str], states: Sequence[str], limit: int
    ) -> JobList: ...
    def cancel_hint(self, job: Job) -> str: ...
    def upload_sources(
        self, project: str, paths: list[Path], on_file: Callable[[Path, int, int], None]
    ) -> list[Uploaded]: ...
    def upload_reference(self, project: str, path: Path) -> str: ...
    def dataset(self, project: str, job: Job, *, with_clips: bool) -> Dataset: ...
    def resolve_dataset(
        self, project: str, dataset_id: str | None, *, captioned: bool = False
    ) -> tuple[str, str | None]: ...
    def save_caption_defaults(self, project: str, **values: Any) -> None: ...
    def captions(self, project: str, dataset_id: str) -> list[Caption]: ...
    def edit_caption(
        self, project: str, dataset_id: str, clip_id: str, text: str, *, user: str, approve: bool
    ) -> Caption: ...
    def approve_caption(
        self, project: str, dataset_id: str, clip_id: str, *, user: str, revoke: bool
    ) -> Caption: ...
    def pull_run(self, project: str, run_id: str, which: str, out: Path) -> Pulled: ...
    def render_links(self, job: Job) -> dict[str, str]: ...
    # the LoRA library: records as the library's public JSON (the same over both transports)
    def loras(self, project: str) -> list[dict[str, Any]]: ...
    def lora(self, project: str, ref: str) -> dict[str, Any]: ...
    def promote(
        self, project: str, run_id: str, name: str, checkpoint: str | None, reason: str
    ) -> dict[str, Any]: ...
    def tag(self, project: str, name: str, version: int, alias: str) -> dict[str, Any]: ...
    def untag(self, project: str, name: str, alias: str) -> dict[str, Any] | None: ...
    def delete_version(self, project: str, name: str, version: int) -> dict[str, Any]: ...
    def checkpoints(self, project: str, run_id: str) -> list[dict[str, Any]]: ...
    # deployments (library/deployments.py records, the same over both transports) and calls
    def create_deployment(self, project: str, spec: dict[str, Any]) -> dict[str, Any]: ...
    def deployment(self, project: str, name: str) -> dict[str, Any]: ...
    def deployments(self, project: str) -> list[dict[str, Any]]: ...
    def delete_deployment(self, project: str, name: str) -> dict[str, Any]: ...
    def call_deployment(self, project: str, name: str, call: dict[str, Any]) -> Job: ...
    def download_output(self, job: Job, key: str, dest: Path) -> None: ...
    def close(self) -> None: ...
    def __enter__(self) -> Self: ...
    def __exit__(self, *exc: object) -> None: ...


def backend_of(ctx: typer.Context | None, tenant: str) -> Backend:
    """The gateway when `--api` (or LF_API) was given, else the local stack for `tenant`."""
    obj = ctx.find_object(CliContext) if ctx is not None else None
    if obj is not None and obj.api:
        return HttpBackend(Remote(obj.api, obj.key))
    return GrpcBackend(load_settings(), tenant)


def local_only(ctx: typer.Context | None, command: str) -> None:
    """Refuse `--api` for a command the gateway has no equivalent of (exit 2)."""
    obj = ctx.find_object(CliContext) if ctx is not None else None
    if obj is not None and obj.api:
        raise InvalidInput(
            f"`loraforge {command}` is local-only: it has no equivalent in the gateway's API "
            f"({obj.api}); run it without --api (and without {ENV_API} set) against the local stack"
        )


# -- gRPC: the local stack ----------------------------------------------------------------------

_STUBS: dict[str, Any] = {
    "ingest": ingest_pb2_grpc.IngestServiceStub,
    "curation": curation_pb2_grpc.CurationServiceStub,
    "captioning": captioning_pb2_grpc.CaptioningServiceStub,
    "trainer": trainer_pb2_grpc.TrainerServiceStub,
    "render": render_pb2_grpc.RenderServiceStub,
}
# kind -> (start method, its request message)
_STARTS: dict[str, tuple[str, Any]] = {
    "render": ("SubmitRender", render_pb2.SubmitRenderRequest),
    "ingest": ("StartIngest", ingest_pb2.StartIngestRequest),
    "curation": ("StartCuration", curation_pb2.StartCurationRequest),
    "captioning": ("StartCaptioning", captioning_pb2.StartCaptioningRequest),
    "trainer": ("StartTraining", trainer_pb2.StartTrainingRequest),
}


def rpc_error(exc: grpc.RpcError, *, service: str, target: str) -> LoraforgeError:
    """A gRPC status as the project's error (the services map theirs to statuses the other way
    in runtime.grpc_server)."""
    code, details = exc.code(), exc.details() or ""
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return Unavailable(f"{unavailable_hint(target, service)} ({code.name.lower()})")
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return InvalidInput(details or "invalid request")
    kinds: dict[grpc.StatusCode, type[LoraforgeError]] = {
        grpc.StatusCode.NOT_FOUND: NotFound,
        grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
        grpc.StatusCode.ABORTED: Conflict,
        grpc.StatusCode.FAILED_PRECONDITION: Conflict,
    }
    return kinds.get(code, LoraforgeError)(f"{service}: {code.name}: {details}")


def call(
    method: Any, request: Any, *, service: str, target: str, timeout: float = RPC_TIMEOUT_S
) -> Any:
    """One call with a deadline; a failure raised as the project's error. The channel
    (grpc_client.sync_channel) retries UNAVAILABLE itself; Start* requests carry a request id,
    so a retried start never makes a second job."""
    try:
        return method(request, timeout=timeout)
    except grpc.RpcError as exc:
        raise rpc_error(exc, service=service, target=target) from exc


class GrpcBackend:
    where = "the local stack"

    def __init__(self, settings: Settings, tenant: str):
        self.settings, self.tenant = settings, tenant
        self._channels: dict[str, grpc.Channel] = {}
        self._store: ObjectStore | None = None

    def ref(self, project: str) -> ProjectRef:
        return ProjectRef(self.tenant, project)  # validates both names

    def scope(self, project: str) -> common_pb2.ProjectScope:
        return common_pb2.ProjectScope(tenant=self.tenant, project=project)

    def target(self, kind: str) -> str:
        return str(getattr(self.settings.endpoints, kind))

    def stub(self, kind: str) -> Any:
        if kind not in self._channels:
            self._channels[kind] = sync_channel(self.target(kind))
        return _STUBS[kind](self._channels[kind])

    def call(self, kind: str, method: str, request: Any, timeout: float = RPC_TIMEOUT_S) -> Any:
        return call(
            getattr(self.stub(kind), method),
            request,
            service=kind,
            target=self.target(kind),
            timeout=timeout,
        )

    @property
    def store(self) -> ObjectStore:
        if self._store is None:
            self._store = ObjectStore.connect(self.settings.s3)
        return self._store

    def ensure_project(self, project: str) -> None:
        """Nothing to do: a job's start makes its project exist (runtime/projects.py)."""
        self.ref(project)

    def start(self, kind: str, project: str, fields: dict[str, Any]) -> Job:
        method, message = _STARTS[kind]
        self.ref(project)  # refuses a bad tenant or project name before any call
        if kind == "trainer":  # the API's flat body is the wire's TrainingRun
            request = message(run=training_run_of(fields))
        elif kind == "render":  # the API's body is the wire's RenderRequest
            request = message(
                render=common_pb2.RenderRequest(scenario_yaml=fields["scenario_yaml"])
            )
        else:
            request = json_format.ParseDict(
                {k: v for k, v in fields.items() if v is not None}, message()
            )
        request.scope.CopyFrom(self.scope(project))
        request.request_id = fields.get("request_id") or f"cli-{uuid.uuid4().hex}"
        return Job.from_wire(self.call(kind, method, request, timeout=30.0), kind)

    def get(self, kind: str, project: str, job_id: str) -> Job:
        request = common_pb2.GetJobRequest(scope=self.scope(project), job_id=job_id)
        return Job.from_wire(self.call(kind, "GetJob", request), kind)

    def list_jobs(
        self, project: str, kinds: Sequence[str], states: Sequence[str], limit: int
    ) -> JobList:
        """Each service's ListJobs (together, 5 s each at most); one that does not answer is
        skipped with the reason."""
        if project:
            self.ref(project)
        request = common_pb2.ListJobsRequest(
            scope=self.scope(project),
            states=[f"JOB_STATE_{s.upper()}" for s in states],  # the enum's names
            page_size=max(0, limit),
        )

        def ask(kind: str) -> list[Job] | dict[str, str]:
            try:
                response = self.call(kind, "ListJobs", request, timeout=LIST_TIMEOUT_S)
            except LoraforgeError as exc:
                return {"service": kind, "target": self.target(kind), "reason": str(exc)}
            return [Job.from_wire(j, kind) for j in response.jobs]

        for kind in kinds:  # channels made here, before the threads share the dict
            self.stub(kind)
        with ThreadPoolExecutor(max_workers=max(1, len(kinds))) as pool:
            answers = list(pool.map(ask, kinds))
        return JobList(
            [j for a in answers if isinstance(a, list) for j in a],
            [a for a in answers if isinstance(a, dict)],
        )

    def cancel_hint(self, job: Job) -> str:
        return (
            f"Cancel it with the {job.service} service's CancelJob call (job id {job.id}, "
            f"project {self.tenant}/{job.project})"
        )

    def upload_sources(
        self, project: str, paths: list[Path], on_file: Callable[[Path, int, int], None]
    ) -> list[Uploaded]:
        self.store.ensure_buckets()
        return upload_local(self.store, self.ref(project), paths, on_file=on_file)

    def upload_reference(self, project: str, path: Path) -> str:
        """Content-addressed raw key `<tenant>/<project>/references/<sha256>.<ext>`; uploads
        once."""
        check_photo(path)
        ext = path.suffix.lower()
        h = hashlib.sha256()
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        key = self.ref(project).key(
            "references", f"{h.hexdigest()}{'.jpg' if ext == '.jpeg' else ext}"
        )
        self.store.put_if_absent_file(Bucket.RAW, key, path, content_type=PHOTO_TYPES[ext])
        return key

    def dataset(self, project: str, job: Job, *, with_clips: bool) -> Dataset:
        try:
            record = self.store.get_json(Bucket.DATASETS, job.result["dataset_key"])
            manifest = (
                self.store.get_json(Bucket.DATASETS, job.result["manifest_key"])
                if with_clips
                else {}
            )
            report = {
                "bucket": self.store.bucket_name(Bucket.DATASETS),
                "key": job.result["report_key"],
            }
        except (LoraforgeError, KeyError) as exc:
            raise LoraforgeError(
                f"job {job.id} succeeded but its dataset cannot be read: {exc}"
            ) from exc
        return Dataset(
            id=record["id"],
            lora_type=record["lora_type"],
            policy_hash=record.get("policy_hash", ""),
            counts=record["counts"],
            rejection_counts=record["rejection_counts"],
            missing=record["missing"],
            target_size=record.get("target_size"),
            report=report,
            selected=[c["clip_id"] for c in record["selected"]],
            clips=[_clip_view(c) for c in manifest.get("clips", [])] if with_clips else None,
        )

    def resolve_dataset(
        self, project: str, dataset_id: str | None, *, captioned: bool = False
    ) -> tuple[str, str | None]:
        """(the dataset named, or the project's newest (`captioned`: newest captioning run);
        its LoRA type)."""
        if captioned and not dataset_id:
            dataset_id = newest_captioned_dataset(self.store, self.ref(project))
        found, record = resolve_dataset(self.store, self.ref(project), dataset_id)
        return found, record.get("lora_type") or None

    def pull_run(self, project: str, run_id: str, which: str, out: Path) -> Pulled:
        """The run's files from loras/<t>/<p>/runs/RUN_ID/ (`which`: best, last or all)."""
        ref = self.ref(project)
        prefix = run_prefix(ref, run_id)
        if self.store.stat(Bucket.LORAS, run_record_key(ref, run_id)) is None:
            raise NotFound(
                f"run {run_id} of {ref.tenant}/{ref.project} has no run.json in "
                f"loras/{prefix}/: it does not exist or has not finished (check the training job)"
            )
        keys = [o.key for o in self.store.list(Bucket.LORAS, prefix + "/")]
        if which != "all":
            keys = [
                k
                for k in keys
                if k.rsplit("/", 1)[-1].startswith(f"{which}.")
                and k.count("/") == prefix.count("/") + 1
            ]
        written = []
        for key in sorted(keys):
            dest = out / key[len(prefix) + 1 :]
            self.store.download(Bucket.LORAS, key, dest)
            written.append(str(dest))
        if not written:
            raise NotFound(f"run {run_id} has no {which} LoRA file")
        return Pulled(written, {"prefix": prefix})

    def save_caption_defaults(self, project: str, **values: Any) -> None:
        """Later datasets of this project are captioned the same way, automatically."""
        save_defaults(self.store, self.ref(project), **values)

    def captions(self, project: str, dataset_id: str) -> list[Caption]:
        """Read from the dataset's records (they carry each version's warnings)."""
        return [
            Caption(
                clip_id=r.clip_id,
                dataset_id=dataset_id,
                text=r.text,
                approved=r.approved,
                approved_by=r.approved_by,
                edited=r.current.by_human,
                author=r.current.author,
                versions=len(r.versions),
                warnings=list(r.current.warnings),
            )
            for r in CaptionReviewStore(self.store, self.ref(project), dataset_id).list()
        ]

    def edit_caption(
        self, project: str, dataset_id: str, clip_id: str, text: str, *, user: str, approve: bool
    ) -> Caption:
        request = captioning_pb2.EditCaptionRequest(
            scope=self.scope(project),
            dataset_id=dataset_id,
            clip_id=clip_id,
            text=text,
            user=user,
            approve=approve,
        )
        return _caption_from_wire(self.call("captioning", "EditCaption", request))

    def approve_caption(
        self, project: str, dataset_id: str, clip_id: str, *, user: str, revoke: bool
    ) -> Caption:
        request = captioning_pb2.ApproveCaptionRequest(
            scope=self.scope(project),
            dataset_id=dataset_id,
            clip_id=clip_id,
            user=user,
            revoke=revoke,
        )
        return _caption_from_wire(self.call("captioning", "ApproveCaption", request))

    def render_links(self, job: Job) -> dict[str, str]:
        """key -> presigned GET URL of a render's outputs."""
        r = job.result
        keys = [k for k in [*r.get("keyframes", []), *r.get("transitions", [])] if k]
        keys += [k for k in (r.get("film"), r.get("thumbnails")) if k]
        return {k: self.store.presigned_get(Bucket.RENDERS, k) for k in keys}

    # -- the library: read and written in the object store itself (library/store.py) --------

    def library(self, project: str) -> Library:
        return Library(self.store, self.ref(project))

    def loras(self, project: str) -> list[dict[str, Any]]:
        lib = self.library(project)
        return [lib.summary(n) for n in lib.names()]

    def lora(self, project: str, ref: str) -> dict[str, Any]:
        lib = self.library(project)
        return lib.resolve(ref).public() if ":" in ref else lib.summary(parse_spec(ref)[0])

    def promote(
        self, project: str, run_id: str, name: str, checkpoint: str | None, reason: str
    ) -> dict[str, Any]:
        version = self.library(project).register(
            run_id, name, checkpoint=checkpoint, reason=reason, by="cli"
        )
        return version.public()

    def tag(self, project: str, name: str, version: int, alias: str) -> dict[str, Any]:
        return self.library(project).tag(name, version, alias, by="cli").model_dump(mode="json")

    def untag(self, project: str, name: str, alias: str) -> dict[str, Any] | None:
        self.library(project).untag(name, alias)
        return None

    def delete_version(self, project: str, name: str, version: int) -> dict[str, Any]:
        return self.library(project).delete(name, version, by="cli")

    def checkpoints(self, project: str, run_id: str) -> list[dict[str, Any]]:
        return [c.model_dump(mode="json") for c in self.library(project).checkpoints(run_id)]

    # -- deployments: the render service's calls ------------------------------------------

    def _deployment_call(self, method: str, project: str, name: str = "", spec: Any = None) -> Any:
        request = render_pb2.DeploymentRequest(
            scope=self.scope(project), name=name, spec_json=json.dumps(spec) if spec else ""
        )
        return self.call("render", method, request).deployment_json

    def create_deployment(self, project: str, spec: dict[str, Any]) -> dict[str, Any]:
        self.ref(project)
        return dict(json.loads(self._deployment_call("CreateDeployment", project, spec=spec)))

    def deployment(self, project: str, name: str) -> dict[str, Any]:
        return dict(json.loads(self._deployment_call("GetDeployment", project, name)))

    def deployments(self, project: str) -> list[dict[str, Any]]:
        return [json.loads(d) for d in self._deployment_call("ListDeployments", project)]

    def delete_deployment(self, project: str, name: str) -> dict[str, Any]:
        return dict(json.loads(self._deployment_call("DeleteDeployment", project, name)))

    def call_deployment(self, project: str, name: str, call: dict[str, Any]) -> Job:
        request = render_pb2.CallDeploymentRequest(
            scope=self.scope(project),
            request_id=f"cli-{uuid.uuid4().hex}",
            deployment=name,
            image=call.get("image") or "",
            last_image=call.get("last_image") or "",
            prompt=call.get("prompt") or "",
            seed=call.get("seed"),
        )
        return Job.from_wire(self.call("render", "CallDeployment", request), "render")

    def download_output(self, job: Job, key: str, dest: Path) -> None:
        self.store.download(Bucket.RENDERS, key, dest)

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()
        self._channels.clear()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def training_run_of(fields: dict[str, Any]) -> common_pb2.TrainingRun:
    """The gateway's training-run body (`preset`, optional numbers, `extra`) as the wire's
    TrainingRun: a number left None stays unset (the family's default, filled in by the
    trainer alone), a value is sent as is."""
    body = {k: v for k, v in fields.items() if v is not None}
    body["base_preset"] = body.pop("preset")
    return json_format.ParseDict(body, common_pb2.TrainingRun())


def newest_captioned_dataset(store: ObjectStore, ref: ProjectRef) -> str:
    """The committed dataset whose captioning run record is the newest."""
    best: tuple[float, str] | None = None
    bucket = store.bucket_name(Bucket.DATASETS)
    for ds in dataset_ids(store, ref):
        key = ref.key("datasets", ds, "captions", CAPTION_RUN_RECORD)
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


def _caption_from_wire(rec: captioning_pb2.CaptionRecord) -> Caption:
    author = rec.versions[-1].author if rec.versions else ""
    return Caption(
        clip_id=rec.clip_id,
        dataset_id=rec.dataset_id,
        text=rec.text,
        approved=rec.approved,
        approved_by=rec.approved_by,
        edited=author.startswith("user:"),
        author=author,
        versions=len(rec.versions),
    )


def _clip_view(c: dict[str, Any]) -> dict[str, Any]:
    return {
        "clip_id": c["clip_id"],
        "decision": c["decision"],
        "selected": c["selected"],
        "reason_codes": c["reason_codes"],
        "reasons": c["reasons"],
        "flag_codes": c["flag_codes"],
        "flags": c["flags"],
        "source_id": c.get("source_id"),
    }


# -- HTTP: a gateway ----------------------------------------------------------------------------

# kind -> path segment under /v1/projects/{p}/ (the gateway's routers/jobs.py)
SEGMENTS = {
    "ingest": "ingest-jobs",
    "curation": "curation-jobs",
    "captioning": "captioning-jobs",
    "trainer": "training-runs",
    "render": "renders",
}


class HttpBackend:
    tenant = None  # the API key's

    def __init__(self, remote: Remote):
        self.remote = remote
        self.where = remote.api

    def ensure_project(self, project: str) -> None:
        """Create it when the key's tenant has none of that name (uploads need it)."""
        self.remote.ensure_project(project)

    def start(self, kind: str, project: str, fields: dict[str, Any]) -> Job:
        body = {k: v for k, v in fields.items() if v is not None}
        body.setdefault("request_id", f"cli-{uuid.uuid4().hex}")
        path = f"/v1/projects/{project}/{SEGMENTS[kind]}"
        return Job.from_api(self.remote.request("POST", path, json=body), kind)

    def get(self, kind: str, project: str, job_id: str) -> Job:
        path = f"/v1/projects/{project}/{SEGMENTS[kind]}/{job_id}"
        return Job.from_api(self.remote.request("GET", path), kind)

    def list_jobs(
        self, project: str, kinds: Sequence[str], states: Sequence[str], limit: int
    ) -> JobList:
        """GET /v1/jobs of the key's tenant (one call for every service)."""
        params: list[tuple[str, Any]] = [("kind", k) for k in kinds]
        params += [("state", s.upper()) for s in states]
        if project:
            params.append(("project", project))
        if limit:
            params.append(("limit", min(limit, 1000)))
        found = self.remote.request("GET", "/v1/jobs", params=params)["jobs"]
        return JobList([Job.from_api(j) for j in found])

    def cancel_hint(self, job: Job) -> str:
        return (
            f"Cancel it with POST {self.remote.api}/v1/projects/{job.project}/"
            f"{SEGMENTS[job.service]}/{job.id}/cancel"
        )

    def upload_sources(
        self, project: str, paths: list[Path], on_file: Callable[[Path, int, int], None]
    ) -> list[Uploaded]:
        out = []
        for i, path in enumerate(paths):
            on_file(path, i, len(paths))
            up = self.remote.upload(project, path)
            out.append(
                Uploaded(
                    path,
                    up["key"],
                    str(up.get("sha256") or ""),
                    int(up.get("size") or 0),
                    bool(up.get("created")),
                )
            )
        return out

    def upload_reference(self, project: str, path: Path) -> str:
        check_photo(path)
        return str(self.remote.upload(project, path)["key"])

    def dataset(self, project: str, job: Job, *, with_clips: bool) -> Dataset:
        result = job.result
        # <t>/<p>/datasets/<id>/dataset.json when the result has no id of its own
        key_parts = str(result.get("dataset_key", "")).split("/")
        dataset_id = result.get("dataset_id") or (key_parts[-2] if len(key_parts) > 1 else "")
        if not dataset_id:
            raise LoraforgeError(f"curation job {job.id} succeeded but names no dataset")
        detail = self.remote.request("GET", f"/v1/projects/{project}/datasets/{dataset_id}")
        report = detail.get("report") or {}
        return Dataset(
            id=detail["id"],
            lora_type=detail.get("lora_type"),
            policy_hash=detail.get("policy_hash", ""),
            counts=detail.get("counts", {}),
            rejection_counts=detail.get("rejection_counts", {}),
            missing=detail.get("missing", []),
            target_size=detail.get("target_size"),
            report={"key": report.get("key"), "url": report.get("url")},
        )

    def resolve_dataset(
        self, project: str, dataset_id: str | None, *, captioned: bool = False
    ) -> tuple[str, str | None]:
        """(the dataset named, or the project's newest; None: the service reads its type).
        The gateway's listing does not say which datasets are captioned: the newest it is."""
        return dataset_id or self.remote.newest_dataset(project), None

    def pull_run(self, project: str, run_id: str, which: str, out: Path) -> Pulled:
        """GET .../training-runs/RUN_ID/lora?which= (an expiring link), then download it;
        `all` takes every checkpoint and score file from .../artifacts."""
        base = f"/v1/projects/{project}/training-runs/{run_id}"
        if which == "all":
            arts = self.remote.request("GET", f"{base}/artifacts")
            links = [
                link for group in ("checkpoints", "scores", "other") for link in arts.get(group, [])
            ]
            prefix = f"runs/{run_id}/"
        else:
            links = [self.remote.request("GET", f"{base}/lora", params={"which": which})]
            prefix = ""
        if not links:
            raise NotFound(f"run {run_id} has no files to pull yet")
        written = []
        for link in links:
            key = link["key"]
            rel = key.split(prefix, 1)[1] if prefix and prefix in key else key.rsplit("/", 1)[-1]
            dest = out / rel
            self.remote.download(link["url"], dest)
            written.append(str(dest))
        return Pulled(written, {"api": self.remote.api})

    def save_caption_defaults(self, project: str, **values: Any) -> None:
        """The gateway's API has no call for a project's captioning defaults: datasets curated
        later through it are captioned with the service's defaults."""

    def captions(self, project: str, dataset_id: str) -> list[Caption]:
        path = f"/v1/projects/{project}/datasets/{dataset_id}/captions"
        return [
            _caption_from_api(c, dataset_id) for c in self.remote.request("GET", path)["captions"]
        ]

    def edit_caption(
        self, project: str, dataset_id: str, clip_id: str, text: str, *, user: str, approve: bool
    ) -> Caption:
        """PUT .../captions/CLIP: the gateway records the API key as the author (not `user`)."""
        path = f"/v1/projects/{project}/datasets/{dataset_id}/captions/{clip_id}"
        rec = self.remote.request("PUT", path, json={"text": text})
        if approve:
            rec = self.remote.request("POST", f"{path}/approve")
        return _caption_from_api(rec, dataset_id)

    def approve_caption(
        self, project: str, dataset_id: str, clip_id: str, *, user: str, revoke: bool
    ) -> Caption:
        if revoke:
            raise InvalidInput(
                "--revoke has no equivalent in the gateway's API; withdraw approvals locally "
                "(without --api)"
            )
        path = f"/v1/projects/{project}/datasets/{dataset_id}/captions/{clip_id}/approve"
        return _caption_from_api(self.remote.request("POST", path), dataset_id)

    def render_links(self, job: Job) -> dict[str, str]:
        """GET .../renders/{id}/results: expiring links the gateway signs."""
        path = f"/v1/projects/{job.project}/renders/{job.id}/results"
        return {r["key"]: r["url"] for r in self.remote.request("GET", path)["results"]}

    # -- the library: /v1/projects/{p}/loras ------------------------------------------------

    def loras(self, project: str) -> list[dict[str, Any]]:
        return list(self.remote.request("GET", f"/v1/projects/{project}/loras")["loras"])

    def lora(self, project: str, ref: str) -> dict[str, Any]:
        name, version, alias = parse_spec(ref)
        path = f"/v1/projects/{project}/loras/{name}"
        return dict(
            self.remote.request(
                "GET", f"{path}/versions/{version or alias}" if ":" in ref else path
            )
        )

    def promote(
        self, project: str, run_id: str, name: str, checkpoint: str | None, reason: str
    ) -> dict[str, Any]:
        body = {"run_id": run_id, "name": name, "checkpoint": checkpoint, "reason": reason}
        return dict(self.remote.request("POST", f"/v1/projects/{project}/loras", json=body))

    def tag(self, project: str, name: str, version: int, alias: str) -> dict[str, Any]:
        path = f"/v1/projects/{project}/loras/{name}/aliases/{alias}"
        return dict(self.remote.request("PUT", path, json={"version": version}))

    def untag(self, project: str, name: str, alias: str) -> dict[str, Any] | None:
        path = f"/v1/projects/{project}/loras/{name}/aliases/{alias}"
        answer: dict[str, Any] | None = self.remote.request("DELETE", path)
        return answer

    def delete_version(self, project: str, name: str, version: int) -> dict[str, Any]:
        path = f"/v1/projects/{project}/loras/{name}/versions/{version}"
        return dict(self.remote.request("DELETE", path))

    def checkpoints(self, project: str, run_id: str) -> list[dict[str, Any]]:
        path = f"/v1/projects/{project}/training-runs/{run_id}/checkpoints"
        return list(self.remote.request("GET", path))

    # -- deployments: /v1/projects/{p}/deployments ------------------------------------------

    def create_deployment(self, project: str, spec: dict[str, Any]) -> dict[str, Any]:
        return dict(self.remote.request("POST", f"/v1/projects/{project}/deployments", json=spec))

    def deployment(self, project: str, name: str) -> dict[str, Any]:
        return dict(self.remote.request("GET", f"/v1/projects/{project}/deployments/{name}"))

    def deployments(self, project: str) -> list[dict[str, Any]]:
        path = f"/v1/projects/{project}/deployments"
        return list(self.remote.request("GET", path)["deployments"])

    def delete_deployment(self, project: str, name: str) -> dict[str, Any]:
        return dict(self.remote.request("DELETE", f"/v1/projects/{project}/deployments/{name}"))

    def call_deployment(self, project: str, name: str, call: dict[str, Any]) -> Job:
        body = {k: v for k, v in call.items() if v not in (None, "")}
        body["request_id"] = f"cli-{uuid.uuid4().hex}"
        path = f"/v1/projects/{project}/deployments/{name}/calls"
        return Job.from_api(self.remote.request("POST", path, json=body), "render")

    def download_output(self, job: Job, key: str, dest: Path) -> None:
        url = self.render_links(job).get(key)
        if url is None:
            raise LoraforgeError(f"the gateway gave no link for {key}")
        self.remote.download(url, dest)

    def close(self) -> None:
        self.remote.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _caption_from_api(c: dict[str, Any], dataset_id: str) -> Caption:
    return Caption(
        clip_id=c["clip_id"],
        dataset_id=dataset_id,
        text=c["text"],
        approved=c.get("approved", False),
        approved_by=c.get("approved_by", ""),
        edited=c.get("edited", False),
        author=c.get("author", ""),
        versions=c.get("versions", 1),
        warnings=c.get("warnings", []),
    )


# -- reference photos ---------------------------------------------------------------------------

PHOTO_TYPES = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".webp": "image/webp",
    ".bmp": "image/bmp",
    ".tif": "image/tiff",
    ".tiff": "image/tiff",
}


def check_photo(path: Path) -> None:
    if path.suffix.lower() not in PHOTO_TYPES:
        raise InvalidInput(
            f"{path}: a reference must be a photo ({', '.join(sorted(PHOTO_TYPES))})"
        )
    if not path.is_file():
        raise InvalidInput(f"{path}: no such file")
