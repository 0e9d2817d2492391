from google.protobuf import struct_pb2 as _struct_pb2
from loraforge.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class StartCurationRequest(_message.Message):
    __slots__ = ("scope", "request_id", "reference_keys", "target_size", "lora_type", "policy_overrides")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_KEYS_FIELD_NUMBER: _ClassVar[int]
    TARGET_SIZE_FIELD_NUMBER: _ClassVar[int]
    LORA_TYPE_FIELD_NUMBER: _ClassVar[int]
    POLICY_OVERRIDES_FIELD_NUMBER: _ClassVar[int]
    scope: _common_pb2.ProjectScope
    request_id: str
    reference_keys: _containers.RepeatedScalarFieldContainer[str]
    target_size: int
    lora_type: str
    policy_overrides: _struct_pb2.Struct
    def __init__(self, scope: _Optional[_Union[_common_pb2.ProjectScope, _Mapping]] = ..., request_id: _Optional[str] = ..., reference_keys: _Optional[_Iterable[str]] = ..., target_size: _Optional[int] = ..., lora_type: _Optional[str] = ..., policy_overrides: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...
