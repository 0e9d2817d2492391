import datetime

from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class JobState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_STATE_UNSPECIFIED: _ClassVar[JobState]
    JOB_STATE_PENDING: _ClassVar[JobState]
    JOB_STATE_RUNNING: _ClassVar[JobState]
    JOB_STATE_SUCCEEDED: _ClassVar[JobState]
    JOB_STATE_FAILED: _ClassVar[JobState]
    JOB_STATE_CANCELLED: _ClassVar[JobState]
JOB_STATE_UNSPECIFIED: JobState
JOB_STATE_PENDING: JobState
JOB_STATE_RUNNING: JobState
JOB_STATE_SUCCEEDED: JobState
JOB_STATE_FAILED: JobState
JOB_STATE_CANCELLED: JobState

class ArtifactRef(_message.Message):
    __slots__ = ("bucket", "key", "kind", "size", "sha256")
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    bucket: str
    key: str
    kind: str
    size: int
    sha256: str
    def __init__(self, bucket: _Optional[str] = ..., key: _Optional[str] = ..., kind: _Optional[str] = ..., size: _Optional[int] = ..., sha256: _Optional[str] = ...) -> None: ...

class Job(_message.Message):
    __slots__ = ("id", "kind", "tenant", "project", "state", "progress", "message", "created_at", "updated_at", "started_at", "finished_at", "artifacts", "params", "result", "cancel_requested")
    ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    ARTIFACTS_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    CANCEL_REQUESTED_FIELD_NUMBER: _ClassVar[int]
    id: str
    kind: str
    tenant: str
    project: str
    state: JobState
    progress: float
    message: str
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    started_at: _timestamp_pb2.Timestamp
    finished_at: _timestamp_pb2.Timestamp
    artifacts: _containers.RepeatedCompositeFieldContainer[ArtifactRef]
    params: _struct_pb2.Struct
    result: _struct_pb2.Struct
    cancel_requested: bool
    def __init__(self, id: _Optional[str] = ..., kind: _Optional[str] = ..., tenant: _Optional[str] = ..., project: _Optional[str] = ..., state: _Optional[_Union[JobState, str]] = ..., progress: _Optional[float] = ..., message: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., artifacts: _Optional[_Iterable[_Union[ArtifactRef, _Mapping]]] = ..., params: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., result: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., cancel_requested: _Optional[bool] = ...) -> None: ...

class ProjectScope(_message.Message):
    __slots__ = ("tenant", "project")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    project: str
    def __init__(self, tenant: _Optional[str] = ..., project: _Optional[str] = ...) -> None: ...

class GetJobRequest(_message.Message):
    __slots__ = ("scope", "job_id")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    scope: ProjectScope
    job_id: str
    def __init__(self, scope: _Optional[_Union[ProjectScope, _Mapping]] = ..., job_id: _Optional[str] = ...) -> None: ...

class ListJobsRequest(_message.Message):
    __slots__ = ("scope", "states", "page_size")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    STATES_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    scope: ProjectScope
    states: _containers.RepeatedScalarFieldContainer[JobState]
    page_size: int
    def __init__(self, scope: _Optional[_Union[ProjectScope, _Mapping]] = ..., states: _Optional[_Iterable[_Union[JobState, str]]] = ..., page_size: _Optional[int] = ...) -> None: ...

class ListJobsResponse(_message.Message):
    __slots__ = ("jobs",)
    JOBS_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[Job]
    def __init__(self, jobs: _Optional[_Iterable[_Union[Job, _Mapping]]] = ...) -> None: ...

class CancelJobRequest(_message.Message):
    __slots__ = ("scope", "job_id")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    scope: ProjectScope
    job_id: str
    def __init__(self, scope: _Optional[_Union[ProjectScope, _Mapping]] = ..., job_id: _Optional[str] = ...) -> None: ...

