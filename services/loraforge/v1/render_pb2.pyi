from loraforge.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DeploymentRequest(_message.Message):
    __slots__ = ("scope", "name", "spec_json")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SPEC_JSON_FIELD_NUMBER: _ClassVar[int]
    scope: _common_pb2.ProjectScope
    name: str
    spec_json: str
    def __init__(self, scope: _Optional[_Union[_common_pb2.ProjectScope, _Mapping]] = ..., name: _Optional[str] = ..., spec_json: _Optional[str] = ...) -> None: ...

class DeploymentReply(_message.Message):
    __slots__ = ("deployment_json",)
    DEPLOYMENT_JSON_FIELD_NUMBER: _ClassVar[int]
    deployment_json: str
    def __init__(self, deployment_json: _Optional[str] = ...) -> None: ...

class DeploymentList(_message.Message):
    __slots__ = ("deployment_json",)
    DEPLOYMENT_JSON_FIELD_NUMBER: _ClassVar[int]
    deployment_json: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, deployment_json: _Optional[_Iterable[str]] = ...) -> None: ...

class CallDeploymentRequest(_message.Message):
    __slots__ = ("scope", "request_id", "deployment", "image", "last_image", "prompt", "seed")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    LAST_IMAGE_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    scope: _common_pb2.ProjectScope
    request_id: str
    deployment: str
    image: str
    last_image: str
    prompt: str
    seed: int
    def __init__(self, scope: _Optional[_Union[_common_pb2.ProjectScope, _Mapping]] = ..., request_id: _Optional[str] = ..., deployment: _Optional[str] = ..., image: _Optional[str] = ..., last_image: _Optional[str] = ..., prompt: _Optional[str] = ..., seed: _Optional[int] = ...) -> None: ...

class SubmitRenderRequest(_message.Message):
    __slots__ = ("scope", "request_id", "render")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    RENDER_FIELD_NUMBER: _ClassVar[int]
    scope: _common_pb2.ProjectScope
    request_id: str
    render: _common_pb2.RenderRequest
    def __init__(self, scope: _Optional[_Union[_common_pb2.ProjectScope, _Mapping]] = ..., request_id: _Optional[str] = ..., render: _Optional[_Union[_common_pb2.RenderRequest, _Mapping]] = ...) -> None: ...
