"""``ivr-bridge transcribe`` end to end, offline: embedded recognizer (v3 AsyncRecognizer,
operations, v2 REST), a local S3 server (moto) for Object Storage, exact "tones" transcripts.
"""

from __future__ import annotations

import io
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import ivr_bridge.local.tone_engine  # noqa: F401  (registers the "tones" engine)
from ivr_bridge.local.rest import LocalRestServer
from ivr_bridge.local.server import EmbeddedServerConfig, EmbeddedSpeechKitServer
from ivr_bridge.local.services import jobs_of
from ivr_bridge.recognition.credentials import ApiKeyCredentials
from ivr_bridge.transcribe.runner import Options, Progress, Transcriber
from ivr_bridge.transcribe.storage import ObjectStorage
from ivr_bridge.transcribe.v2 import V2AsyncClient
from ivr_bridge.transcribe.v3 import V3AsyncClient
from tests.transcribe.audio_files import LEFT, encode, mono_wav, pcm, stereo_wav
from tests.transcribe.s3 import s3_settings  # noqa: F401  (fixture)

KEY = "async-test-key"
LEFT_TEXT = "alpha lima whiskey foxtrot quebec one"
RIGHT_TEXT = "kilo victor six"


class Embedded:
    def __init__(self, rec: EmbeddedSpeechKitServer, rest: LocalRestServer) -> None:
        self.rec = rec
        self.rest = rest

    def transcriber(
        self, api: str, storage: ObjectStorage | None = None, key: str = KEY, **opts: Any
    ) -> tuple[Transcriber, io.StringIO]:
        creds = ApiKeyCredentials(key)
        v3 = V3AsyncClient(self.rec.address, self.rec.address, tls=False, credentials=creds)
        v2 = V2AsyncClient(
            f"{self.rest.url}/speech/stt/v2/longRunningRecognize",
            f"{self.rest.url}/operations/",
            credentials=creds,
        )
        self.clients.extend([v3, v2])
        log = io.StringIO()
        options = Options(api=api, language="en-US", poll_initial_s=0.05, poll_max_s=0.2, **opts)
        return Transcriber(options, v3=v3, v2=v2, storage=storage, progress=Progress(log)), log

    clients: list[Any] = []


@pytest.fixture
async def embedded() -> AsyncIterator[Embedded]:
    rec = EmbeddedSpeechKitServer(EmbeddedServerConfig(port=0, engine="tones", api_key=KEY))
    await rec.start()
    rest = LocalRestServer(rec)
    await rest.start()
    env = Embedded(rec, rest)
    env.clients = []
    try:
        yield env
    finally:
        for client in env.clients:
            await client.close()
        await rest.stop()
        await rec.stop(grace=0.2)


