"""What every SpeechKit gRPC client of the bridge shares: the channel, the call, the metadata.

v3 streaming, v2 streaming and v3 asynchronous recognition differ in messages only; opening a
channel, authenticating a call, writing with the error tree's statuses and half-closing once
are the same, and live here once.

Streaming calls run on one of two transports (``speechkit.transport``): ``h2``, the bridge's
own HTTP/2 client (h2_grpc.py, a fraction of grpc.aio's CPU per message), or ``grpc``, grpc.aio.
Both present the same call to the stream classes: ``write(request)``, ``done_writing()``,
``cancel()``, ``read()`` (``grpc.aio.EOF`` at the end) and async iteration.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import grpc
import structlog

from ivr_bridge.errors import RecognitionError, RecognitionUnavailable
from ivr_bridge.recognition.h2_channel import H2Channel
from ivr_bridge.recognition.h2_grpc import H2Call, RpcError
from ivr_bridge.recognition.status import map_status

if TYPE_CHECKING:
    from ivr_bridge.recognition.credentials import Credentials

log = structlog.get_logger(__name__)

# SpeechKit results can exceed gRPC's 4 MB receive default; keepalive pings find dead peers.
CHANNEL_OPTIONS: Sequence[tuple[str, Any]] = (
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 0),
    ("grpc.http2.max_pings_without_data", 0),
)


def open_channel(
    endpoint: str, *, tls: bool = True, root_certificates: bytes | None = None
) -> grpc.aio.Channel:
    """One HTTP/2 channel to ``endpoint`` (TLS unless told otherwise); calls multiplex on it."""
    if tls:
        creds = grpc.ssl_channel_credentials(root_certificates=root_certificates)
        return grpc.aio.secure_channel(endpoint, creds, options=CHANNEL_OPTIONS)
    return grpc.aio.insecure_channel(endpoint, options=CHANNEL_OPTIONS)


TRANSPORTS = ("h2", "grpc")
CALL_ERRORS = (grpc.aio.AioRpcError, RpcError)
"""What a call of either transport raises when it ends badly."""


def mapped(exc: grpc.aio.AioRpcError | RpcError) -> RecognitionError:
    """The error tree's exception for a call's status (the one place statuses map)."""
    if isinstance(exc, RpcError):
        return map_status(exc.status, exc.message)
    return map_status(exc.code().name, exc.details() or "")


def raise_mapped(exc: grpc.aio.AioRpcError | RpcError) -> None:
    raise mapped(exc) from exc


class H2StreamCall:
    """An :class:`H2Call` with protobuf messages: the shape of a grpc.aio streaming call."""

    def __init__(self, call: H2Call, parse: Callable[[bytes], Any]) -> None:
        self._call = call
        self._parse = parse
        # A serialized message written now, or refused (False): the call's own, unwrapped.
        self.try_write_serialized: Callable[[bytes], bool] = call.try_write

    async def write(self, request: Any) -> None:
        await self._call.write(request.SerializeToString())

    async def done_writing(self) -> None:
        await self._call.done_writing()

    def cancel(self) -> None:
        self._call.cancel()

    async def read(self) -> Any:
        raw = await self._call.read()
        if raw is None:
            return grpc.aio.EOF
        return self._decode(raw)

    def _decode(self, raw: bytes) -> Any:
        try:
            return self._parse(raw)
        except Exception as exc:  # protobuf's DecodeError: the server sent garbage
            self._call.cancel()
            raise RpcError("INTERNAL", "response did not parse") from exc

    def __aiter__(self) -> H2StreamCall:
        return self

    async def __anext__(self) -> Any:
        message = await self.read()
        if message is grpc.aio.EOF:
            raise StopAsyncIteration
        return message


class GrpcStream:
    """One bidirectional streaming call: writes with mapped errors, a single half-close."""

    def __init__(self, call: Any) -> None:
        self._call = call
        self._closed_writing = False
        # The transport's write that finishes now or refuses, for serialized messages (the
        # h2 client has one; grpc.aio does not).
        self._try_serialized: Callable[[bytes], bool] | None = getattr(
            call, "try_write_serialized", None
        )

    async def _write(self, request: Any) -> None:
        try:
            await self._call.write(request)
        except CALL_ERRORS as exc:
            raise_mapped(exc)
        except (grpc.aio.UsageError, asyncio.InvalidStateError) as exc:
            # The call already ended (grpc.aio raises InvalidStateError on a finished call);
            # its real status surfaces when the responses are read.
            raise RecognitionUnavailable("CANCELLED", "stream closed") from exc

    def _try_write_serialized(self, message: bytes) -> bool:
        """Write a serialized message now if the transport can without waiting (the h2
        client); False: nothing was sent, use ``_write``."""
        try_write = self._try_serialized
        return try_write is not None and not self._closed_writing and try_write(message)

    async def finish(self) -> None:
        """Half-close: no more audio; the server flushes its last results and ends."""
        if self._closed_writing:
            return
        self._closed_writing = True
        try:
            await self._call.done_writing()
        except (*CALL_ERRORS, grpc.aio.UsageError):
            log.debug("half_close_after_end")

    def cancel(self) -> None:
        self._call.cancel()


class SpeechKitClient:
    """A channel plus the credentials every call presents.

    ``_open_call(path, response_type, metadata)`` starts a streaming call on whichever
    transport was chosen; ``_metadata`` gives a call's metadata.
    """

    def __init__(
        self,
        endpoint: str,
        *,
        tls: bool = True,
        credentials: Credentials | None = None,
        folder_id: str = "",
        root_certificates: bytes | None = None,
        transport: str = "h2",
        coalesce_ms: int = 0,
    ) -> None:
        if transport not in TRANSPORTS:
            raise ValueError(f"transport must be one of {TRANSPORTS}")
        self.endpoint = endpoint
        self.transport = transport
        self._credentials = credentials
        self._folder_id = folder_id
        self._h2: H2Channel | None = None
        self._channel: grpc.aio.Channel | None = None
        if transport == "h2":
            self._h2 = H2Channel(
                endpoint,
                tls=tls,
                root_certificates=root_certificates,
                coalesce_s=coalesce_ms / 1000,
            )
        else:
            self._channel = open_channel(endpoint, tls=tls, root_certificates=root_certificates)

    async def _open_call(
        self, path: str, response_type: Any, metadata: list[tuple[str, str]]
    ) -> Any:
        """A streaming call on ``path`` ("/package.Service/Method")."""
        if self._h2 is not None:
            try:
                call = await self._h2.open_call(path, metadata)
            except RpcError as exc:
                raise mapped(exc) from exc
            return H2StreamCall(call, response_type.FromString)
        assert self._channel is not None
        method = self._channel.stream_stream(
            path,
            request_serializer=_serialize,
            response_deserializer=response_type.FromString,
        )
        return method(metadata=metadata)

    async def refresh_credentials(self) -> bool:
        """Force new credentials after UNAUTHENTICATED; False when that cannot help."""
        if self._credentials is None:
            return False
        return await self._credentials.refresh()

    async def _metadata(
        self, request_id: str = "", *, folder_header: bool = True
    ) -> list[tuple[str, str]]:
        md: list[tuple[str, str]] = [("x-client-request-id", request_id)] if request_id else []
        if self._credentials is not None:
            md.extend(await self._credentials.metadata())
        if folder_header and self._folder_id:
            md.append(("x-folder-id", self._folder_id))
        return md

    def connectivity(self) -> str:
        """The channel's state name (READY, IDLE, CONNECTING, TRANSIENT_FAILURE...) for
        /healthz; asking also makes an idle channel try to connect."""
        if self._h2 is not None:
            return self._h2.connectivity(try_to_connect=True)
        assert self._channel is not None
        return str(self._channel.get_state(try_to_connect=True).name)

    async def close(self) -> None:
        if self._h2 is not None:
            await self._h2.close()
        if self._channel is not None:
            await self._channel.close()


def _serialize(message: Any) -> bytes:
    return bytes(message.SerializeToString())
