"""The short paths for DATA out and WINDOW_UPDATE in (h2_grpc._GracefulConnection.send_data
and receive_data) must leave the connection exactly as h2's own paths do: same events,
windows, stream states, errors and output, whatever the frames and writes and however the
bytes are split into reads."""

from __future__ import annotations

import itertools
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import hyperframe.frame
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from ivr_bridge.recognition.h2_grpc import _GracefulConnection

HEADERS = [(":method", "POST"), (":scheme", "http"), (":path", "/x"), (":authority", "a")]
STREAMS = (1, 3, 5, 7)


def _frame(frame: hyperframe.frame.Frame) -> bytes:
    return bytes(frame.serialize())


def window_update(stream_id: int, increment: int) -> bytes:
    # Serialized by hand: hyperframe refuses the bad increments the peer may still send.
    body = increment.to_bytes(4, "big")
    return len(body).to_bytes(3, "big") + b"\x08\x00" + stream_id.to_bytes(4, "big") + body


def data_frame(stream_id: int, length: int, flags: int) -> bytes:
    """A DATA frame by hand (flags: 0x1 END_STREAM, 0x8 PADDED with 3 bytes of padding)."""
    body = b"d" * length
    if flags & 0x8:
        body = b"\x03" + body + b"\x00" * 3
    return len(body).to_bytes(3, "big") + bytes([0, flags]) + stream_id.to_bytes(4, "big") + body


def response_headers(stream_id: int, *, end: bool) -> bytes:
    encoder = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False)).encoder
    frame = hyperframe.frame.HeadersFrame(stream_id)
    frame.data = encoder.encode([(":status", "200"), ("content-type", "application/grpc")])
    frame.flags.add("END_HEADERS")
    if end:
        frame.flags.add("END_STREAM")
    return _frame(frame)


def rst(stream_id: int) -> bytes:
    frame = hyperframe.frame.RstStreamFrame(stream_id)
    frame.error_code = 8
    return _frame(frame)


def ping() -> bytes:
    frame = hyperframe.frame.PingFrame(0)
    frame.opaque_data = b"12345678"
    return _frame(frame)


def headers_without_end(stream_id: int) -> bytes:
    """A header block cut short: a CONTINUATION must follow, and nothing else may."""
    frame = hyperframe.frame.HeadersFrame(stream_id)
    frame.data = b"\x88"
    return _frame(frame)


def server_preface() -> bytes:
    server = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    server.initiate_connection()
    return server.data_to_send()


increments = st.sampled_from([0, 1, 1000, 65535, 2**31 - 2, 2**31 - 1, 2**31, 2**32 - 1])
stream_ids = st.sampled_from((0, *STREAMS, 9, 0x80000001))
frames = st.one_of(
    st.builds(window_update, stream_ids, increments),
    st.builds(window_update, stream_ids, increments),
    st.builds(response_headers, st.sampled_from(STREAMS), end=st.booleans()),
    st.builds(rst, st.sampled_from(STREAMS)),
    st.just(ping()),
    st.builds(headers_without_end, st.sampled_from(STREAMS)),
    st.builds(
        data_frame,
        st.sampled_from((0, *STREAMS, 9)),
        st.sampled_from([0, 1, 1000, 16384, 16385]),
        st.sampled_from([0, 0, 0, 0x1, 0x8]),
    ),
    st.builds(
        data_frame,
        st.sampled_from(STREAMS),
        st.sampled_from([1000, 16384]),
        st.just(0),
    ),
)


def connection(cls: type[h2.connection.H2Connection]) -> h2.connection.H2Connection:
    conn = cls(h2.config.H2Configuration(client_side=True, header_encoding=None))
    conn.initiate_connection()
    conn.receive_data(server_preface())
    for stream_id in STREAMS:
        conn.send_headers(stream_id, HEADERS, end_stream=stream_id == 5)
    # Streams 1 and 5 have their response headers (DATA may follow), 3 and 7 not yet.
    conn.receive_data(response_headers(1, end=False) + response_headers(5, end=False))
    conn.data_to_send()
    return conn


def snapshot(conn: h2.connection.H2Connection) -> tuple[object, ...]:
    streams = tuple(
        (
            sid,
            s.state_machine.state,
            s.outbound_flow_control_window,
            s._inbound_window_manager.current_window_size,
            s._actual_content_length,
        )
        for sid, s in sorted(conn.streams.items())
    )
    inbound = conn._inbound_flow_control_window_manager.current_window_size
    return conn.state_machine.state, conn.outbound_flow_control_window, inbound, streams


