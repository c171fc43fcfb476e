"""gRPC over one HTTP/2 connection, on the h2 state machine: the bridge's lean call path.

grpc.aio costs 80-190 µs of CPU for every message written, plus a poller thread that wakes
for each; a bridge writes five audio messages per call-second for hundreds of calls. Here a
write is a protobuf already serialized, a 5-byte gRPC prefix and one h2 ``send_data`` (about
6 µs), written straight to the socket from the caller's task; nothing wakes another thread.

Only what long bidirectional streams need is here (the gRPC-over-HTTP/2 spec, client side):
per-stream and connection flow control both ways, trailers and trailers-only responses, HTTP
statuses and RST_STREAM codes mapped to gRPC statuses, GOAWAY (streams the server never saw
fail UNAVAILABLE, the others finish), keepalive PINGs while streams are open, and a receive
limit. Unary calls (asynchronous recognition) stay on grpc.aio.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import struct
import urllib.parse
from collections.abc import Callable, Iterable
from typing import cast

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import h2.stream
import hyperframe.frame
import structlog
from hpack import NeverIndexedHeaderTuple

log = structlog.get_logger(__name__)

STATUS_NAMES = (
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
)

# gRPC spec, "HTTP to gRPC Status Code Mapping": a non-200 answer from a proxy or balancer.
_HTTP_STATUS = {
    400: "INTERNAL",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "UNIMPLEMENTED",
    429: "UNAVAILABLE",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "UNAVAILABLE",
}

# gRPC spec, "Errors": RST_STREAM codes as statuses.
_RESET_STATUS: dict[int, str] = {
    h2.errors.ErrorCodes.NO_ERROR: "INTERNAL",
    h2.errors.ErrorCodes.REFUSED_STREAM: "UNAVAILABLE",
    h2.errors.ErrorCodes.CANCEL: "CANCELLED",
    h2.errors.ErrorCodes.ENHANCE_YOUR_CALM: "RESOURCE_EXHAUSTED",
    h2.errors.ErrorCodes.INADEQUATE_SECURITY: "PERMISSION_DENIED",
}

DEFAULT_MAX_RECEIVE = 64 * 1024 * 1024  # SpeechKit results can exceed gRPC's 4 MB default
_RECEIVE_WINDOW = 4 * 1024 * 1024  # per stream; responses are small, this never throttles them
_CONNECTION_WINDOW = 64 * 1024 * 1024
_PREFIX = 5  # compressed flag + 4-byte big-endian length
_INBOX_CREDIT = 8  # window credit is returned while fewer messages than this wait unread


class RpcError(Exception):
    """A call ended with a non-OK status (the status name and its message)."""

    def __init__(self, status: str, message: str = "") -> None:
        super().__init__(f"{status}: {message}" if message else status)
        self.status = status
        self.message = message


def _status_of(headers: dict[bytes, bytes]) -> RpcError | None:
    """The call's outcome from trailers (or a trailers-only answer); None when OK."""
    raw = headers.get(b"grpc-status")
    if raw is None:
        return RpcError("INTERNAL", "response ended without grpc-status")
    try:
        code = int(raw)
    except ValueError:
        return RpcError("UNKNOWN", "unparsable grpc-status")
    if code == 0:
        return None
    name = STATUS_NAMES[code] if 0 < code < len(STATUS_NAMES) else "UNKNOWN"
    message = urllib.parse.unquote(headers.get(b"grpc-message", b"").decode("utf-8", "replace"))
    return RpcError(name, message)


def _check_response_headers(headers: dict[bytes, bytes]) -> RpcError | None:
    if b"grpc-status" in headers:
        # Trailers-only: the gRPC status decides, whatever the HTTP status or content type
        # (the gRPC spec's HTTP mapping applies only when grpc-status is missing).
        return _status_of(headers)
    status = headers.get(b":status", b"")
    if status != b"200":
        try:
            code = int(status)
        except ValueError:
            code = 0
        return RpcError(_HTTP_STATUS.get(code, "UNKNOWN"), f"HTTP status {code}")
    if not headers.get(b"content-type", b"").startswith(b"application/grpc"):
        return RpcError("UNKNOWN", "response is not gRPC (content-type)")
    return None


