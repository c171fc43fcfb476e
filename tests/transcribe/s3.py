"""A local S3-compatible server (moto's server mode) on a free loopback port, per test."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest
from moto.server import ThreadedMotoServer

from ivr_bridge.config import StorageSettings

BUCKET = "ivr-test"


@pytest.fixture
def s3_settings() -> Iterator[StorageSettings]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    settings = StorageSettings(
        endpoint=f"http://{host}:{port}",
        region="us-east-1",
        bucket=BUCKET,
        prefix="calls/",
        access_key_id="test-key-id",
        secret_access_key="test-secret",
        presign_ttl_s=600,
    )
    client = boto3.client(
        "s3",
        endpoint_url=settings.endpoint,
        region_name=settings.region,
        aws_access_key_id=settings.access_key_id,
        aws_secret_access_key=settings.secret_access_key,
    )
    client.create_bucket(Bucket=BUCKET)
    try:
        yield settings
    finally:
        server.stop()