def write(tmp_path: Path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


async def test_v3_inline_mono_and_stereo_several_files_at_once(
    embedded: Embedded, tmp_path: Path
) -> None:
    runner, log = embedded.transcriber("v3", concurrency=2)
    files = [
        write(tmp_path, "mono.wav", mono_wav()),
        write(tmp_path, "stereo.wav", stereo_wav()),
        write(tmp_path, "speech.ogg", encode(pcm(LEFT, 16000), 16000, "OGG", "OPUS")),
        write(tmp_path, "speech.raw", pcm(LEFT).tobytes()),
    ]
    mono, stereo, *_ = await runner.run(files)
    assert mono.transcript is not None and mono.transcript.channel_text(0) == LEFT_TEXT
    words = [w.text for p in mono.transcript.phrases for w in p.words]
    assert words == LEFT_TEXT.split()
    assert stereo.transcript is not None and stereo.transcript.channels == 2
    assert stereo.transcript.channel_text(0) == LEFT_TEXT
    assert stereo.transcript.channel_text(1) == RIGHT_TEXT
    assert "submitted (operation " in log.getvalue() and "done: " in log.getvalue()
    assert "alpha" not in log.getvalue()  # progress shows states, never transcripts


async def test_raw_lpcm_with_its_rate(embedded: Embedded, tmp_path: Path) -> None:
    runner, _ = embedded.transcriber("v3", raw_rate=8000)
    (out,) = await runner.run([write(tmp_path, "speech.raw", pcm(LEFT).tobytes())])
    assert out.transcript is not None and out.transcript.channel_text(0) == LEFT_TEXT


async def test_v3_through_object_storage(
    embedded: Embedded,
    tmp_path: Path,
    s3_settings: Any,  # noqa: F811
) -> None:
    runner, log = embedded.transcriber("v3", storage=ObjectStorage(s3_settings), upload=True)
    (out,) = await runner.run([write(tmp_path, "stereo.wav", stereo_wav())])
    assert out.transcript is not None, out.error
    assert out.uri.startswith(s3_settings.endpoint + "/ivr-test/calls/")
    assert out.transcript.channel_text(1) == RIGHT_TEXT
    assert "uploading" in log.getvalue()


async def test_v2_long_running_over_rest_with_object_storage(
    embedded: Embedded,
    tmp_path: Path,
    s3_settings: Any,  # noqa: F811
) -> None:
    runner, _ = embedded.transcriber("v2", storage=ObjectStorage(s3_settings))
    wav, mp3 = await runner.run(
        [
            write(tmp_path, "stereo.wav", stereo_wav()),
            write(tmp_path, "speech.mp3", encode(pcm(LEFT, 16000), 16000, "MP3", "MPEG_LAYER_III")),
        ]
    )
    assert wav.transcript is not None, wav.error
    assert wav.transcript.channel_text(0) == LEFT_TEXT
    assert wav.transcript.channel_text(1) == RIGHT_TEXT
    assert wav.transcript.phrases[0].words[0].text == "alpha"
    # MP3 is lossy: the tones survive it, whatever the exact word boundaries.
    assert mp3.transcript is not None, mp3.error
    assert mp3.transcript.channel_text(0) == LEFT_TEXT


async def test_v2_needs_object_storage(embedded: Embedded, tmp_path: Path) -> None:
    runner, _ = embedded.transcriber("v2")
    (out,) = await runner.run([write(tmp_path, "a.wav", mono_wav())])
    assert out.transcript is None and "needs Object Storage" in out.error


async def test_documented_errors_have_clear_messages(embedded: Embedded, tmp_path: Path) -> None:
    good = write(tmp_path, "a.wav", mono_wav())
    runner, _ = embedded.transcriber("v3", key="wrong-key")
    (out,) = await runner.run([good])
    assert out.error.startswith("authentication failed") and "invalid API key" in out.error
    runner, _ = embedded.transcriber("v2", key="wrong-key")
    (out,) = await runner.run(["http://127.0.0.1:9/calls/a.wav"])
    assert out.error.startswith("authentication failed")
    (out,) = await embedded.transcriber("v3")[0].run([write(tmp_path, "t.txt", b"not audio")])
    assert "not a readable WAV, OggOpus or MP3 file" in out.error
    (out,) = await embedded.transcriber("v3")[0].run(["http://127.0.0.1:9/calls/a.flac"])
    assert "cannot tell the format" in out.error
    # The URI cannot be fetched: the operation ends with an error.
    (out,) = await embedded.transcriber("v3")[0].run(["http://127.0.0.1:9/calls/a.wav"])
    assert out.error.startswith("SpeechKit rejected the request") and "cannot fetch" in out.error
    jobs_of(embedded.rec).requests_per_hour = 0
    (out,) = await embedded.transcriber("v3")[0].run([good])
    assert out.error.startswith("quota exceeded") and "per hour" in out.error


async def test_declared_format_that_does_not_decode_fails_the_operation(
    embedded: Embedded,
) -> None:
    from ivr_bridge.transcribe.audio import Prepared
    from ivr_bridge.transcribe.errors import TranscribeError
    from ivr_bridge.transcribe.v3 import recognize_request

    creds_v3 = V3AsyncClient(
        embedded.rec.address, embedded.rec.address, tls=False, credentials=ApiKeyCredentials(KEY)
    )
    embedded.clients.append(creds_v3)
    op_id = await creds_v3.submit(recognize_request(Prepared(b"RIFF....garbage", "WAV", 0, 1)))
    with pytest.raises(TranscribeError, match="does not match the declared format"):
        for _ in range(100):
            if await creds_v3.status(op_id):
                break
    with pytest.raises(TranscribeError, match="operation not found"):
        await creds_v3.status("no-such-operation")


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    """The real command in its own process (its logging setup must not leak into ours)."""
    return subprocess.run(
        [sys.executable, "-m", "ivr_bridge", "transcribe", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_cli_offline_end_to_end(
    tmp_path: Path,
    s3_settings: Any,  # noqa: F811
) -> None:
    config = tmp_path / "bridge.toml"
    config.write_text(
        '[embedded]\nengine = "tones"\n[speechkit]\nlanguages = ["en-US"]\n'
        f'[storage]\nendpoint = "{s3_settings.endpoint}"\nregion = "us-east-1"\n'
        f'bucket = "{s3_settings.bucket}"\naccess_key_id = "k"\nsecret_access_key = "s"\n'
    )
    wav = write(tmp_path, "call.wav", stereo_wav())
    out = cli(wav, "--config", str(config), "--api", "v2", "--format", "vtt")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("WEBVTT\n\n00:00:00.000 --> ")
    assert "[0] alpha lima whiskey" in out.stdout and "[1] kilo victor six" in out.stdout
    assert "call.wav: done" in out.stderr
    target = tmp_path / "out"
    out = cli(wav, "--config", str(config), "--format", "json", "--output-dir", str(target))
    assert out.returncode == 0, out.stderr
    assert '"text": "kilo victor six"' in (target / "call.wav.json").read_text()
    out = cli(str(tmp_path / "missing.wav"), "--config", str(config))
    assert out.returncode == 1 and "cannot read" in out.stderr
