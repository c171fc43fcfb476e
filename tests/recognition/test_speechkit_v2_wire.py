"""Our v2 messages have the official stubs' names, field numbers and types.

Both declare ``yandex.cloud.ai.stt.v2.*``, so the official side runs in a subprocess (one
descriptor pool per process) and reports its descriptors as JSON.
"""

from __future__ import annotations

import json
import subprocess
import sys

from ivr_bridge._proto import stt_v2_pb2 as pb

OFFICIAL = """
import json, sys
from yandex.cloud.ai.stt.v2 import stt_service_pb2 as p
out = {}
for name, d in p.DESCRIPTOR.message_types_by_name.items():
    out[name] = {f.name: [f.number, f.type, f.is_repeated] for f in d.fields}
out["_enum"] = {v.name: v.number for v in p.RecognitionSpec.DESCRIPTOR.enum_types_by_name[
    "AudioEncoding"].values}
out["_loaded"] = sorted(m for m in sys.modules if m.startswith("ivr_bridge"))
print(json.dumps(out))
"""


def test_every_message_we_declare_matches_the_official_one() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", OFFICIAL], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr  # yandexcloud is a dev dependency: never skip
    official = json.loads(proc.stdout)
    assert official.pop("_loaded") == []
    enum = official.pop("_enum")
    ours = pb.DESCRIPTOR.message_types_by_name
    assert len(ours) == 11
    for name, desc in ours.items():
        fields = {f.name: [f.number, f.type, f.is_repeated] for f in desc.fields}
        assert fields == official[name], name
    assert {v.name: v.number for v in pb.RecognitionSpec.AudioEncoding.DESCRIPTOR.values} == enum
    service = pb.DESCRIPTOR.services_by_name["SttService"]
    assert service.full_name == "yandex.cloud.ai.stt.v2.SttService"
    assert [m.name for m in service.methods] == ["StreamingRecognize"]