class Clip(_message.Message):
    __slots__ = ("id", "source_id", "media", "keyframes", "start_s", "duration_s", "width", "height", "fps", "frames", "is_photo")
    ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_ID_FIELD_NUMBER: _ClassVar[int]
    MEDIA_FIELD_NUMBER: _ClassVar[int]
    KEYFRAMES_FIELD_NUMBER: _ClassVar[int]
    START_S_FIELD_NUMBER: _ClassVar[int]
    DURATION_S_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    FPS_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    IS_PHOTO_FIELD_NUMBER: _ClassVar[int]
    id: str
    source_id: str
    media: ArtifactRef
    keyframes: _containers.RepeatedCompositeFieldContainer[ArtifactRef]
    start_s: float
    duration_s: float
    width: int
    height: int
    fps: float
    frames: int
    is_photo: bool
    def __init__(self, id: _Optional[str] = ..., source_id: _Optional[str] = ..., media: _Optional[_Union[ArtifactRef, _Mapping]] = ..., keyframes: _Optional[_Iterable[_Union[ArtifactRef, _Mapping]]] = ..., start_s: _Optional[float] = ..., duration_s: _Optional[float] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., fps: _Optional[float] = ..., frames: _Optional[int] = ..., is_photo: _Optional[bool] = ...) -> None: ...

class Dataset(_message.Message):
    __slots__ = ("id", "scope", "lora_type", "trigger", "clip_ids", "manifest", "content_hash")
    ID_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    LORA_TYPE_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_FIELD_NUMBER: _ClassVar[int]
    CLIP_IDS_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_FIELD_NUMBER: _ClassVar[int]
    CONTENT_HASH_FIELD_NUMBER: _ClassVar[int]
    id: str
    scope: ProjectScope
    lora_type: str
    trigger: str
    clip_ids: _containers.RepeatedScalarFieldContainer[str]
    manifest: ArtifactRef
    content_hash: str
    def __init__(self, id: _Optional[str] = ..., scope: _Optional[_Union[ProjectScope, _Mapping]] = ..., lora_type: _Optional[str] = ..., trigger: _Optional[str] = ..., clip_ids: _Optional[_Iterable[str]] = ..., manifest: _Optional[_Union[ArtifactRef, _Mapping]] = ..., content_hash: _Optional[str] = ...) -> None: ...

class TrainingRun(_message.Message):
    __slots__ = ("id", "scope", "dataset_id", "base_preset", "rank", "alpha", "learning_rate", "steps", "resolution", "frames", "seed", "extra")
    ID_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    BASE_PRESET_FIELD_NUMBER: _ClassVar[int]
    RANK_FIELD_NUMBER: _ClassVar[int]
    ALPHA_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    RESOLUTION_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    EXTRA_FIELD_NUMBER: _ClassVar[int]
    id: str
    scope: ProjectScope
    dataset_id: str
    base_preset: str
    rank: int
    alpha: int
    learning_rate: float
    steps: int
    resolution: int
    frames: int
    seed: int
    extra: _struct_pb2.Struct
    def __init__(self, id: _Optional[str] = ..., scope: _Optional[_Union[ProjectScope, _Mapping]] = ..., dataset_id: _Optional[str] = ..., base_preset: _Optional[str] = ..., rank: _Optional[int] = ..., alpha: _Optional[int] = ..., learning_rate: _Optional[float] = ..., steps: _Optional[int] = ..., resolution: _Optional[int] = ..., frames: _Optional[int] = ..., seed: _Optional[int] = ..., extra: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class LoraWeight(_message.Message):
    __slots__ = ("lora_key", "adapter_name", "weight")
    LORA_KEY_FIELD_NUMBER: _ClassVar[int]
    ADAPTER_NAME_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    lora_key: str
    adapter_name: str
    weight: float
    def __init__(self, lora_key: _Optional[str] = ..., adapter_name: _Optional[str] = ..., weight: _Optional[float] = ...) -> None: ...

class RenderRequest(_message.Message):
    __slots__ = ("scenario_yaml", "image_preset", "video_preset", "loras")
    SCENARIO_YAML_FIELD_NUMBER: _ClassVar[int]
    IMAGE_PRESET_FIELD_NUMBER: _ClassVar[int]
    VIDEO_PRESET_FIELD_NUMBER: _ClassVar[int]
    LORAS_FIELD_NUMBER: _ClassVar[int]
    scenario_yaml: str
    image_preset: str
    video_preset: str
    loras: _containers.RepeatedCompositeFieldContainer[LoraWeight]
    def __init__(self, scenario_yaml: _Optional[str] = ..., image_preset: _Optional[str] = ..., video_preset: _Optional[str] = ..., loras: _Optional[_Iterable[_Union[LoraWeight, _Mapping]]] = ...) -> None: ...
