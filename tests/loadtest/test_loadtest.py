"""The load test's own parts: tags survive G.711, receipts join sends, and a smoke run."""

from __future__ import annotations

import audioop
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ivr_bridge.loadtest import LoadTestOptions, run_loadtest
from ivr_bridge.loadtest.report import event_latencies, percentile, upstream_delays
from ivr_bridge.loadtest.tagging import MAX_CALLS, read_tag, tag_bytes, tagged_frame
from tests.markers import realtime


@given(st.integers(min_value=0, max_value=MAX_CALLS - 1))
def test_tag_survives_mulaw_decoding(call_no: int) -> None:
    frame = tagged_frame(call_no)
    assert len(frame) == 160
    assert read_tag(audioop.ulaw2lin(frame, 2)) == call_no


def test_untagged_audio_reads_as_no_tag() -> None:
    assert read_tag(bytes(320)) is None
    assert read_tag(b"\x00") is None
    with pytest.raises(ValueError):
        tag_bytes(MAX_CALLS)


def test_each_frame_counts_at_the_first_chunk_that_completes_it() -> None:
    sends = {7: [10.000, 10.020, 10.040, 10.060, 10.080]}
    # Chunk 1 completes frames 0-2 at 10.070; a replay of frame 0-2 must not count again.
    receipts = [(7, 480, 10.070), (7, 480, 10.500), (7, 800, 10.100), (99, 160, 10.0)]
    delays = upstream_delays(sends, receipts)
    assert [round(d) for d in delays] == [70, 50, 30, 40, 20]


def test_percentile_by_nearest_rank() -> None:
    assert percentile([5, 1, 3], 50) == 3
    assert percentile(list(range(1, 101)), 99) == 99
    assert math.isnan(percentile([], 50))


def test_event_latency_reads_the_probe_time_in_the_final() -> None:
    lines = [
        '{"type":"final","time":"2026-01-01T00:00:00.120Z","data":{"text":"t1767225600100"}}',
        '{"type":"final","time":"2026-01-01T00:00:00.120Z","data":{"text":"hello"}}',
        '{"type":"call_ended","data":{"channels":{"caller":{"samples_dropped":16}}}}',
        "not json",
    ]
    latencies, dropped = event_latencies(lines)
    assert [round(x) for x in latencies] == [20]
    assert dropped == 16


@realtime
async def test_smoke_run_against_a_real_bridge_process() -> None:
    report = await run_loadtest(LoadTestOptions(calls=3, duration_s=2.0, ramp_s=0.2))
    assert report.calls_ok == 3 and report.calls_failed == 0
    assert report.frames_sent == 3 * 100
    # Every frame reached the recognizer except those still in the last partial chunk.
    assert report.frames_received >= report.frames_sent - 3 * 5
    assert report.finals >= 3
    assert report.cpu_ms_per_call_second > 0
    assert report.dropped_samples == 0
    assert "calls ok/failed" in report.format()
