"""What every SpeechKit gRPC client of the bridge shares: the channel, the call, the metadata.

v3 streaming, v2 streaming and v3 asynchronous recognition differ in messages only; opening a
channel, authenticating a call, writing with the error tree's statuses and half-closing once
are the same, and live here once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import grpc
import structlog

from ivr_bridge.errors import RecognitionUnavailable
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


def raise_mapped(exc: grpc.aio.AioRpcError) -> None:
    """Raise the error tree's exception for a gRPC status (the one place statuses map)."""
    raise map_status(exc.code().name, exc.details() or "") from exc


class GrpcStream:
    """One bidirectional streaming call: writes with mapped errors, a single half-close."""

    def __init__(self, call: Any) -> None:
        self._call = call
        self._closed_writing = False

    async def _write(self, request: Any) -> None:
        try:
            await self._call.write(request)
        except grpc.aio.AioRpcError as exc:
            raise_mapped(exc)
        except (grpc.aio.UsageError, asyncio.InvalidStateError) as exc:
            # The call already ended (grpc.aio raises InvalidStateError on a finished call);
            # its real status surfaces when the responses are read.
            raise RecognitionUnavailable("CANCELLED", "stream closed") from exc

    async def finish(self) -> None:
        """Half-close: no more audio; the server flushes its last results and ends."""
        if self._closed_writing:
            return
        self._closed_writing = True
        try:
            await self._call.done_writing()
        except (grpc.aio.AioRpcError, grpc.aio.UsageError):
            log.debug("half_close_after_end")

    def cancel(self) -> None:
        self._call.cancel()


class SpeechKitClient:
    """A channel plus the credentials every call presents.

    Subclasses add their stubs on ``self._channel``; ``_metadata`` gives a call's metadata.
    """

    def __init__(
        self,
        endpoint: str,
        *,
        tls: bool = True,
        credentials: Credentials | None = None,
        folder_id: str = "",
        root_certificates: bytes | None = None,
    ) -> None:
        self.endpoint = endpoint
        self._credentials = credentials
        self._folder_id = folder_id
        self._channel = open_channel(endpoint, tls=tls, root_certificates=root_certificates)

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
        return str(self._channel.get_state(try_to_connect=True).name)

    async def close(self) -> None:
        await self._channel.close()
