"""Read batching: a call's socket wakes the bridge once its next chunk's audio is there.

The bridge sends audio upstream a chunk at a time, so it asks the kernel (SO_RCVLOWAT) to
report the PBX's socket readable only when the bytes that chunk still needs have arrived,
and lowers that back to one byte when they are late. These tests play calls in real time:
the transcript is the same as without batching, the frames arrive in far fewer reads, and a
message sent while no audio follows (DTMF during a pause in the stream, the close) is not
stuck behind a raised low-water mark.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator

import pytest

from tests.markers import realtime
from tests.test_media_connection import (
    Bridge,
    WireClient,
    call_messages,
    comparable,
    count_reads,
    reference,
    running_bridge,
    text,
)

pytestmark = [
    realtime,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SO_RCVLOWAT on Linux"),
]

FRAME_S = 0.02


async def paced(client: WireClient, messages: list[str]) -> None:
    """Media in real time: one message per 20 ms on an absolute schedule, as a PBX sends."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    for i, message in enumerate(messages):
        delay = start + i * FRAME_S - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        await client.write(text(message))


async def test_a_real_time_call_is_read_a_chunk_at_a_time_and_heard_the_same() -> None:
    want = await reference()  # the same call, every frame read as written, no batching
    enc, messages = call_messages()
    async with running_bridge(read_batching=True) as bridge:
        client = await WireClient.connect(bridge.app)
        conn = await bridge.connection()
        reads = count_reads(conn)
        opening, media = messages[:2], messages[2:]
        for m in opening:
            await client.write(text(m))
        await paced(client, media)
        await client.write(text(enc.stop()))
        assert await client.finish() == 1000
        assert comparable(await bridge.ended()) == want
        # 200 ms chunks of 20 ms frames: a handful of reads per chunk, not one per frame.
        assert len(reads) < len(media) // 2, (len(reads), len(media))
        assert conn.batched_reads > 0


async def test_a_message_with_no_audio_after_it_is_not_held_back(bridge_batching: Bridge) -> None:
    """DTMF while the PBX pauses its media, then nothing: the raised low-water mark drops
    back once the chunk's audio is late, so the digit arrives on its own."""
    enc, messages = call_messages()
    client = await WireClient.connect(bridge_batching.app)
    await bridge_batching.connection()
    for m in messages[:2]:
        await client.write(text(m))
    await paced(client, messages[2:27])  # half a second of audio: mid-chunk, batching on
    await client.write(text(enc.dtmf("7")))
    got = bridge_batching.got
    for _ in range(500):  # up to 5 s; the digit is due within a chunk plus 50 ms
        if any(e.type == "dtmf" for e in got.events):
            break
        await asyncio.sleep(0.01)
    assert [e.data["digit"] for e in got.events if e.type == "dtmf"] == ["7"]
    await client.write(text(enc.stop()))  # and the stop, alone, too
    assert await client.finish() == 1000
    ended = await bridge_batching.ended()
    assert ended["reason"] == "stop" and ended["digits"] == ["7"]


@pytest.fixture
async def bridge_batching() -> AsyncIterator[Bridge]:
    async with running_bridge(read_batching=True) as bridge:
        yield bridge