def feed(conn: h2.connection.H2Connection, reads: list[bytes]) -> list[object]:
    seen: list[object] = []
    for data in reads:
        try:
            events = conn.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            seen.append(("error", type(exc).__name__))
            break
        seen.extend(repr(e) for e in events)
    seen.append(snapshot(conn))
    seen.append(conn.data_to_send())
    return seen


@settings(max_examples=300, deadline=None)
@given(st.lists(frames, max_size=12), st.lists(st.integers(0, 400), max_size=4))
@example([data_frame(1, 16384, 0)] * 3 + [data_frame(5, 16384, 0)] * 2, [])  # connection window
@example([response_headers(1, end=True), data_frame(1, 10, 0)], [])  # ended by the server
@example([data_frame(1, 16385, 0)], [])  # over the frame size
@example([data_frame(1, 10, 0), data_frame(3, 10, 0), data_frame(1, 0, 0)], [7, 20])
def test_same_outcome_as_h2(sequence: list[bytes], cuts: list[int]) -> None:
    wire = b"".join(sequence)
    points = sorted({min(c, len(wire)) for c in cuts} | {0, len(wire)})
    reads = [wire[a:b] for a, b in itertools.pairwise(points) if b > a]
    ours = feed(connection(_GracefulConnection), reads)
    theirs = feed(connection(h2.connection.H2Connection), reads)
    assert ours == theirs


def test_the_short_path_takes_plain_credits_and_data() -> None:
    """The common cases do take the short path (so the property above tests it)."""
    conn = connection(_GracefulConnection)
    calls = 0
    original = h2.connection.H2Connection.receive_data

    def counting(self: h2.connection.H2Connection, data: Any) -> list[h2.events.Event]:
        nonlocal calls
        calls += 1
        return original(self, data)

    h2.connection.H2Connection.receive_data = counting  # type: ignore[method-assign]
    try:
        events = conn.receive_data(window_update(1, 100) + window_update(0, 100))
    finally:
        h2.connection.H2Connection.receive_data = original  # type: ignore[method-assign]
    assert calls == 0
    assert [(type(e), e.stream_id, e.delta) for e in events] == [  # type: ignore[attr-defined]
        (h2.events.WindowUpdated, 1, 100),
        (h2.events.WindowUpdated, 0, 100),
    ]
    assert conn.outbound_flow_control_window == 65535 + 100
    assert conn.streams[1].outbound_flow_control_window == 65535 + 100
    h2.connection.H2Connection.receive_data = counting  # type: ignore[method-assign]
    try:
        events = conn.receive_data(data_frame(1, 5, 0) + data_frame(1, 7, 0))
    finally:
        h2.connection.H2Connection.receive_data = original  # type: ignore[method-assign]
    assert calls == 0
    assert [(type(e), e.data) for e in events] == [  # type: ignore[attr-defined]
        (h2.events.DataReceived, b"ddddd"),
        (h2.events.DataReceived, b"ddddddd"),
    ]


def send(sid: int, size: int, end: bool) -> tuple[str, int, int, bool]:
    return ("send", sid, size, end)


steps = st.lists(
    st.one_of(
        st.builds(lambda f: ("recv", f), frames),
        st.builds(
            send,
            st.sampled_from((*STREAMS, 9)),
            st.sampled_from([0, 1, 100, 16384, 16385, 40000, 65535, 70000]),
            st.booleans(),
        ),
    ),
    max_size=14,
)


def run_steps(conn: h2.connection.H2Connection, plan: list[Any]) -> list[object]:
    seen: list[object] = []
    for step in plan:
        try:
            if step[0] == "recv":
                seen.extend(repr(e) for e in conn.receive_data(step[1]))
            else:
                _, sid, size, end = step
                conn.send_data(sid, b"x" * size, end_stream=end)
                seen.append("sent")
        except Exception as exc:  # h2 raises KeyError for some unknown streams: the same
            seen.append(("error", type(exc).__name__))
            if isinstance(exc, h2.exceptions.ProtocolError) and step[0] == "recv":
                break
        seen.append(snapshot(conn))
    seen.append(conn.data_to_send())
    return seen


@settings(max_examples=300, deadline=None)
@given(steps)
@example([("recv", window_update(0, 100000)), *[send(1, 16384, False)] * 4, send(1, 100, False)])
@example(
    [send(1, 16384, False), ("recv", window_update(1, 5)), send(1, 1, True), send(1, 1, False)]
)
def test_sending_matches_h2(plan: list[Any]) -> None:
    ours = run_steps(connection(_GracefulConnection), plan)
    theirs = run_steps(connection(h2.connection.H2Connection), plan)
    assert ours == theirs


