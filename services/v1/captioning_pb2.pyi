from loraforge.v1 import common_pb2 as _common_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

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