class H2Call:
    """One bidirectional streaming call: raw message bytes out and in.

    ``write`` returns without suspending when flow control allows (the usual case); ``read``
    returns the next message or None once the server ended with OK, and raises RpcError when
    it ended otherwise.
    """

    def __init__(self, conn: H2Connection, stream_id: int) -> None:
        self._conn = conn
        self.stream_id = stream_id
        self._inbox: collections.deque[bytes] = collections.deque()
        self._buffer = bytearray()
        self._unacked = 0  # received flow-controlled bytes not yet given back to the server
        self._reader: asyncio.Future[None] | None = None
        self._writable: asyncio.Future[None] | None = None
        self._write_lock: asyncio.Lock | None = None
        self._headers: dict[bytes, bytes] | None = None
        self.outcome: RpcError | None = None
        self.ended = False  # the server's side is over (outcome set, or OK)
        self.half_closed = False

    # -- writing --------------------------------------------------------------------------

    async def write(self, message: bytes) -> None:
        """Send one serialized message; waits only when the peer's window is exhausted."""
        if self.ended:
            raise self.outcome or RpcError("CANCELLED", "call already ended")
        if self.half_closed:
            raise RpcError("INTERNAL", "write after done_writing")
        data = len(message).to_bytes(_PREFIX, "big") + message  # flag 0: not compressed
        if self._write_lock is None and self._conn.send_now(self, data):
            return
        if self._write_lock is None:
            self._write_lock = asyncio.Lock()
        async with self._write_lock:
            await self._conn.send_blocking(self, data)

    def try_write(self, message: bytes) -> bool:
        """``write`` when it can finish now (open call, nothing queued, window and socket
        free); False, with nothing sent, when it would have to wait or fail."""
        if self.ended or self.half_closed or self._write_lock is not None:
            return False
        return self._conn.send_now(self, len(message).to_bytes(_PREFIX, "big") + message)

    async def done_writing(self) -> None:
        """Half-close: the server sees end of stream after the messages already written."""
        if self.half_closed or self.ended:
            return
        if self._write_lock is not None:
            async with self._write_lock:
                self._conn.end_stream(self)
        else:
            self._conn.end_stream(self)
        self.half_closed = True

    def cancel(self) -> None:
        """Abandon the call (RST_STREAM CANCEL); reads then raise CANCELLED at once, as on
        grpc.aio: messages that arrived but were not read are dropped."""
        if not self.ended:
            self._inbox.clear()
        self._end(RpcError("CANCELLED", "cancelled by the client"))

    # -- reading --------------------------------------------------------------------------

    async def read(self) -> bytes | None:
        while not self._inbox:
            if self.ended:
                if self.outcome is not None:
                    raise self.outcome
                return None
            self._reader = asyncio.get_running_loop().create_future()
            try:
                await self._reader
            finally:
                self._reader = None
        message = self._inbox.popleft()
        self._give_credit()  # the reader may have caught up
        return message

    def _give_credit(self) -> None:
        """Return received bytes to the server's window while the reader keeps up (fewer
        than _INBOX_CREDIT messages wait): that is the back-pressure on responses."""
        if self._unacked and len(self._inbox) < _INBOX_CREDIT:
            self._conn.acknowledge(self, self._unacked)
            self._unacked = 0

    def __aiter__(self) -> H2Call:
        return self

    async def __anext__(self) -> bytes:
        message = await self.read()
        if message is None:
            raise StopAsyncIteration
        return message

    # -- fed by the connection ------------------------------------------------------------

    def _wake_reader(self) -> None:
        if self._reader is not None and not self._reader.done():
            self._reader.set_result(None)

    def _wake_writer(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)

    def _on_headers(self, headers: dict[bytes, bytes]) -> None:
        if self._headers is None:
            self._headers = headers
            problem = _check_response_headers(headers)
            if problem is not None or b"grpc-status" in headers:
                self._end(problem)  # an error, or a trailers-only answer (then StreamEnded)
        elif self._buffer:  # trailers after part of a message: whatever they say, it is cut
            self._end(RpcError("INTERNAL", "stream ended inside a message"))
        else:
            self._end(_status_of(headers))

    def _on_data(self, data: bytes, flow_length: int, max_receive: int) -> None:
        self._unacked += flow_length
        buf = self._buffer
        buf += data
        while len(buf) >= _PREFIX:
            length = int.from_bytes(buf[1:_PREFIX], "big")
            if buf[0] != 0:
                self._end(RpcError("INTERNAL", "compressed message was not negotiated"))
                return
            if length > max_receive:
                self._end(RpcError("RESOURCE_EXHAUSTED", "message exceeds receive limit"))
                return
            if len(buf) < _PREFIX + length:
                break
            self._inbox.append(bytes(buf[_PREFIX : _PREFIX + length]))
            del buf[: _PREFIX + length]
        # Also for part of a message: one larger than the stream window (up to max_receive)
        # would otherwise never complete.
        self._give_credit()
        if self._inbox:
            self._wake_reader()

    def _on_stream_ended(self) -> None:
        if self.ended:
            return
        # Trailers (or a trailers-only answer) would have ended the call already.
        if self._buffer:
            self._end(RpcError("INTERNAL", "stream ended inside a message"))
        else:
            self._end(RpcError("INTERNAL", "stream ended without trailers"))

    def _end(self, outcome: RpcError | None) -> None:
        if self.ended:
            return
        self.ended = True
        self.outcome = outcome
        self._buffer.clear()
        self._conn.finished(self)
        self._wake_reader()
        self._wake_writer()


