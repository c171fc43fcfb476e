"""The ``ivr-bridge transcribe`` subcommand: arguments, backends, output.

Backends follow the bridge's rule: SpeechKit credentials in the config mean the cloud
(stt/operation/transcribe hosts); none means an embedded recognizer started here, with its
v2 REST front, so the command also works offline. ``[storage]`` enables uploads.
Exit status: 0 when every file was transcribed, 1 when any failed (each failure is printed
on stderr with its reason), 2 for a configuration error.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from ivr_bridge.clock import SYSTEM_CLOCK
from ivr_bridge.config import Settings, load_settings
from ivr_bridge.transcribe.results import FORMATS, render
from ivr_bridge.transcribe.runner import Options, Outcome, Progress, Transcriber
from ivr_bridge.transcribe.storage import ObjectStorage
from ivr_bridge.transcribe.v2 import V2AsyncClient
from ivr_bridge.transcribe.v3 import V3AsyncClient


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "transcribe", help="transcribe files with SpeechKit asynchronous recognition"
    )
    p.add_argument("inputs", nargs="+", metavar="FILE_OR_URI")
    p.add_argument("--api", choices=("v2", "v3"), default="v3")
    p.add_argument("--format", choices=FORMATS, default="text")
    p.add_argument("--config", help="TOML config file (credentials, [storage])")
    p.add_argument("--language", help="language code (default: the first of speechkit.languages)")
    p.add_argument("--model", help="model (default: speechkit.model)")
    p.add_argument("--rate", type=int, help="inputs are raw 16-bit LPCM at this sample rate")
    p.add_argument("--channels", type=int, default=1, help="channels of raw LPCM inputs")
    p.add_argument("--concurrency", type=int, default=4, help="files in flight at once")
    p.add_argument("--upload", action="store_true", help="v3: send through Object Storage")
    p.add_argument("--output-dir", help="write NAME.FORMAT files here instead of stdout")


@contextlib.asynccontextmanager
async def _backends(
    settings: Settings, api: str
) -> AsyncIterator[tuple[V3AsyncClient | None, V2AsyncClient | None]]:
    sk = settings.speechkit
    if sk.has_credentials or sk.endpoint:
        from ivr_bridge.recognition.credentials import credentials_from_settings

        creds = credentials_from_settings(
            api_key=sk.api_key or None,
            iam_token=sk.iam_token or None,
            service_account_key_file=sk.service_account_key_file or None,
            service_account_key_json=None,
            token_url=sk.token_url,
            clock=SYSTEM_CLOCK,
        )
        v3 = None
        if api == "v3" and sk.endpoint:  # a SpeechKit-compatible server of one's own
            v3 = V3AsyncClient(
                sk.endpoint, sk.endpoint, tls=sk.tls, credentials=creds, folder_id=sk.folder_id
            )
        elif api == "v3":
            v3 = V3AsyncClient(credentials=creds, folder_id=sk.folder_id)
        v2 = V2AsyncClient(credentials=creds) if api == "v2" else None
        try:
            yield v3, v2
        finally:
            for client in (v3, v2):
                if client is not None:
                    await client.close()
            if creds is not None:
                await creds.aclose()
        return
    from ivr_bridge.local.rest import LocalRestServer
    from ivr_bridge.local.server import EmbeddedServerConfig, EmbeddedSpeechKitServer

    embedded = EmbeddedSpeechKitServer(
        EmbeddedServerConfig(
            host=settings.embedded.host,
            engine=settings.embedded.engine,
            workers=settings.embedded.workers,
        )
    )
    await embedded.start()
    rest = LocalRestServer(embedded)
    await rest.start()
    v3c = V3AsyncClient(embedded.address, embedded.address, tls=False)
    v2c = V2AsyncClient(f"{rest.url}/speech/stt/v2/longRunningRecognize", f"{rest.url}/operations/")
    try:
        yield v3c, v2c
    finally:
        await v3c.close()
        await v2c.close()
        await rest.stop()
        await embedded.stop()


def write_outputs(outcomes: list[Outcome], fmt: str, output_dir: str | None) -> int:
    failed = 0
    for out in outcomes:
        if out.transcript is None:
            failed += 1
            print(f"error: {out.error}", file=sys.stderr)
            continue
        text = render(out.transcript, fmt)
        if output_dir:
            target = Path(output_dir) / f"{Path(out.source).name}.{fmt}"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        elif len(outcomes) > 1 and fmt == "text":
            print(f"== {out.source} ==\n{text}", end="")
        else:
            print(text, end="")
    return 1 if failed else 0


async def transcribe(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    sk = settings.speechkit
    options = Options(
        api=args.api,
        language=args.language or (sk.languages[0] if sk.languages else "ru-RU"),
        model=args.model or sk.model,
        normalize=sk.text_normalization,
        folder_id=sk.folder_id,
        concurrency=args.concurrency,
        raw_rate=args.rate,
        raw_channels=args.channels,
        upload=args.upload,
    )
    storage = ObjectStorage(settings.storage) if settings.storage.bucket else None
    async with _backends(settings, args.api) as (v3, v2):
        runner = Transcriber(options, v3=v3, v2=v2, storage=storage, progress=Progress())
        outcomes = await runner.run(args.inputs)
    return write_outputs(outcomes, args.format, args.output_dir)


def run(args: argparse.Namespace) -> int:
    return asyncio.run(transcribe(args))
