from loraforge.v1 import common_pb2 as _common_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class StartTrainingRequest(_message.Message):
    __slots__ = ("scope", "request_id", "run", "on_kubernetes")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    RUN_FIELD_NUMBER: _ClassVar[int]
    ON_KUBERNETES_FIELD_NUMBER: _ClassVar[int]
    scope: _common_pb2.ProjectScope
    request_id: str
    run: _common_pb2.TrainingRun
    on_kubernetes: bool
    def __init__(self, scope: _Optional[_Union[_common_pb2.ProjectScope, _Mapping]] = ..., request_id: _Optional[str] = ..., run: _Optional[_Union[_common_pb2.TrainingRun, _Mapping]] = ..., on_kubernetes: _Optional[bool] = ...) -> None: ...
