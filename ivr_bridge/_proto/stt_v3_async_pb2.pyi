from google.protobuf import empty_pb2 as _empty_pb2
from ivr_bridge._proto import stt_v3_pb2 as _stt_v3_pb2
from ivr_bridge._proto import operation_pb2 as _operation_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RecognizeFileRequest(_message.Message):
    __slots__ = ("content", "uri", "recognition_model", "speaker_labeling")
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    URI_FIELD_NUMBER: _ClassVar[int]
    RECOGNITION_MODEL_FIELD_NUMBER: _ClassVar[int]
    SPEAKER_LABELING_FIELD_NUMBER: _ClassVar[int]
    content: bytes
    uri: str
    recognition_model: _stt_v3_pb2.RecognitionModelOptions
    speaker_labeling: _stt_v3_pb2.SpeakerLabelingOptions
    def __init__(self, content: _Optional[bytes] = ..., uri: _Optional[str] = ..., recognition_model: _Optional[_Union[_stt_v3_pb2.RecognitionModelOptions, _Mapping]] = ..., speaker_labeling: _Optional[_Union[_stt_v3_pb2.SpeakerLabelingOptions, _Mapping]] = ...) -> None: ...

class GetRecognitionRequest(_message.Message):
    __slots__ = ("operation_id",)
    OPERATION_ID_FIELD_NUMBER: _ClassVar[int]
    operation_id: str
    def __init__(self, operation_id: _Optional[str] = ...) -> None: ...

class DeleteRecognitionRequest(_message.Message):
    __slots__ = ("operation_id",)
    OPERATION_ID_FIELD_NUMBER: _ClassVar[int]
    operation_id: str
    def __init__(self, operation_id: _Optional[str] = ...) -> None: ...
