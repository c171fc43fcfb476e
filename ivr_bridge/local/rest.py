"""The embedded recognizer's REST endpoints for SpeechKit v2 asynchronous recognition.

SpeechKit serves v2 long-running recognition over REST
(``POST /speech/stt/v2/longRunningRecognize`` on transcribe.api.cloud.yandex.net) and the
operations over ``GET /operations/{id}`` (operation.api.cloud.yandex.net). This small
HTTP/1.1 server (h11, keep-alive, bounded bodies) serves both on one loopback port, over the
same jobs as the gRPC AsyncRecognizer (``async_jobs.py``), so the v2 path of
``ivr-bridge transcribe`` runs offline.

Request body as documented: ``config.specification`` (languageCode, model, profanityFilter,
literature_text, audioEncoding, sampleRateHertz, audioChannelCount, rawResults) and
``audio.uri``. v2 recognizes files from Object Storage only, so ``audio.content`` is refused.
Replies are the Operation as JSON (camelCase, ``done``, ``id``, ``createdAt``...; when done,
``response`` with ``@type`` ...LongRunningRecognitionResponse and ``chunks[]``, or ``error``).
Errors: the HTTP status of SpeechKit's table and ``{"code": N, "message": ..., "details": []}``
(400 INVALID_ARGUMENT, 401 UNAUTHENTICATED, 404 NOT_FOUND, 429 RESOURCE_EXHAUSTED, 500).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import h11
import structlog
from google.protobuf import json_format

from ivr_bridge._proto import stt_v2_pb2 as pb2
from ivr_bridge.local.async_jobs import GRPC_CODES, AudioSpec
from ivr_bridge.local.rules import SAMPLE_RATES, SessionError, check_authorization
from ivr_bridge.local.server import EmbeddedSpeechKitServer
from ivr_bridge.local.services import jobs_of

log = structlog.get_logger(__name__)

RECOGNIZE_PATH = "/speech/stt/v2/longRunningRecognize"
OPERATIONS_PREFIX = "/operations/"
MAX_BODY = 64 * 1024  # a v2 request carries a URI, never audio
HTTP_STATUS = {
    "INVALID_ARGUMENT": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "FAILED_PRECONDITION": 400,
    "RESOURCE_EXHAUSTED": 429,
    "INTERNAL": 500,
}
DESCRIPTION = "STT v2 long running recognition"

MSG_BODY = "request body must be a JSON LongRunningRecognitionRequest ({why})"
MSG_URI_ONLY = "audio.uri is required: v2 recognizes files in Object Storage only"
MSG_RATE = "sampleRateHertz must be 8000, 16000 or 48000 for LINEAR16_PCM (got {rate})"
MSG_ROUTE = "no such endpoint: {method} {path}"
MSG_TOO_LARGE = "request body too large"


def v2_audio_spec(spec: pb2.RecognitionSpec) -> AudioSpec:
    encoding = spec.audio_encoding
    if encoding == pb2.RecognitionSpec.LINEAR16_PCM:
        rate = spec.sample_rate_hertz or 48000
        if rate not in SAMPLE_RATES:
            raise SessionError("INVALID_ARGUMENT", MSG_RATE.format(rate=rate))
        return AudioSpec("LPCM", int(rate), int(spec.audio_channel_count or 1))
    if encoding == pb2.RecognitionSpec.MP3:
        return AudioSpec("MP3")
    return AudioSpec("OGG_OPUS")  # the documented default encoding


class LocalRestServer:
    """Serves the v2 REST endpoints of one embedded recognizer on a loopback port."""

    def __init__(
        self, owner: EmbeddedSpeechKitServer, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self._owner = owner
        self._jobs = jobs_of(owner)
        self._host = host
        self._port = port
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self._port}"

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._client, self._host, self._port)
        self._port = int(self._server.sockets[0].getsockname()[1])
        log.info("local_rest_started", url=self.url)
        return self._port

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await server.wait_closed()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                request, body = await self._read_request(conn, reader)
                if request is None:
                    return
                status, payload = await self._dispatch(request, body)
                data = json.dumps(payload).encode()
                headers = [("content-type", "application/json"), ("content-length", str(len(data)))]
                writer.write(conn.send(h11.Response(status_code=status, headers=headers)) or b"")
                writer.write(conn.send(h11.Data(data=data)) or b"")
                writer.write(conn.send(h11.EndOfMessage()) or b"")
                await writer.drain()
                if conn.our_state is h11.MUST_CLOSE:
                    return
                conn.start_next_cycle()
        except (h11.RemoteProtocolError, ConnectionError):
            return
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _read_request(
        self, conn: h11.Connection, reader: asyncio.StreamReader
    ) -> tuple[h11.Request | None, bytes]:
        request: h11.Request | None = None
        body = bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await reader.read(65536)
                conn.receive_data(data)
                if not data and conn.their_state is not h11.DONE:
                    return None, b""
                continue
            if isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > MAX_BODY:
                    raise h11.RemoteProtocolError(MSG_TOO_LARGE)
            elif isinstance(event, h11.EndOfMessage):
                return request, bytes(body)
            elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                return None, b""

    async def _dispatch(self, request: h11.Request, body: bytes) -> tuple[int, dict[str, Any]]:
        method = request.method.decode()
        path = request.target.decode().split("?", 1)[0]
        headers = {k.decode().lower(): v.decode() for k, v in request.headers}
        try:
            check_authorization(headers, self._owner.config.api_key)
            if method == "POST" and path == RECOGNIZE_PATH:
                return 200, self._recognize(body)
            if method == "GET" and path.startswith(OPERATIONS_PREFIX):
                job = self._jobs.get(path[len(OPERATIONS_PREFIX) :])
                description = DESCRIPTION if job.api == "v2" else "STT v3 async recognition"
                return 200, self._json(self._jobs.operation(job, description))
            raise SessionError("NOT_FOUND", MSG_ROUTE.format(method=method, path=path))
        except SessionError as exc:
            log.info("local_rest_error", path=path, status=exc.code)
            code = GRPC_CODES.get(exc.code, 13)
            return HTTP_STATUS.get(exc.code, 500), {
                "code": code,
                "message": exc.message,
                "details": [],
            }

    def _recognize(self, body: bytes) -> dict[str, Any]:
        req = pb2.LongRunningRecognitionRequest()
        try:
            json_format.ParseDict(json.loads(body or b"{}"), req)
        except (ValueError, json_format.ParseError) as exc:
            raise SessionError("INVALID_ARGUMENT", MSG_BODY.format(why=str(exc)[:120])) from exc
        if req.audio.WhichOneof("audio_source") != "uri":
            raise SessionError("INVALID_ARGUMENT", MSG_URI_ONLY)
        spec = req.config.specification
        job = self._jobs.submit(
            "v2", v2_audio_spec(spec), uri=req.audio.uri, normalize=not spec.raw_results
        )
        return self._json(self._jobs.operation(job, DESCRIPTION))

    @staticmethod
    def _json(operation: Any) -> dict[str, Any]:
        out: dict[str, Any] = json_format.MessageToDict(operation)
        out["done"] = bool(operation.done)  # proto3 JSON drops false; the docs show it
        return out
