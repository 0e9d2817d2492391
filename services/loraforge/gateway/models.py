"""The HTTP API's pydantic models (no protobuf here: `clients` converts at the edge)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field

SLUG_PATTERN = r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$"
JobKind = Literal["ingest", "curation", "captioning", "trainer", "render"]
JobStateName = Literal["PENDING", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"]
JOB_KINDS: tuple[str, ...] = ("ingest", "curation", "captioning", "trainer", "render")
LoraTypeName = Literal[
    "character", "effect", "style", "background", "pose", "expression", "lighting"
]


def _ex(example: dict[str, Any]) -> ConfigDict:
    return ConfigDict(extra="forbid", json_schema_extra={"examples": [example]})


# -- projects -------------------------------------------------------------------------------


class ProjectCreate(BaseModel):
    model_config = _ex({"name": "jane-doe", "description": "Jane, character LoRA"})
    name: str = Field(
        pattern=SLUG_PATTERN, description="1-63 lowercase letters, digits, inner hyphens"
    )
    description: str = Field(default="", max_length=2000)


class Project(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"name": "jane-doe", "description": "Jane", "created_at": "2025-01-01T12:00:00Z"}
            ]
        }
    )
    name: str
    description: str = ""
    created_at: datetime


class ProjectList(BaseModel):
    projects: list[Project]


# -- uploads --------------------------------------------------------------------------------


class Upload(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "key": "acme/jane-doe/sources/9f86d08....mp4",
                    "sha256": "9f86d08...",
                    "size": 1048576,
                    "created": True,
                }
            ]
        }
    )
    key: str = Field(description="raw-bucket key; pass it as an ingest source")
    sha256: str
    size: int
    created: bool = Field(description="false when identical content was already stored")


class PresignRequest(BaseModel):
    model_config = _ex({"filename": "take1.mp4", "size": 734003200})
    filename: str = Field(min_length=1, max_length=255)
    size: int = Field(
        ge=1,
        description="the file's exact size in bytes: the URL accepts a body of this length only",
    )


class PresignedUpload(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "url": "https://s3.example/raw/_staging/...",
                    "staging_key": "_staging/gw.acme.jane-doe.3f2a...",
                    "method": "PUT",
                    "expires_at": "2025-01-01T13:00:00Z",
                }
            ]
        }
    )
    url: str
    staging_key: str
    method: Literal["PUT"] = "PUT"
    expires_at: datetime


class CommitUpload(BaseModel):
    model_config = _ex(
        {
            "staging_key": "_staging/gw.acme.jane-doe.3f2a...",
            "sha256": "9f86d08" + "0" * 57,
            "filename": "take1.mp4",
        }
    )
    staging_key: str = Field(min_length=1, max_length=300)
    sha256: str = Field(pattern=r"^[0-9a-fA-F]{64}$")
    filename: str = Field(min_length=1, max_length=255)


# -- jobs -----------------------------------------------------------------------------------


class Artifact(BaseModel):
    bucket: str
    key: str
    kind: str = ""
    size: int = 0
    sha256: str = ""


class Job(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "j0181d2c5e0a1b2c3d4",
                    "kind": "ingest",
                    "project": "jane-doe",
                    "state": "RUNNING",
                    "progress": 0.4,
                    "message": "cutting take1.mp4",
                    "created_at": "2025-01-01T12:00:00Z",
                    "updated_at": "2025-01-01T12:00:05Z",
                    "artifacts": [],
                    "params": {"sources": ["..."]},
                    "result": {},
                    "cancel_requested": False,
                }
            ]
        }
    )
    id: str
    kind: str
    project: str
    state: JobStateName
    progress: float
    message: str = ""
    created_at: datetime | None = None
    updated_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    artifacts: list[Artifact] = Field(default_factory=list)
    params: dict[str, Any] = Field(default_factory=dict)
    result: dict[str, Any] = Field(default_factory=dict)
    cancel_requested: bool = False


class JobList(BaseModel):
    jobs: list[Job]


class _Start(BaseModel):
    request_id: str | None = Field(
        default=None,
        max_length=200,
        description="idempotency key: the same key returns the job started the first time",
    )


class IngestStart(_Start):
    model_config = _ex(
        {
            "sources": ["acme/jane-doe/sources/9f86d08....mp4"],
            "min_s": 2,
            "max_s": 5,
            "fps": 16,
            "request_id": "upload-batch-1",
        }
    )
    sources: list[str] = Field(
        min_length=1,
        max_length=10_000,
        description="raw keys from POST .../uploads, or http(s) URLs",
    )
    min_s: float | None = Field(default=None, gt=0, le=60)
    max_s: float | None = Field(default=None, gt=0, le=120)
    fps: float | None = Field(default=None, gt=0, le=120)
    max_long_side: int | None = Field(default=None, ge=64, le=8192)
    lora_type: LoraTypeName | None = Field(
        default=None,
        description="what the clips are for: the automatic curation after this ingest "
        "uses the type's policy (unset: the project's captioning defaults' "
        "type, else character)",
    )


class CurationStart(_Start):
    model_config = _ex(
        {
            "reference_keys": ["acme/jane-doe/sources/ab12....jpg"],
            "target_size": 40,
            "lora_type": "character",
        }
    )
    reference_keys: list[str] = Field(default_factory=list, max_length=100)
    target_size: int | None = Field(default=None, ge=1, le=10_000)
    lora_type: LoraTypeName = "character"
    policy_overrides: dict[str, Any] = Field(default_factory=dict)


class CaptioningStart(_Start):
    model_config = _ex(
        {
            "dataset_id": "ds-0123456789abcdef0123",
            "trigger": "j4ne",
            "lora_type": "character",
            "source": "attributes",
        }
    )
    dataset_id: str = Field(min_length=1, max_length=100)
    trigger: str = Field(min_length=2, max_length=64)
    lora_type: LoraTypeName = "character"
    source: Literal["attributes", "vlm", "openai"] = "attributes"
    class_noun: str = Field(default="", max_length=64, description="e.g. woman, man, dog")
    base_preset: str = Field(default="", max_length=100, description="sets the caption token limit")
    motion: str = Field(default="", max_length=500, description="effect LoRAs: the shared motion")


class TrainingStart(_Start):
    model_config = _ex(
        {
            "dataset_id": "ds-0123456789abcdef0123",
            "preset": "wan2.1-t2v-1.3b",
            "rank": 32,
            "learning_rate": 0.0001,
            "steps": 2000,
        }
    )
    dataset_id: str = Field(min_length=1, max_length=100)
    preset: str = Field(
        min_length=1, max_length=100, description="base model preset, e.g. wan2.1-t2v-1.3b"
    )
    rank: int | None = Field(default=None, ge=1, le=1024)
    alpha: int | None = Field(default=None, ge=1, le=4096)
    learning_rate: float | None = Field(default=None, gt=0, lt=1)
    steps: int | None = Field(default=None, ge=1, le=1_000_000)
    resolution: int | None = Field(default=None, ge=64, le=4096)
    frames: int | None = Field(default=None, ge=1, le=1025)
    seed: int | None = Field(default=None, ge=0, le=2**31 - 1)
    extra: dict[str, Any] = Field(default_factory=dict)
    on_kubernetes: bool = False


class LoraWeight(BaseModel):
    model_config = ConfigDict(extra="forbid")
    lora_key: str = Field(min_length=1, max_length=500)
    adapter_name: str = Field(default="", max_length=100)
    weight: float = Field(default=1.0, ge=-4, le=4)


class RenderSubmit(_Start):
    model_config = _ex(
        {
            "scenario_yaml": "name: beach\nshots:\n  - prompt: j4ne walking on a beach\n",
            "image_preset": "sdxl",
            "video_preset": "wan2.1-flf2v-14b",
            "loras": [{"lora_key": "acme/jane-doe/runs/j01/best.safetensors", "weight": 0.9}],
        }
    )
    scenario_yaml: str = Field(min_length=1, max_length=1_000_000)
    image_preset: str = Field(default="", max_length=100)
    video_preset: str = Field(default="", max_length=100)
    loras: list[LoraWeight] = Field(default_factory=list, max_length=16)


# -- files and links ------------------------------------------------------------------------


class Link(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "key": "acme/jane-doe/runs/j01/best.safetensors",
                    "url": "https://s3.example/loras/...",
                    "expires_at": "2025-01-01T12:15:00Z",
                    "size": 151000000,
                }
            ]
        }
    )
    key: str
    url: str
    expires_at: datetime
    size: int = 0
    kind: str = ""


class RunArtifacts(BaseModel):
    run_id: str
    checkpoints: list[Link] = Field(default_factory=list)
    previews: list[Link] = Field(default_factory=list)
    scores: list[Link] = Field(default_factory=list)
    other: list[Link] = Field(default_factory=list)


class RenderResults(BaseModel):
    job: Job
    results: list[Link]


# -- datasets, review, captions -------------------------------------------------------------


class DatasetSummary(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "ds-0123456789abcdef0123",
                    "lora_type": "character",
                    "job_id": "j01",
                    "counts": {"clips": 40, "kept": 31, "rejected": 9, "selected": 30},
                    "missing": [],
                }
            ]
        }
    )
    id: str
    lora_type: str = ""
    policy_hash: str = ""  # the curation policy that ran: the type's defaults + the overrides
    job_id: str = ""
    counts: dict[str, int] = Field(default_factory=dict)
    missing: list[str] = Field(default_factory=list)
    rejection_counts: dict[str, int] = Field(default_factory=dict)


class DatasetList(BaseModel):
    datasets: list[DatasetSummary]


class DatasetDetail(DatasetSummary):
    report: Link | None = None
    manifest: Link | None = None
    charts: list[Link] = Field(default_factory=list)


Decision = Literal["keep", "reject"]


class Caption(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "clip_id": "a1b2c3d4-0001",
                    "text": "j4ne smiling, close-up, soft window light",
                    "trigger": "j4ne",
                    "approved": False,
                    "approved_by": "",
                    "edited": False,
                    "author": "machine:attributes",
                    "updated_at": "2025-01-01T12:00:00Z",
                    "versions": 1,
                    "warnings": [],
                }
            ]
        }
    )
    clip_id: str
    text: str
    trigger: str = ""
    approved: bool = False
    approved_by: str = ""
    edited: bool = Field(default=False, description="the current text was written by a person")
    author: str = ""
    updated_at: datetime | None = None
    versions: int = 1
    warnings: list[str] = Field(default_factory=list)


class CaptionEdit(BaseModel):
    model_config = _ex({"text": "j4ne laughing, medium shot, outdoor daylight"})
    text: str = Field(min_length=1, max_length=2000, description="must contain the trigger word")


class CaptionList(BaseModel):
    captions: list[Caption]


class DecisionSet(BaseModel):
    model_config = _ex({"decision": "reject", "note": "motion blur"})
    decision: Decision | None = Field(description="keep, reject, or null to drop the override")
    note: str = Field(default="", max_length=500)


class ReviewClip(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "clip_id": "a1b2c3d4-0001",
                    "curation_decision": "keep",
                    "decision": "reject",
                    "override": "reject",
                    "selected": True,
                    "reasons": [],
                    "flags": [],
                    "metrics": {"quality_score": 0.81},
                    "thumbnail_url": "https://s3.example/...",
                    "caption": None,
                }
            ]
        }
    )
    clip_id: str
    curation_decision: Decision
    decision: Decision = Field(description="effective: the override when present, else curation's")
    override: Decision | None = None
    override_note: str = ""
    selected: bool = False
    reasons: list[str] = Field(default_factory=list)
    flags: list[str] = Field(default_factory=list)
    metrics: dict[str, Any] = Field(default_factory=dict)
    thumbnail_url: str | None = None
    caption: Caption | None = None


class ReviewData(BaseModel):
    dataset: DatasetDetail
    clips: list[ReviewClip]
    trigger: str = ""
    training_runs: list[RunArtifacts] = Field(default_factory=list)


class ReviewLinkCreate(BaseModel):
    model_config = _ex({"scope": "read"})
    scope: Literal["read", "write"] = Field(
        default="read",
        description="read: clips, captions, previews, scores; write: also "
        "decisions, caption edits and approval",
    )


class ReviewLink(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "url": "/review#token=eyJ...",
                    "token": "eyJ...",
                    "expires_at": "2025-01-01T13:00:00Z",
                    "scope": "read",
                }
            ]
        }
    )
    url: str
    token: str
    expires_at: datetime
    scope: Literal["read", "write"] = "read"


class ExportOut(BaseModel):
    export_id: str
    dataset_id: str
    clips: int
    download: Link


# -- webhooks -------------------------------------------------------------------------------


class WebhookCreate(BaseModel):
    model_config = _ex({"url": "https://example.com/hooks/loraforge", "job_id": None})
    url: AnyHttpUrl
    job_id: str | None = Field(
        default=None,
        max_length=100,
        description="only this job's events; omit for every job of the project",
    )


class Webhook(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "wh-3f2a9c",
                    "url": "https://example.com/hooks/loraforge",
                    "job_id": None,
                    "created_at": "2025-01-01T12:00:00Z",
                }
            ]
        }
    )
    id: str
    url: str
    job_id: str | None = None
    created_at: datetime
    pending: int = Field(
        default=0,
        description="calls waiting in the hook's outbox (its "
        "receiver is slow, failing, or paused by the circuit breaker)",
    )
    dropped: int = Field(
        default=0, description="calls dropped because the outbox was full (progress calls first)"
    )


class WebhookCreated(Webhook):
    secret: str = Field(
        description="HMAC-SHA256 key for the X-Loraforge-Signature header; shown once"
    )


class WebhookList(BaseModel):
    webhooks: list[Webhook]
