"""SpeechKit v2 long-running recognition over REST (httpx): longRunningRecognize, then
``GET /operations/{id}`` until done. v2 reads files from Object Storage only (a URI).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx

from ivr_bridge.transcribe.audio import Prepared
from ivr_bridge.transcribe.errors import GRPC_NUMBERS, HTTP_STATUS, TranscribeError, from_status

if TYPE_CHECKING:
    from ivr_bridge.recognition.credentials import Credentials

RECOGNIZE_URL = "https://transcribe.api.cloud.yandex.net/speech/stt/v2/longRunningRecognize"
OPERATIONS_URL = "https://operation.api.cloud.yandex.net/operations/"


def request_body(
    audio: Prepared,
    uri: str,
    *,
    language: str = "ru-RU",
    model: str = "general",
    normalize: bool = False,
    folder_id: str = "",
) -> dict[str, Any]:
    """The documented JSON body (camelCase; ``literature_text`` as the docs spell it)."""
    spec: dict[str, Any] = {
        "languageCode": language,
        "model": model,
        "profanityFilter": False,
        "literature_text": False,
        "rawResults": not normalize,
        "audioEncoding": "LINEAR16_PCM" if audio.container == "LPCM" else audio.container,
    }
    if audio.container == "LPCM":  # OggOpus and MP3 carry their own rate and channels
        spec["sampleRateHertz"] = audio.sample_rate
        spec["audioChannelCount"] = audio.channels
    config: dict[str, Any] = {"specification": spec}
    if folder_id:
        config["folderId"] = folder_id
    return {"config": config, "audio": {"uri": uri}}


class V2AsyncClient:
    def __init__(
        self,
        recognize_url: str = RECOGNIZE_URL,
        operations_url: str = OPERATIONS_URL,
        *,
        credentials: Credentials | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        self._recognize_url = recognize_url
        self._operations_url = operations_url
        self._credentials = credentials
        self._http = httpx.AsyncClient(timeout=timeout_s)

    async def _headers(self) -> dict[str, str]:
        md = await self._credentials.metadata() if self._credentials else []
        return dict(md)

    async def _call(self, method: str, url: str, body: dict[str, Any] | None) -> dict[str, Any]:
        try:
            resp = await self._http.request(method, url, json=body, headers=await self._headers())
        except httpx.HTTPError as exc:
            raise from_status("UNAVAILABLE", type(exc).__name__) from exc
        try:
            data: dict[str, Any] = resp.json()
        except ValueError:
            data = {}
        if resp.status_code != 200:
            raise from_status(
                HTTP_STATUS.get(resp.status_code, f"HTTP {resp.status_code}"),
                str(data.get("message", "")),
            )
        return data

    async def submit(self, body: dict[str, Any]) -> str:
        op = await self._call("POST", self._recognize_url, body)
        if "id" not in op:
            raise TranscribeError("longRunningRecognize answered without an operation id")
        return str(op["id"])

    async def status(self, operation_id: str) -> dict[str, Any] | None:
        """The operation once done (None while running); TranscribeError if it failed."""
        op = await self._call("GET", self._operations_url + operation_id, None)
        if not op.get("done"):
            return None
        if "error" in op:
            err = op["error"]
            raise from_status(
                GRPC_NUMBERS.get(int(err.get("code", 13)), "INTERNAL"), err.get("message", "")
            )
        return op

    async def close(self) -> None:
        await self._http.aclose()
