"""SpeechKit's per-session caps: 5 minutes of audio and 10 MB of audio bytes."""

from __future__ import annotations

import grpc

from ivr_bridge._proto import stt_v3_pb2 as pb
from ivr_bridge.local import server as srv
from tests.local.conftest import StartFn, chunk, options, silence

ONE_SECOND_8K = bytes(16000)


async def test_five_minutes_of_silence_chunks_are_accepted(start_local: StartFn) -> None:
    rec, client = await start_local()
    out = await client.run([options(), *[silence(1000) for _ in range(300)]])
    assert out.code == grpc.StatusCode.OK, out.details
    assert rec.stats.audio_ms == 300_000


async def test_more_than_five_minutes_of_silence_chunks(start_local: StartFn) -> None:
    _, client = await start_local()
    out = await client.run([options(), *[silence(1000) for _ in range(300)], silence(1)])
    assert out.code == grpc.StatusCode.OUT_OF_RANGE
    assert out.details == "Exceeded maximum allowed stream duration"


async def test_more_than_five_minutes_of_audio(start_local: StartFn) -> None:
    rec, client = await start_local()
    requests: list[pb.StreamingRequest | float] = [options()]
    requests += [chunk(ONE_SECOND_8K) for _ in range(299)]
    requests += [silence(999), chunk(bytes(16)), chunk(bytes(2))]  # 300 s + 1 ms + 1 sample
    out = await client.run(requests)
    assert out.code == grpc.StatusCode.OUT_OF_RANGE
    assert out.details == srv.MSG_DURATION
    assert rec.stats.ended == {"OUT_OF_RANGE": 1}


async def test_more_than_ten_megabytes_at_48khz(start_local: StartFn) -> None:
    # 10 MB at 48 kHz is 109 s: the size cap binds before the duration cap.
    _, client = await start_local()
    one_second = bytes(96_000)
    limit = 10 * 1024 * 1024
    requests: list[pb.StreamingRequest | float] = [options(48000)]
    requests += [chunk(one_second) for _ in range(limit // len(one_second))]
    requests += [chunk(bytes(limit % len(one_second)))]  # exactly 10 MB: still fine
    requests += [chunk(bytes(2))]
    out = await client.run(requests)
    assert out.code == grpc.StatusCode.OUT_OF_RANGE
    assert out.details == "Exceeded maximum allowed stream size"


async def test_size_limit_override(start_local: StartFn) -> None:
    limits = srv.LocalLimits(max_bytes=64_000)
    _, client = await start_local(limits=limits)
    exact = await client.run([options(), *[chunk(ONE_SECOND_8K) for _ in range(4)]])
    assert exact.code == grpc.StatusCode.OK, exact.details
    over = await client.run([options(), *[chunk(ONE_SECOND_8K) for _ in range(4)], chunk(b"\0\0")])
    assert over.code == grpc.StatusCode.OUT_OF_RANGE
    assert over.details == srv.MSG_SIZE


async def test_duration_limit_override_counts_audio_and_silence(start_local: StartFn) -> None:
    _, client = await start_local(limits=srv.LocalLimits(max_audio_ms=2500))
    ok = await client.run([options(), chunk(ONE_SECOND_8K), silence(1000), chunk(bytes(8000))])
    assert ok.code == grpc.StatusCode.OK, ok.details
    over = await client.run([options(), chunk(ONE_SECOND_8K), silence(1500), chunk(bytes(2))])
    assert over.code == grpc.StatusCode.OUT_OF_RANGE
    assert over.details == srv.MSG_DURATION