_IDS = struct.Struct(">LL")  # a WINDOW_UPDATE's stream id and increment
_ID = struct.Struct(">L")  # a frame's stream id
_FRAME_HEADER = 9
_DATA = 0x0
_WINDOW_UPDATE = 0x8
_MAX_WINDOW = 2**31 - 1  # RFC 9113 6.9.1
_WindowUpdated = h2.events.WindowUpdated
# Stream states in which h2 takes a WINDOW_UPDATE as a plain credit (window_updated).
_CREDITABLE = (h2.stream.StreamState.OPEN, h2.stream.StreamState.HALF_CLOSED_LOCAL)
# Stream states in which h2 takes DATA (without END_STREAM) as a plain DataReceived.
_RECEIVABLE = (h2.stream.StreamState.OPEN, h2.stream.StreamState.HALF_CLOSED_LOCAL)
# Stream states in which h2 sends DATA without a state change.
_SENDABLE = (h2.stream.StreamState.OPEN, h2.stream.StreamState.HALF_CLOSED_REMOTE)


class _GracefulConnection(h2.connection.H2Connection):
    """h2's state machine, except that a GOAWAY lets the streams it spares finish, and plain
    DATA (both ways) and WINDOW_UPDATE in take a short path (send_data, receive_data).

    On GOAWAY h2 drops its unsent output and closes its connection state for good
    (python-hyper/h2#1181): DATA, trailers or a PING the server still sends for streams at
    or below last_stream_id would be protocol errors, and our own writes on them too. gRPC
    servers shut down exactly so (GOAWAY, PING, then the remaining calls' responses; RFC 9113
    section 6.8 allows it). New calls never go on a draining connection (H2Connection).
    """

    def clear_outbound_data_buffer(self) -> None:
        """Kept: only h2's GOAWAY handling calls this, and the frames are still owed."""

    def send_data(
        self,
        stream_id: int,
        data: bytes | memoryview,
        end_stream: bool = False,
        pad_length: int | None = None,
    ) -> None:
        """h2's, except that a plain DATA frame takes the short path (``try_send_data``)."""
        if end_stream or pad_length is not None or not self.try_send_data(stream_id, data):
            super().send_data(stream_id, data, end_stream, pad_length)

    def try_send_data(self, stream_id: int, data: bytes | memoryview) -> bool:
        """Queue ``data`` as one DATA frame (no end, no padding) if the stream is open and
        the frame size and both windows take it: h2's checks and window arithmetic without
        its generic frame objects, the cost of every audio write. False, with nothing
        queued, when any of that does not hold."""
        size = len(data)
        stream = self.streams.get(stream_id)
        if (
            stream is None
            or not 0 < size <= self.max_outbound_frame_size
            or size > self.outbound_flow_control_window
            or size > stream.outbound_flow_control_window
            or self.state_machine.state is not h2.connection.ConnectionState.CLIENT_OPEN
            or stream.state_machine.state not in _SENDABLE
        ):
            return False
        self.outbound_flow_control_window -= size
        stream.outbound_flow_control_window -= size
        header = size.to_bytes(3, "big") + b"\x00\x00" + stream_id.to_bytes(4, "big")
        self._data_to_send += header
        self._data_to_send += data
        return True

    def receive_data(self, data: bytes) -> list[h2.events.Event]:  # type: ignore[override]
        """h2's, except that plain WINDOW_UPDATE and DATA frames are taken here.

        A gRPC server credits each audio message back, often twice (stream and connection),
        and answers in small DATA frames: in h2's generic frame path (frame objects, a repr
        for its trace log, two state machines) each costs more than the audio write it
        answers. Those on an open connection and stream, within the windows and without
        flags, are applied here with h2's own checks and arithmetic and give h2's own
        events; any other frame, and any such frame h2 might judge otherwise, goes to h2,
        in order.
        """
        if self.incoming_buffer._data:  # inside a frame: h2 has the boundaries
            return super().receive_data(data)
        events: list[h2.events.Event] = []
        size = len(data)
        start = pos = 0
        while size - pos >= _FRAME_HEADER:
            length = int.from_bytes(data[pos : pos + 3], "big")
            end = pos + _FRAME_HEADER + length
            if end > size:
                break
            kind = data[pos + 3]
            if (kind == _WINDOW_UPDATE and length == 4) or (kind == _DATA and not data[pos + 4]):
                if start < pos:  # the frames before it first, as they came
                    events += super().receive_data(data[start:pos])
                    start = pos
                if kind == _DATA:
                    event: h2.events.Event | None = self._data(data, pos, end)
                else:
                    event = self._window_update(data, pos)
                if event is not None:
                    events.append(event)
                    start = end
            pos = end
        if start < size:
            events += super().receive_data(data[start:])
        return events

    def check_frame_sizes(self) -> None:
        """Raise FrameTooLargeError now, with the GOAWAY h2 would send, when a frame header
        already here announces more than our SETTINGS_MAX_FRAME_SIZE (RFC 9113 section
        4.2). h2 raises only once the whole frame has come: a peer gone wrong (or not
        speaking HTTP/2 any more) that announces megabytes would hold the connection until
        the keepalive PING timed out. Call it after handling what receive_data returned."""
        pending = self.incoming_buffer._data
        if len(pending) >= _FRAME_HEADER:
            length = int.from_bytes(pending[:3], "big")
            if length > self.max_inbound_frame_size:
                self._terminate_connection(h2.errors.ErrorCodes.FRAME_SIZE_ERROR)
                raise h2.exceptions.FrameTooLargeError(
                    f"Received overlong frame: length {length}, max {self.max_inbound_frame_size}"
                )

    def _plain(self) -> bool:
        """Whether the next frame may skip h2: an open connection, no frame or header block
        half read."""
        buffer = self.incoming_buffer
        return (
            self.state_machine.state is h2.connection.ConnectionState.CLIENT_OPEN
            and not buffer._data
            and not buffer._headers_buffer  # a header block must go on unbroken
        )

    def _data(self, data: bytes, pos: int, end: int) -> h2.events.DataReceived | None:
        """The DATA frame (no flags) at ``pos`` taken in, or None to leave it to h2."""
        length = end - pos - _FRAME_HEADER
        if not self._plain() or length > self.max_inbound_frame_size:
            return None
        (stream_id,) = _ID.unpack_from(data, pos + 5)
        stream = self.streams.get(stream_id & 0x7FFFFFFF)
        connection_window = self._inbound_flow_control_window_manager
        if (
            stream is None
            or stream.state_machine.state not in _RECEIVABLE
            or not stream.state_machine.headers_received
            or stream._expected_content_length is not None
            or length > connection_window.current_window_size
            or length > stream._inbound_window_manager.current_window_size
        ):
            return None
        connection_window.window_consumed(length)
        stream._inbound_window_manager.window_consumed(length)
        stream._actual_content_length += length
        return h2.events.DataReceived(
            stream_id=stream.stream_id,
            data=data[pos + _FRAME_HEADER : end],
            flow_controlled_length=length,
        )

    def _window_update(self, data: bytes, pos: int) -> h2.events.WindowUpdated | None:
        """The WINDOW_UPDATE at ``pos`` applied, or None to leave it to h2."""
        if not self._plain():
            return None
        stream_id, increment = _IDS.unpack_from(data, pos + 5)
        stream_id &= 0x7FFFFFFF  # the reserved bit
        if not 1 <= increment <= _MAX_WINDOW:
            return None  # h2 refuses it
        if stream_id == 0:
            window = self.outbound_flow_control_window + increment
            if window > _MAX_WINDOW:
                return None
            self.outbound_flow_control_window = window
            return h2.events.WindowUpdated(stream_id=0, delta=increment)
        stream = self.streams.get(stream_id)
        if stream is None or stream.state_machine.state not in _CREDITABLE:
            return None
        window = stream.outbound_flow_control_window + increment
        if window > _MAX_WINDOW:
            return None
        stream.outbound_flow_control_window = window
        return h2.events.WindowUpdated(stream_id=stream_id, delta=increment)

    def _receive_goaway_frame(
        self, frame: hyperframe.frame.GoAwayFrame
    ) -> tuple[list[hyperframe.frame.Frame], list[h2.events.Event]]:
        frames, events = super()._receive_goaway_frame(frame)
        self.state_machine.state = h2.connection.ConnectionState.CLIENT_OPEN
        return frames, events


