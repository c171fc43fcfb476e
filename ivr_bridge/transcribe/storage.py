"""Object Storage uploads (S3 API, boto3) for asynchronous recognition by URI.

``upload`` puts the bytes under the configured bucket and prefix and returns a presigned GET
link valid for ``presign_ttl_s``. SpeechKit itself reads Object Storage with the service
account's rights and ignores presigned parameters; the presigned form lets any reader (the
embedded recognizer, a test server) fetch the object too. boto3 is blocking, so calls run in
a worker thread.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from ivr_bridge.config import StorageSettings
from ivr_bridge.transcribe.errors import TranscribeError

CONTENT_TYPES = {"WAV": "audio/wav", "OGG_OPUS": "audio/ogg", "MP3": "audio/mpeg"}


class ObjectStorage:
    def __init__(self, settings: StorageSettings) -> None:
        if not settings.bucket:
            raise TranscribeError("Object Storage is needed here: set storage.bucket")
        self._settings = settings
        self._client: Any = boto3.client(
            "s3",
            endpoint_url=settings.endpoint,
            region_name=settings.region,
            aws_access_key_id=settings.access_key_id or None,
            aws_secret_access_key=settings.secret_access_key or None,
            config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
        )

    def _put(self, key: str, data: bytes, content_type: str) -> str:
        s = self._settings
        self._client.put_object(Bucket=s.bucket, Key=key, Body=data, ContentType=content_type)
        url: str = self._client.generate_presigned_url(
            "get_object", Params={"Bucket": s.bucket, "Key": key}, ExpiresIn=s.presign_ttl_s
        )
        return url

    async def upload(self, name: str, data: bytes, container: str = "") -> str:
        """Store ``data`` as ``<prefix><random>/<name>``; returns a link SpeechKit can read."""
        key = f"{self._settings.prefix}{uuid.uuid4().hex}/{name}"
        content_type = CONTENT_TYPES.get(container, "application/octet-stream")
        try:
            return await asyncio.to_thread(self._put, key, data, content_type)
        except (BotoCoreError, ClientError) as exc:
            raise TranscribeError(f"{name}: upload to Object Storage failed: {exc}") from exc
