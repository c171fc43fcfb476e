from ivr_bridge._proto import stt_v3_pb2 as _stt_v3_pb2
from google.protobuf import descriptor as _descriptor
from typing import ClassVar as _ClassVar

DESCRIPTOR: _descriptor.FileDescriptor
