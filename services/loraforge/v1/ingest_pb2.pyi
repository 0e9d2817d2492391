from loraforge.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class StartIngestRequest(_message.Message):
    __slots__ = ("scope", "request_id", "sources", "min_s", "max_s", "fps", "max_long_side", "lora_type")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    MIN_S_FIELD_NUMBER: _ClassVar[int]
    MAX_S_FIELD_NUMBER: _ClassVar[int]
    FPS_FIELD_NUMBER: _ClassVar[int]
    MAX_LONG_SIDE_FIELD_NUMBER: _ClassVar[int]
    LORA_TYPE_FIELD_NUMBER: _ClassVar[int]
    scope: _common_pb2.ProjectScope
    request_id: str
    sources: _containers.RepeatedScalarFieldContainer[str]
    min_s: float
    max_s: float
    fps: float
    max_long_side: int
    lora_type: str
    def __init__(self, scope: _Optional[_Union[_common_pb2.ProjectScope, _Mapping]] = ..., request_id: _Optional[str] = ..., sources: _Optional[_Iterable[str]] = ..., min_s: _Optional[float] = ..., max_s: _Optional[float] = ..., fps: _Optional[float] = ..., max_long_side: _Optional[int] = ..., lora_type: _Optional[str] = ...) -> None: ...
