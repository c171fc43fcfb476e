"""A websockets server connection that hands a call's media messages straight to the call.

websockets' asyncio connection queues every data frame in an assembler and wakes a reader
task per message: a future, a queue hop and a generator-based frame parser for each 20 ms
frame, the largest share of the bridge's CPU per call under load. A PBX media stream is the
simplest websocket traffic there is (small, unfragmented, masked frames, one after another),
so this connection parses those frames itself, unmasks them with websockets' C helper and
calls the call's consumer synchronously from ``data_received``: no task switch per frame.

Everything else stays websockets' job: the handshake, control frames (ping, pong, close),
fragmented or oversized messages, invalid UTF-8 and every protocol error are handed, as whole
frames, to websockets' own sans-I/O protocol, which answers them exactly as before; the data
frames it parses (fragments too, joined here) still go to the consumer. A frame the fast path
cannot size (a 64-bit length) switches the connection to websockets' parser for good.
Before a consumer is attached (the short time between the handshake and the call's start),
messages wait in a small bounded list; after :meth:`detach` they go to websockets' assembler
again so ``recv()`` works for a goodbye exchange.

Where the compiled scanner is built (``wsfast``), one C call per read does the frame parsing
and unmasking (``_scan``), and media messages in the platform's layout come back already
matched and joined into runs, which go to the call's ``take_run``; ``_consume`` is the same
logic in Python.

Read batching: the call sends audio upstream a chunk (200 ms) at a time, so waking for each
20 ms frame is work without a purpose. After each read the call may say how many more bytes
its next chunk needs and how soon they are due (``ReadHint``); the connection then asks the
kernel (Linux ``SO_RCVLOWAT``) not to report the socket readable before that many bytes are
there, and lowers it back to one byte when they are late, so anything else the PBX sends
(DTMF, a mark, a close) waits at most until the chunk is due plus a margin.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any, Protocol

import structlog
from websockets.asyncio.server import ServerConnection
from websockets.frames import CloseCode, Frame, Opcode
from websockets.protocol import State

from ivr_bridge import wsfast

try:
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover - the pure-Python build of websockets
    from websockets.utils import apply_mask

log = structlog.get_logger(__name__)

Consumer = Callable[[str | bytes], None]
ReadHint = Callable[[], tuple[int, float] | None]
"""After a read: (bytes the call's next chunk still needs, seconds until they are late), or
None to be woken for every byte."""


class MediaRuns(Protocol):
    """Where the compiled scanner's media runs go (wsfast.py): the call, with its dialect."""

    @property
    def media_layout(self) -> Any:
        """The stream's compiled media layout, or None (not started, or not this dialect)."""

    def take_run(self, wire: int, run: tuple[Any, ...]) -> None:
        """A media run as ``wsfast.scan`` returns it (``wire``: its frames' bytes); runs
        inside data_received."""


_RCVLOWAT: int | None = getattr(socket, "SO_RCVLOWAT", None)

# Messages that may arrive between the handshake and the call's start; far more than any
# platform sends in that moment. Past it a message is dropped and counted (``early_dropped``).
EARLY_LIMIT = 256

_TEXT = 0x1
_BINARY = 0x2


class MediaConnection(ServerConnection):
    """A ServerConnection whose data messages can go to a synchronous consumer (see module)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._media = False
        self._fast = True  # False once websockets' parser owns the byte stream
        self._buffer = bytearray()
        self._consumer: Consumer | None = None
        self._early: list[str | bytes] | None = None
        self._fragments: list[bytes] | None = None  # a fragmented message's parts so far
        self._fragments_text = False
        self.early_dropped = 0
        self.fast_frames = 0  # how many data frames took the fast path (tests, diagnostics)
        self._hint: ReadHint | None = None
        self._low_water = 1  # the socket's SO_RCVLOWAT as last set
        self._low_water_timer: Any = None
        self._low_water_due = 0.0  # loop time by which the raised mark must fall back
        self._socket: Any = None  # the transport's socket, for SO_RCVLOWAT (read batching)
        self._runs: MediaRuns | None = None
        self._layout: Any = None  # the runs' media layout, once there is one
        self.batched_reads = 0  # reads that came after a raised low-water mark (diagnostics)

    # ---- the server's side ------------------------------------------------------------

    def expect_media(self) -> None:
        """This connection carries a call: keep its messages for :meth:`attach`."""
        self._media = True
        self._early = []
        # Frames pipelined with the upgrade request were parsed before the server knew this
        # connection carries media, so websockets queued them for recv(): take them back.
        assembler = self.recv_messages
        queued = assembler.frames.queue
        while queued:
            self.process_event(queued.popleft())
        assembler.maybe_resume()

    def attach(
        self, consumer: Consumer, hint: ReadHint | None = None, runs: MediaRuns | None = None
    ) -> None:
        """Deliver every data message to ``consumer``, starting with those already here;
        ``hint``, when given, turns on read batching (see the module docstring); ``runs``,
        when given and the compiled scanner is built, takes media messages in its layout.

        The consumer runs inside ``data_received``: it must not block or raise.
        """
        early, self._early = self._early or [], None
        self._consumer = consumer
        self._runs = runs if wsfast.AVAILABLE else None
        self._hint = hint if _RCVLOWAT is not None else None
        if self._hint is not None and self.transport is not None:
            self._socket = self.transport.get_extra_info("socket")
        if self.early_dropped:  # final now: only the early list drops (in the call's context)
            log.warning("early_messages_dropped", dropped=self.early_dropped, limit=EARLY_LIMIT)
        for message in early:
            if self._consumer is not consumer:
                break  # the consumer detached itself while catching up
            consumer(message)

    def detach(self) -> None:
        """Stop delivering: later messages queue for ``recv()``, as on a plain connection."""
        self._hint = None
        self._wake_for_every_byte()
        self._consumer = None
        self._runs = None
        self._layout = None
        self._media = False
        self._early = None
        fragments, self._fragments = self._fragments, None
        if fragments is not None and self.protocol.state is State.OPEN:
            # Mid-message: the assembler gets the start so far, and the rest as it comes.
            opcode = Opcode.TEXT if self._fragments_text else Opcode.BINARY
            super().process_event(Frame(opcode, b"".join(fragments), fin=False))

    # ---- websockets' hooks ---------------------------------------------------------

    def process_event(self, event: Any) -> None:
        if self._media and self.request is not None and isinstance(event, Frame):
            # A data frame websockets parsed (the fast path handed it over): a whole message,
            # or a fragment, which waits here for the rest (websockets checks their order
            # and total size; the assembler is not read while a consumer is attached).
            if event.opcode in (Opcode.TEXT, Opcode.BINARY):
                if event.fin:
                    self._deliver_data(bytes(event.data), event.opcode is Opcode.TEXT)
                else:
                    self._fragments = [bytes(event.data)]
                    self._fragments_text = event.opcode is Opcode.TEXT
                return
            if event.opcode is Opcode.CONT and self._fragments is not None:
                self._fragments.append(bytes(event.data))
                if event.fin:
                    data, self._fragments = b"".join(self._fragments), None
                    self._deliver_data(data, self._fragments_text)
                return
        super().process_event(event)

    def _deliver_data(self, data: bytes, is_text: bool) -> None:
        if not is_text:
            self._deliver(data)
            return
        try:
            text = data.decode()
        except UnicodeDecodeError as exc:
            self._fail(CloseCode.INVALID_DATA, f"{exc.reason} at position {exc.start}")
            return
        self._deliver(text)

    def data_received(self, data: bytes) -> None:
        if (
            not (self._media and self._fast)
            or self.protocol.state is not State.OPEN
            or self.protocol.reader.buffer  # websockets holds part of a frame: it goes on
        ):
            if self._buffer:  # detached mid-frame: websockets gets the bytes in order
                data = bytes(self._buffer) + data
                self._buffer.clear()
            if self._low_water > 1:  # closing, or websockets' parser: every byte, at once
                self._wake_for_every_byte()
            super().data_received(data)
            return
        buffer = self._buffer
        if buffer:
            buffer += data
            view: bytes | bytearray = buffer
        else:
            view = data
        pos = self._scan(view) if wsfast.AVAILABLE else self._consume(view)
        if view is buffer:
            del buffer[:pos]
        elif pos < len(view):
            buffer += view[pos:]
        if self._hint is not None:
            self._batch_next_read()

    # ---- read batching ------------------------------------------------------------------

    def _batch_next_read(self) -> None:
        assert self._hint is not None
        if self._low_water > 1:
            self.batched_reads += 1
        hint = self._hint() if not self._buffer else None  # mid-frame: the rest, at once
        if hint is None:
            self._wake_for_every_byte()
            return
        nbytes, due_s = hint
        self._set_low_water(nbytes)
        # One timer that moves lazily: a read pushes the deadline on and the timer, when
        # it fires early, re-arms for it (a timer per read instead of two and a cancel).
        due = self.loop.time() + due_s
        self._low_water_due = due
        timer = self._low_water_timer
        if timer is None or timer.when() > due:
            if timer is not None:
                timer.cancel()
            self._low_water_timer = self.loop.call_at(due, self._low_water_expired)

    def _low_water_expired(self) -> None:
        self._low_water_timer = None
        if self.loop.time() < self._low_water_due:
            self._low_water_timer = self.loop.call_at(self._low_water_due, self._low_water_expired)
            return
        self._wake_for_every_byte()

    def _wake_for_every_byte(self) -> None:
        if self._low_water_timer is not None:
            self._low_water_timer.cancel()
            self._low_water_timer = None
        self._set_low_water(1)

    def _set_low_water(self, nbytes: int) -> None:
        if nbytes == self._low_water or _RCVLOWAT is None:
            return
        try:
            if self._socket is None:
                raise OSError("no socket")
            self._socket.setsockopt(socket.SOL_SOCKET, _RCVLOWAT, nbytes)
        except OSError:
            self._hint = None  # not a TCP socket that supports it: plain reads from now on
            return
        self._low_water = nbytes

    # ---- the fast path ------------------------------------------------------------------

    def _scan(self, data: bytes | bytearray) -> int:
        """``_consume`` with the compiled scanner: media runs straight to the call."""
        pos = 0
        protocol = self.protocol
        limit = protocol.max_message_size
        limit = -1 if limit is None else limit
        scan = wsfast.scan
        size = len(data)
        while pos < size:  # (a read usually ends on a frame's end: no call to learn that)
            runs = self._runs
            layout = self._layout
            if layout is None and runs is not None:
                layout = self._layout = runs.media_layout  # set once the stream has started
            found = scan(data, pos, limit, protocol.current_size is None, layout)
            kind = found[0]
            if kind == wsfast.RUN:
                end = found[1]
                self.fast_frames += found[2]
                assert runs is not None
                runs.take_run(end - pos, found)
                pos = end
            elif kind == wsfast.TEXT:
                pos = found[1]
                try:
                    message: str | bytes = found[2].decode()
                except UnicodeDecodeError as exc:
                    self._fail(CloseCode.INVALID_DATA, f"{exc.reason} at position {exc.start}")
                    return len(data)
                self.fast_frames += 1
                self._deliver(message)
            elif kind == wsfast.BINARY:
                pos = found[1]
                self.fast_frames += 1
                self._deliver(found[2])
            elif kind == wsfast.MORE:
                return pos
            elif kind == wsfast.OTHER:
                # Control frames, fragments, errors: websockets' protocol, one whole frame.
                end = found[1]
                super().data_received(bytes(data[pos:end]))
                pos = end
                if protocol.state is not State.OPEN:
                    return self._hand_over(data, pos)
                continue
            else:  # HUGE: bigger than 64 KiB, never media; websockets takes the stream
                self._fast = False
                return self._hand_over(data, pos)
            if not self._media:
                # Detached by the consumer: websockets parses the rest for recv().
                return self._hand_over(data, pos)
        return pos

    def _hand_over(self, data: bytes | bytearray, pos: int) -> int:
        """Give websockets the rest of ``data`` from ``pos``; all of it is used."""
        rest = bytes(data[pos:])
        if rest:
            super().data_received(rest)
        return len(data)

    def _consume(self, data: bytes | bytearray) -> int:
        """Handle every complete frame in ``data``; return how many bytes were used."""
        pos = 0
        end = len(data)
        protocol = self.protocol
        limit = protocol.max_message_size
        while end - pos >= 2:
            b0 = data[pos]
            b1 = data[pos + 1]
            length = b1 & 0x7F
            header = 2
            if length == 126:
                if end - pos < 4:
                    break
                length = (data[pos + 2] << 8) | data[pos + 3]
                header = 4
            elif length == 127:
                # Bigger than 64 KiB: never a media frame. websockets takes over the stream
                # (and refuses it as too big, or assembles it).
                self._fast = False
                return self._hand_over(data, pos)
            if b1 & 0x80:
                header += 4
            size = header + length
            if end - pos < size:
                break
            opcode = b0 & 0x0F
            simple = (
                (b0 & 0xF0) == 0x80  # FIN, no RSV bits
                and opcode in (_TEXT, _BINARY)
                and b1 & 0x80  # clients must mask
                and protocol.current_size is None  # not inside a fragmented message
                and (limit is None or length <= limit)
            )
            if simple:
                payload = apply_mask(
                    data[pos + header : pos + size], data[pos + header - 4 : pos + header]
                )
                if opcode == _TEXT:
                    try:
                        message: str | bytes = payload.decode()
                    except UnicodeDecodeError as exc:
                        self._fail(CloseCode.INVALID_DATA, f"{exc.reason} at position {exc.start}")
                        return end
                else:
                    message = payload
            if not simple:
                # Control frames, fragments, errors: websockets' protocol, one whole frame.
                super().data_received(bytes(data[pos : pos + size]))
                pos += size
                if protocol.state is not State.OPEN:
                    # Closing or failed: websockets discards or answers the rest.
                    return self._hand_over(data, pos)
                continue
            pos += size
            self.fast_frames += 1
            self._deliver(message)
            if not self._media:
                # Detached by the consumer: websockets parses the rest for recv().
                return self._hand_over(data, pos)
        return pos

    def connection_lost(self, exc: Exception | None) -> None:
        self._hint = None
        if self._low_water_timer is not None:
            self._low_water_timer.cancel()
            self._low_water_timer = None
        super().connection_lost(exc)

    def _fail(self, code: CloseCode, reason: str) -> None:
        """Fail the connection as websockets' recv() would (close frame, then the socket)."""
        self.protocol.fail(code, reason)
        self.send_data()
        if self.close_deadline is None and self.close_timeout is not None:
            self.close_deadline = self.loop.time() + self.close_timeout

    def _deliver(self, message: str | bytes) -> None:
        consumer = self._consumer
        if consumer is not None:
            consumer(message)
            return
        # Media mode without a consumer is the wait for attach (detach leaves media mode).
        early = self._early
        assert early is not None
        if len(early) < EARLY_LIMIT:
            early.append(message)
        else:
            self.early_dropped += 1