class H2Connection(asyncio.Protocol):
    """One HTTP/2 connection carrying many calls; owned by an :class:`H2Channel`."""

    def __init__(
        self,
        authority: str,
        scheme: str,
        *,
        max_streams: int = 100,
        max_receive: int = DEFAULT_MAX_RECEIVE,
        keepalive_s: float = 10.0,
        keepalive_timeout_s: float = 5.0,
        coalesce_s: float = 0.0,
        on_closed: Callable[[H2Connection], None] | None = None,
    ) -> None:
        config = h2.config.H2Configuration(
            client_side=True,
            header_encoding=None,
            validate_outbound_headers=False,  # ours are built below, once
            normalize_outbound_headers=False,
        )
        self._h2 = _GracefulConnection(config)
        self._h2.local_settings = h2.settings.Settings(
            client=True,
            initial_values={
                h2.settings.SettingCodes.ENABLE_PUSH: 0,
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: _RECEIVE_WINDOW,
                h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: 64 * 1024,
            },
        )
        self._authority = authority.encode()
        self._scheme = scheme.encode()
        self._cap = max_streams
        self._max_receive = max_receive
        self._keepalive_s = keepalive_s
        self._keepalive_timeout_s = keepalive_timeout_s
        self._on_closed = on_closed
        self._transport: asyncio.Transport | None = None
        self.calls: dict[int, H2Call] = {}
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._greeting = b""  # the first bytes from the server, until its SETTINGS arrive
        self.draining = False  # GOAWAY received or closing: no new calls here
        self.closed: RpcError | None = None
        self._paused = False  # the transport's buffer is full (pause_writing)
        self._blocked: set[H2Call] = set()
        self._received_since_ping = True
        self._ping_timer: asyncio.TimerHandle | None = None
        self._ping_deadline: asyncio.TimerHandle | None = None
        self._coalesce_s = coalesce_s
        self._flush_timer: asyncio.TimerHandle | None = None

    @property
    def keepalive_s(self) -> float:
        """The PING interval now (doubled by each "too many pings" GOAWAY)."""
        return self._keepalive_s

    # -- capacity -------------------------------------------------------------------------

    @property
    def limit(self) -> int:
        """Calls this connection may carry at once (the peer's limit, capped by ours)."""
        return min(self._cap, self._h2.remote_settings.max_concurrent_streams)

    @property
    def capacity(self) -> int:
        """How many more calls may open here now."""
        if self.draining or self.closed is not None:
            return 0
        return self.limit - len(self.calls)

    def open_call(self, path: str, metadata: Iterable[tuple[str, str]]) -> H2Call:
        """Start a call (HEADERS) on this connection; the caller checked ``capacity``."""
        headers: list[tuple[bytes, bytes]] = [
            (b":method", b"POST"),
            (b":scheme", self._scheme),
            (b":path", path.encode()),
            (b":authority", self._authority),
            (b"content-type", b"application/grpc"),
            (b"te", b"trailers"),
            (b"user-agent", b"ivr-bridge-h2"),
        ]
        for key, value in metadata:
            k = key.lower().encode()
            v = value.encode()
            # Credentials stay out of both sides' HPACK tables.
            headers.append(NeverIndexedHeaderTuple(k, v) if k == b"authorization" else (k, v))
        try:
            stream_id = self._h2.get_next_available_stream_id()
            self._h2.send_headers(stream_id, headers)
        except h2.exceptions.H2Error as exc:
            # Out of stream ids, or over a limit h2 knows better: no more calls here.
            self.draining = True
            raise RpcError("UNAVAILABLE", f"cannot open a stream: {type(exc).__name__}") from None
        call = H2Call(self, stream_id)
        self.calls[stream_id] = call
        self._flush()
        self._arm_keepalive()
        return call

    # -- sending (called by H2Call) -------------------------------------------------------

    def send_now(self, call: H2Call, data: bytes) -> bool:
        """Send all of ``data`` if windows and the socket allow it now; False otherwise."""
        if self._paused or self.closed is not None:
            return False
        # One frame within the windows on an open stream, or nothing (send_blocking then
        # waits for credit, or h2 itself says what is wrong).
        if not self._h2.try_send_data(call.stream_id, data):
            return False
        self._flush()
        return True

    async def send_blocking(self, call: H2Call, data: bytes) -> None:
        """Send ``data`` in as many frames as windows allow, waiting for credit between."""
        view = memoryview(data)
        while view:
            if call.ended:
                raise call.outcome or RpcError("CANCELLED", "call already ended")
            if self.closed is not None:
                raise self.closed
            size = 0
            if not self._paused:
                try:
                    window = self._h2.local_flow_control_window(call.stream_id)
                except h2.exceptions.H2Error as exc:
                    raise RpcError(
                        "INTERNAL", f"stream not writable: {type(exc).__name__}"
                    ) from None
                size = min(window, self._h2.max_outbound_frame_size, len(view))
            if size <= 0:
                # No window, or a full socket: woken by credit, resume_writing, or the call's
                # end (a cancel must not wait for a socket that may never drain).
                call._writable = asyncio.get_running_loop().create_future()
                self._blocked.add(call)
                try:
                    await call._writable
                finally:
                    call._writable = None
                    self._blocked.discard(call)
                continue
            self._h2.send_data(call.stream_id, bytes(view[:size]))
            view = view[size:]
            self._flush()

    def end_stream(self, call: H2Call) -> None:
        with contextlib.suppress(h2.exceptions.H2Error):
            self._h2.end_stream(call.stream_id)
            self._flush()

    def acknowledge(self, call: H2Call, length: int) -> None:
        if self.closed is None and length:
            with contextlib.suppress(h2.exceptions.H2Error):
                self._h2.acknowledge_received_data(length, call.stream_id)
                self._flush()

    def finished(self, call: H2Call) -> None:
        """A call is over: reset its stream if either side is still open, then let it go."""
        stream = self._h2.streams.get(call.stream_id)
        if stream is not None and not stream.closed and self.closed is None:
            code = (
                h2.errors.ErrorCodes.NO_ERROR
                if call.outcome is None
                else h2.errors.ErrorCodes.CANCEL
            )
            with contextlib.suppress(h2.exceptions.H2Error):
                self._h2.reset_stream(call.stream_id, code)
                self._flush()
        if call._unacked:  # bytes it will never read: the connection's window gets them back
            self.acknowledge(call, call._unacked)
            call._unacked = 0
        self.calls.pop(call.stream_id, None)
        self._blocked.discard(call)
        if self.draining and not self.calls:
            self.close()

    def _flush(self) -> None:
        """Write what h2 has queued: now, or within ``coalesce_s`` together with what other
        calls on this connection queue meanwhile (one socket write instead of several)."""
        if self._coalesce_s <= 0:
            self._write_out()
        elif self._flush_timer is None and self._transport is not None:
            loop = asyncio.get_running_loop()
            self._flush_timer = loop.call_later(self._coalesce_s, self._write_out)

    def _write_out(self) -> None:
        self._flush_timer = None
        data = self._h2.data_to_send()
        if data and self._transport is not None:
            self._transport.write(data)

    # -- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike.
        self._transport = cast(asyncio.Transport, transport)
        self._h2.initiate_connection()
        self._h2.increment_flow_control_window(_CONNECTION_WINDOW - 65535)
        self._write_out()

    def data_received(self, data: bytes) -> None:
        self._received_since_ping = True
        if not self.ready.done() and not self._greeting_is_settings(data):
            log.warning("h2_not_http2")
            self._fail(RpcError("UNAVAILABLE", "the server did not answer in HTTP/2"))
            if self._transport is not None:
                self._transport.close()
            return
        try:
            events = self._h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            self._protocol_error(exc)
            return
        credited = False
        for event in events:
            if type(event) is _WindowUpdated:  # most frames: credit for audio sent
                credited = True
            else:
                self._handle(event)
        if credited:
            self._wake_blocked()
        if self.closed is not None:  # an event ended the connection (a GOAWAY, say)
            return
        try:
            self._h2.check_frame_sizes()
        except h2.exceptions.ProtocolError as exc:
            self._protocol_error(exc)
            return
        self._flush()

    def _protocol_error(self, exc: h2.exceptions.ProtocolError) -> None:
        """The server broke HTTP/2: every call fails, GOAWAY (if h2 has not queued one),
        and the connection closes."""
        log.warning("h2_protocol_error", error=type(exc).__name__)
        self._fail(RpcError("INTERNAL", f"HTTP/2 protocol error: {type(exc).__name__}"))
        with contextlib.suppress(h2.exceptions.H2Error):
            self._h2.close_connection(h2.errors.ErrorCodes.PROTOCOL_ERROR)
        self._write_out()
        if self._transport is not None:
            self._transport.close()

    def _greeting_is_settings(self, data: bytes) -> bool:
        """Whether the server's first frame is SETTINGS, as HTTP/2 requires (RFC 9113 3.4).

        h2 checks a frame's length only once the whole frame has arrived: an HTTP/1.1 answer
        read as a frame header announces megabytes, and the connect would wait for them.
        """
        self._greeting += data[: 4 - len(self._greeting)]
        return len(self._greeting) < 4 or self._greeting[3] == 0x4  # byte 3: frame type

    def _handle(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.DataReceived):
            call = self.calls.get(event.stream_id)
            if call is not None:
                call._on_data(event.data, event.flow_controlled_length, self._max_receive)
            elif event.flow_controlled_length:  # a call we gave up on: credit the connection
                with contextlib.suppress(h2.exceptions.H2Error):
                    self._h2.acknowledge_received_data(
                        event.flow_controlled_length, event.stream_id
                    )
        elif isinstance(event, h2.events.RemoteSettingsChanged):  # (WindowUpdated: above)
            self._wake_blocked()
            if not self.ready.done():
                self.ready.set_result(None)
        elif isinstance(event, h2.events.ResponseReceived | h2.events.TrailersReceived):
            call = self.calls.get(event.stream_id)
            if call is not None:
                call._on_headers(dict(event.headers))
        elif isinstance(event, h2.events.StreamEnded):
            call = self.calls.get(event.stream_id)
            if call is not None:
                call._on_stream_ended()
        elif isinstance(event, h2.events.StreamReset):
            call = self.calls.get(event.stream_id)
            if call is not None:
                status = _RESET_STATUS.get(event.error_code, "INTERNAL")
                call._end(RpcError(status, f"stream reset by the server ({event.error_code!s})"))
        elif isinstance(event, h2.events.ConnectionTerminated):
            self._on_goaway(event)
        elif isinstance(event, h2.events.PingAckReceived) and self._ping_deadline is not None:
            self._ping_deadline.cancel()
            self._ping_deadline = None

    def _wake_blocked(self) -> None:
        for blocked in list(self._blocked):
            blocked._wake_writer()

    def _on_goaway(self, event: h2.events.ConnectionTerminated) -> None:
        self.draining = True
        last = event.last_stream_id if event.last_stream_id is not None else 0
        why = f"GOAWAY {event.error_code!s}"
        if event.error_code == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM:
            self._keepalive_s *= 2  # "too_many_pings": back off as grpc-core does
        log.info("h2_goaway", code=str(event.error_code), open_calls=len(self.calls))
        for sid, call in list(self.calls.items()):
            if sid > last:  # never processed: safe to retry elsewhere
                call._end(RpcError("UNAVAILABLE", f"{why} before the call was processed"))
            elif event.error_code != h2.errors.ErrorCodes.NO_ERROR:
                call._end(RpcError("UNAVAILABLE", why))
        if not self.calls:
            self.close()

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._wake_blocked()

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(RpcError("UNAVAILABLE", "connection to the recognizer lost"))

    def eof_received(self) -> bool | None:
        return None  # close the transport; connection_lost fails the calls

    # -- lifecycle ------------------------------------------------------------------------

    def _fail(self, error: RpcError) -> None:
        if self.closed is not None:
            return
        self.closed = error
        self.draining = True
        for timer in (self._ping_timer, self._ping_deadline, self._flush_timer):
            if timer is not None:
                timer.cancel()
        if not self.ready.done():
            self.ready.set_exception(error)
            self.ready.exception()  # retrieved: nobody may be waiting any more
        for call in list(self.calls.values()):
            call._end(error)
        if self._on_closed is not None:
            self._on_closed(self)

    def close(self) -> None:
        """Say GOAWAY and close; calls still open end UNAVAILABLE."""
        if self.closed is None and self._transport is not None:
            with contextlib.suppress(h2.exceptions.H2Error):
                self._h2.close_connection()
            self._write_out()
            self._transport.close()
        self._fail(RpcError("UNAVAILABLE", "connection closed"))

    # -- keepalive: a PING when nothing arrived for keepalive_s while calls are open ------

    def _arm_keepalive(self) -> None:
        if self._ping_timer is None and self._keepalive_s > 0 and self.closed is None:
            loop = asyncio.get_running_loop()
            self._ping_timer = loop.call_later(self._keepalive_s, self._keepalive_tick)

    def _keepalive_tick(self) -> None:
        self._ping_timer = None
        if self.closed is not None or not self.calls:
            return
        if not self._received_since_ping and self._ping_deadline is None:
            self._h2.ping(os.urandom(8))
            self._flush()
            loop = asyncio.get_running_loop()
            self._ping_deadline = loop.call_later(self._keepalive_timeout_s, self._ping_lost)
        self._received_since_ping = False
        self._arm_keepalive()

    def _ping_lost(self) -> None:
        self._ping_deadline = None
        log.warning("h2_keepalive_timeout")
        if self._transport is not None:
            self._transport.abort()
        self._fail(RpcError("UNAVAILABLE", "keepalive ping not answered"))