def test_the_short_path_frames_plain_data() -> None:
    conn = connection(_GracefulConnection)
    original = h2.connection.H2Connection.send_data
    h2.connection.H2Connection.send_data = None  # type: ignore[assignment]
    try:
        conn.send_data(1, b"audio")
    finally:
        h2.connection.H2Connection.send_data = original  # type: ignore[method-assign]
    assert conn.data_to_send() == b"\x00\x00\x05\x00\x00\x00\x00\x00\x01audio"
    assert conn.outbound_flow_control_window == 65535 - 5


def test_data_past_the_streams_window_is_refused_as_h2_refuses_it() -> None:
    """The connection window opened wide, the stream's not: the stream's own limit holds."""
    outcomes = []
    for cls in (_GracefulConnection, h2.connection.H2Connection):
        conn = connection(cls)
        conn.increment_flow_control_window(10**6)
        conn.data_to_send()
        outcomes.append(feed(conn, [data_frame(1, 16384, 0)] * 4))
    assert outcomes[0] == outcomes[1]
    assert ("error", "FlowControlError") in outcomes[0]


@settings(max_examples=300, deadline=None)
@given(steps)
@example([("recv", window_update(0, 100000)), *[send(1, 16384, False)] * 5])
@example([("recv", rst(1)), send(1, 10, False), send(3, 10, False)])
def test_try_send_data_sends_as_h2_would_or_leaves_everything_as_it_was(plan: list[Any]) -> None:
    """The synchronous write (H2Connection.send_now) takes the short path or nothing: when it
    sends, h2 would have sent the same; when it refuses, no window, state or byte moved."""
    ours = connection(_GracefulConnection)
    assert isinstance(ours, _GracefulConnection)
    theirs = connection(h2.connection.H2Connection)
    for step in plan:
        if step[0] == "recv":
            outcomes = [feed(conn, [step[1]]) for conn in (ours, theirs)]
            assert outcomes[0] == outcomes[1]
            if any(isinstance(o, tuple) and o[0] == "error" for o in outcomes[0]):
                break
            continue
        _, sid, size, _ = step
        before, pending = snapshot(ours), bytes(ours._data_to_send)
        if ours.try_send_data(sid, b"x" * size):
            theirs.send_data(sid, b"x" * size)  # raises if h2 would not have sent it
        else:
            assert (snapshot(ours), bytes(ours._data_to_send)) == (before, pending)
        assert snapshot(ours) == snapshot(theirs)
    assert ours.data_to_send() == theirs.data_to_send()


def test_a_header_announcing_an_overlong_frame_is_refused_once_the_header_is_here() -> None:
    """RFC 9113 4.2: over SETTINGS_MAX_FRAME_SIZE is a FRAME_SIZE_ERROR. h2 says so only
    when the whole frame has come; check_frame_sizes as soon as its 9-byte header has,
    whatever frame came before it and however the bytes are cut, with the GOAWAY h2 would
    send. receive_data itself still answers exactly as h2 does (test_same_outcome_as_h2)."""
    limit = connection(_GracefulConnection).max_inbound_frame_size
    overlong = (limit + 1).to_bytes(3, "big") + b"\x00\x00\x00\x00\x00\x01"
    for before in (b"", window_update(1, 5), data_frame(1, 3, 0)):
        stream = before + overlong
        for cut in range(len(stream)):  # every split in two reads, inside a frame or not
            conn = connection(_GracefulConnection)
            assert isinstance(conn, _GracefulConnection)
            conn.receive_data(stream[:cut])
            conn.check_frame_sizes()  # the header is not all here yet: nothing to say
            events = conn.receive_data(stream[cut:])
            delivered = [type(e) for e in events]  # what came before it is still delivered
            assert len(delivered) == (1 if before and cut < len(before) else 0)
            with pytest.raises(h2.exceptions.FrameTooLargeError):
                conn.check_frame_sizes()
            goaway = conn.data_to_send()
            assert goaway[3] == 0x7 and goaway[-4:] == (6).to_bytes(4, "big")  # FRAME_SIZE
    # Exactly the limit is a frame like any other: it waits for its body.
    conn = connection(_GracefulConnection)
    assert isinstance(conn, _GracefulConnection)
    assert conn.receive_data(limit.to_bytes(3, "big") + b"\x00\x00\x00\x00\x00\x01") == []
    conn.check_frame_sizes()
