import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from loraforge.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CaptionVersion(_message.Message):
    __slots__ = ("text", "author", "created_at", "note")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    AUTHOR_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    text: str
    author: str
    created_at: _timestamp_pb2.Timestamp
    note: str
    def __init__(self, text: _Optional[str] = ..., author: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., note: _Optional[str] = ...) -> None: ...

class CaptionRecord(_message.Message):
    __slots__ = ("clip_id", "dataset_id", "text", "approved", "approved_by", "versions")
    CLIP_ID_FIELD_NUMBER: _ClassVar[int]
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    APPROVED_FIELD_NUMBER: _ClassVar[int]
    APPROVED_BY_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    clip_id: str
    dataset_id: str
    text: str
    approved: bool
    approved_by: str
    versions: _containers.RepeatedCompositeFieldContainer[CaptionVersion]
    def __init__(self, clip_id: _Optional[str] = ..., dataset_id: _Optional[str] = ..., text: _Optional[str] = ..., approved: _Optional[bool] = ..., approved_by: _Optional[str] = ..., versions: _Optional[_Iterable[_Union[CaptionVersion, _Mapping]]] = ...) -> None: ...

class ListCaptionsRequest(_message.Message):
    __slots__ = ("scope", "dataset_id")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    scope: _common_pb2.ProjectScope
    dataset_id: str
    def __init__(self, scope: _Optional[_Union[_common_pb2.ProjectScope, _Mapping]] = ..., dataset_id: _Optional[str] = ...) -> None: ...

class ListCaptionsResponse(_message.Message):
    __slots__ = ("captions",)
    CAPTIONS_FIELD_NUMBER: _ClassVar[int]
    captions: _containers.RepeatedCompositeFieldContainer[CaptionRecord]
    def __init__(self, captions: _Optional[_Iterable[_Union[CaptionRecord, _Mapping]]] = ...) -> None: ...

class EditCaptionRequest(_message.Message):
    __slots__ = ("scope", "dataset_id", "clip_id", "text", "user", "approve")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    CLIP_ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    APPROVE_FIELD_NUMBER: _ClassVar[int]
    scope: _common_pb2.ProjectScope
    dataset_id: str
    clip_id: str
    text: str
    user: str
    approve: bool
    def __init__(self, scope: _Optional[_Union[_common_pb2.ProjectScope, _Mapping]] = ..., dataset_id: _Optional[str] = ..., clip_id: _Optional[str] = ..., text: _Optional[str] = ..., user: _Optional[str] = ..., approve: _Optional[bool] = ...) -> None: ...

class ApproveCaptionRequest(_message.Message):
    __slots__ = ("scope", "dataset_id", "clip_id", "user", "revoke")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    CLIP_ID_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    REVOKE_FIELD_NUMBER: _ClassVar[int]
    scope: _common_pb2.ProjectScope
    dataset_id: str
    clip_id: str
    user: str
    revoke: bool
    def __init__(self, scope: _Optional[_Union[_common_pb2.ProjectScope, _Mapping]] = ..., dataset_id: _Optional[str] = ..., clip_id: _Optional[str] = ..., user: _Optional[str] = ..., revoke: _Optional[bool] = ...) -> None: ...

class StartCaptioningRequest(_message.Message):
    __slots__ = ("scope", "request_id", "dataset_id", "trigger", "lora_type", "source", "class_noun", "base_preset", "motion")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_FIELD_NUMBER: _ClassVar[int]
    LORA_TYPE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    CLASS_NOUN_FIELD_NUMBER: _ClassVar[int]
    BASE_PRESET_FIELD_NUMBER: _ClassVar[int]
    MOTION_FIELD_NUMBER: _ClassVar[int]
    scope: _common_pb2.ProjectScope
    request_id: str
    dataset_id: str
    trigger: str
    lora_type: str
    source: str
    class_noun: str
    base_preset: str
    motion: str
    def __init__(self, scope: _Optional[_Union[_common_pb2.ProjectScope, _Mapping]] = ..., request_id: _Optional[str] = ..., dataset_id: _Optional[str] = ..., trigger: _Optional[str] = ..., lora_type: _Optional[str] = ..., source: _Optional[str] = ..., class_noun: _Optional[str] = ..., base_preset: _Optional[str] = ..., motion: _Optional[str] = ...) -> None: ...
