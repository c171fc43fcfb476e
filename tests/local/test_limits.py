"""SpeechKit's per-session caps over a real connection: the status and the server's counters.

Every boundary case of the 5-minute and 10 MB rules is in test_rules.py (plain messages);
these check that the server ends the call with OUT_OF_RANGE and counts the audio it accepted.
"""

from __future__ import annotations

import grpc

from ivr_bridge._proto import stt_v3_pb2 as pb
from ivr_bridge.local import rules as srv
from tests.local.conftest import StartFn, chunk, options, silence

ONE_SECOND_8K = bytes(16000)


async def test_five_minutes_of_silence_chunks_are_accepted(start_local: StartFn) -> None:
    rec, client = await start_local(engine="tones")
    out = await client.run([options(), *[silence(1000) for _ in range(300)]])
    assert out.code == grpc.StatusCode.OK, out.details
    assert rec.stats.audio_ms == 300_000


async def test_more_than_five_minutes_of_audio(start_local: StartFn) -> None:
    rec, client = await start_local(engine="tones")
    requests: list[pb.StreamingRequest | float] = [options()]
    requests += [chunk(ONE_SECOND_8K) for _ in range(299)]
    requests += [silence(999), chunk(bytes(16)), chunk(bytes(2))]  # 300 s + 1 ms + 1 sample
    out = await client.run(requests)
    assert out.code == grpc.StatusCode.OUT_OF_RANGE
    assert out.details == srv.MSG_DURATION
    assert rec.stats.ended == {"OUT_OF_RANGE": 1}
