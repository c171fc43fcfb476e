"""Command line: serve | simulate | local-recognizer | demo | check-config."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import signal
import socket
import sys
from collections.abc import Coroutine
from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from ivr_bridge.config import Settings, load_settings
from ivr_bridge.errors import ConfigError
from ivr_bridge.logs import configure_logging

if TYPE_CHECKING:
    from ivr_bridge.workers import WorkerPeers

log = structlog.get_logger("ivr_bridge.cli")


def _settings(args: argparse.Namespace) -> Settings:
    settings = load_settings(getattr(args, "config", None))
    server = settings.server
    events = settings.events
    if getattr(args, "host", None):
        server = replace(server, host=args.host)
    if getattr(args, "port", None) is not None:
        server = replace(server, port=args.port)
    if getattr(args, "events_jsonl", None):
        events = replace(events, jsonl=args.events_jsonl)
    if getattr(args, "webhook", None):
        events = replace(events, webhook=args.webhook)
    return replace(settings, server=server, events=events)


# ---- serve ----------------------------------------------------------------------------


class StartupFailed(Exception):
    """The service could not start; the message is the one line the operator sees."""


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__


def _serve_all(settings: Settings) -> int:
    """``serve``: one process, or ``server.workers`` of them on one port (workers.py)."""
    from ivr_bridge.app import _listen_error
    from ivr_bridge.workers import WorkerStartFailed, serve_workers, worker_count, worker_settings

    workers = worker_count(settings.server.workers)
    loop = settings.server.event_loop
    if workers == 1:
        return run_fast(_serve(settings), loop)
    each = worker_settings(settings, workers)

    def run_worker(sock: socket.socket, peers: WorkerPeers) -> int:
        mine = each
        if peers.index > 0:  # the AudioSocket listener (its own TCP port) runs in worker 0
            mine = replace(each, server=replace(each.server, audiosocket_port=0))
        try:
            return run_fast(_serve(mine, listen_socket=sock, peers=peers), loop)
        except StartupFailed as exc:
            peers.report_failure(str(exc))
            return 2

    srv = settings.server
    try:
        return serve_workers(settings, workers, run_worker)
    except OSError as exc:
        raise StartupFailed(str(_listen_error(exc, "server", srv.host, srv.port))) from None
    except WorkerStartFailed as exc:
        raise StartupFailed(str(exc)) from None


def _settle_collector() -> None:
    """After startup: what exists now (modules, descriptors, the app) lives as long as the
    process, so the cyclic collector stops rescanning it (gc.freeze), and young-generation
    collections run every 10,000 container allocations instead of 700: calls allocate a few
    small objects per 20 ms frame and almost never make cycles."""
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)


async def _serve(
    settings: Settings,
    listen_socket: socket.socket | None = None,
    peers: WorkerPeers | None = None,
) -> int:
    from ivr_bridge.app import BridgeApp

    app = BridgeApp(settings, listen_socket=listen_socket, peers=peers)
    try:
        await app.start()
    except ConfigError as exc:
        raise StartupFailed(str(exc)) from None
    except Exception as exc:  # any other cause still gets one line, not a traceback
        raise StartupFailed(_one_line(exc)) from None
    _settle_collector()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    reopening: set[asyncio.Task[bool]] = set()

    def on_sighup() -> None:
        # logrotate's signal: reopen the event files; never a reason to end calls.
        log.info("sighup_received")
        task = asyncio.create_task(app.reopen_sinks())
        reopening.add(task)
        task.add_done_callback(reopening.discard)

    if sys.platform != "win32":  # asyncio has no signal handlers on Windows
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(signal.SIGHUP, on_sighup)
    log.info("serving", url=app.url(), health=app.url("/healthz").replace("ws://", "http://"))
    await stop.wait()
    log.info("shutdown_requested", drain_timeout_s=settings.server.drain_timeout_s)
    await app.stop(settings.server.drain_timeout_s)
    return 0


# ---- simulate -------------------------------------------------------------------------


async def _simulate(args: argparse.Namespace) -> int:
    from ivr_bridge.simulate import ENCODERS, simulate_call
    from ivr_bridge.simulators.base import ClientAuth

    if args.dialect not in ENCODERS:
        print(f"no simulator for dialect {args.dialect!r}: {sorted(ENCODERS)}", file=sys.stderr)
        return 2

    params = dict(item.split("=", 1) for item in args.param or [])
    follower: asyncio.Task[int] | None = None
    if args.events_url:
        # Print the bridge's events for this call as they happen (GET /events).
        import uuid

        from ivr_bridge.events_client import SIM_TAG, follow_tagged_call

        token = args.events_token or os.environ.get("IVR_BRIDGE_EVENTS_TOKEN", "")
        params[SIM_TAG] = uuid.uuid4().hex[:12]
        subscribed = asyncio.Event()
        follower = asyncio.create_task(
            follow_tagged_call(
                args.events_url, token=token, tag=params[SIM_TAG], subscribed=subscribed
            )
        )
        waiter = asyncio.create_task(subscribed.wait())
        await asyncio.wait([follower, waiter], timeout=10, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
    secrets = {
        key: value
        for key, value in (
            ("auth_token", args.auth_token),
            ("token", args.token),
            ("username", args.username),
            ("password", args.password),
        )
        if value
    }
    if args.auth == "audiohook":  # the bridge's layout: API key -> base64 client secret
        secrets = {args.api_key or "": args.client_secret or ""}
    options = {"probe": True} if args.probe else {}
    if args.probe and args.dialect != "audiohook":
        print("--probe is AudioHook's connection probe: use --dialect audiohook", file=sys.stderr)
        return 2
    report = await simulate_call(
        args.url,
        args.wav,
        fast=args.fast,
        gap_at_s=args.gap_at,
        gap_s=args.gap or 0.0,
        custom_parameters=params,
        tracks=args.tracks,
        dialect=args.dialect,
        auth=ClientAuth(args.auth, secrets),
        encoder_options=options,
    )
    if follower is not None:
        try:
            await asyncio.wait_for(follower, 30)
        except Exception as exc:  # the events are extra: the report still prints
            print(f"events: not followed ({_one_line(exc)})", file=sys.stderr)
    print(report.format_report())
    return 0


# ---- local recognizer -----------------------------------------------------------------


async def _local_recognizer(args: argparse.Namespace) -> int:
    from ivr_bridge.local.server import EmbeddedServerConfig, default_workers, serve_forever

    workers = default_workers() if args.workers is None else args.workers
    try:
        await serve_forever(
            EmbeddedServerConfig(
                host=args.host,
                port=args.port,
                api_key=args.api_key or None,
                engine=args.engine,
                workers=workers,
            ),
            rest_port=args.rest_port,
        )
    except OSError as exc:
        raise StartupFailed(f"--host/--port/--rest-port: {_one_line(exc)}") from None
    return 0


# ---- loadtest -------------------------------------------------------------------------


async def _loadtest(args: argparse.Namespace) -> int:
    from ivr_bridge.loadtest import LoadTestOptions, run_loadtest
    from ivr_bridge.simulate import ENCODERS

    if args.dialect not in ENCODERS:
        print(f"no simulator for dialect {args.dialect!r}: {sorted(ENCODERS)}", file=sys.stderr)
        return 2
    options = LoadTestOptions(
        calls=args.calls,
        duration_s=args.duration,
        ramp_s=args.ramp,
        dialect=args.dialect,
        url=args.url or "",
        bridge_pid=args.bridge_pid or 0,
    )
    live = sys.stderr.isatty() and not args.json

    def progress(line: str) -> None:
        # One line rewritten in place on a terminal; nothing when piped (the report suffices).
        if live:
            print(f"\r{line}", end="", file=sys.stderr, flush=True)

    report = await run_loadtest(options, progress)
    if live:
        print(file=sys.stderr)
    print(json.dumps(report.as_json(), indent=2) if args.json else report.format())
    return 0 if report.calls_failed == 0 else 1


# ---- demo -----------------------------------------------------------------------------


def sample_call_path() -> Path:
    return Path(str(resources.files("ivr_bridge") / "data" / "sample_call.wav"))


async def _demo(args: argparse.Namespace) -> int:
    from ivr_bridge.app import BridgeApp
    from ivr_bridge.clock import SYSTEM_CLOCK
    from ivr_bridge.config import EmbeddedSettings, ServerSettings, SpeechKitSettings
    from ivr_bridge.events.console import CallbackSink, ConsoleSink
    from ivr_bridge.model import UtteranceEvent
    from ivr_bridge.simulate import simulate_call
    from ivr_bridge.wer import word_error_rate

    wav = Path(args.wav) if args.wav else sample_call_path()
    settings = Settings(
        server=ServerSettings(host="127.0.0.1", port=0),
        speechkit=SpeechKitSettings(languages=("en-US",)),
        embedded=EmbeddedSettings(port=0),
    )
    events: list[UtteranceEvent] = []
    ended = asyncio.Event()

    def collect(event: UtteranceEvent) -> None:
        events.append(event)
        if event.type == "call_ended":
            ended.set()

    clock = SYSTEM_CLOCK
    app = BridgeApp(
        settings,
        clock=clock,
        sinks=[ConsoleSink(include_partials=not args.no_partials), CallbackSink(collect)],
    )
    print(f"ivr-bridge demo: starting the bridge and the embedded recognizer ({wav.name})")
    await app.start()
    pace = "fast" if args.fast else "in real time"
    print(f"bridge listening at {app.url()}; playing the call {pace}")
    print("time      chan   event")
    try:
        report = await simulate_call(app.url(), wav, fast=args.fast)
        with contextlib.suppress(TimeoutError):
            await clock.wait_for(ended.wait(), 20)
    finally:
        await app.stop()
    finals = [e for e in events if e.type == "final"]
    ended_data: dict[str, Any] = next((dict(e.data) for e in events if e.type == "call_ended"), {})
    print()
    print("summary")
    print(f"  audio sent by the simulated PBX: {report.audio_ms / 1000:.1f} s")
    print(f"  events: {len(events)} ({', '.join(_counts(events))})")
    print(f"  utterances (finals): {len(finals)}")
    for e in finals:
        span = f"{e.data['start_ms'] / 1000:6.2f}-{e.data['end_ms'] / 1000:6.2f} s"
        print(f"    {span}  {e.data['text']}")
    if ended_data:
        d = ended_data
        print(
            f"  accounting: received {d.get('audio_ms_received')} ms,"
            f" sent {d.get('audio_ms_sent')} ms, sessions {d.get('sessions_opened')},"
            f" keepalive {d.get('keepalive_ms')} ms, errors {d.get('errors')}"
        )
    reference = wav.with_suffix(".txt")
    if reference.exists():
        ref = reference.read_text(encoding="utf-8")
        hyp = " ".join(str(e.data["text"]) for e in finals)
        wer = word_error_rate(ref, hyp)
        print(
            f"  word error rate vs {reference.name}: {wer.wer:.1%} ({wer.substitutions} sub,"
            f" {wer.deletions} del, {wer.insertions} ins / {wer.reference_words} words)"
        )
    return 0 if finals else 1


def _counts(events: list[Any]) -> list[str]:
    counts: dict[str, int] = {}
    for e in events:
        counts[e.type] = counts.get(e.type, 0) + 1
    return [f"{k} {v}" for k, v in counts.items()]


# ---- entry point ---------------------------------------------------------------------


def run_fast(main: Coroutine[Any, Any, int], event_loop: str = "uvloop") -> int:
    """asyncio.run, on uvloop when asked for and installed (Linux/macOS)."""
    if event_loop == "uvloop":
        try:
            import uvloop
        except ImportError:
            return asyncio.run(main)
        return uvloop.run(main)
    return asyncio.run(main)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ivr-bridge", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run the bridge")
    p.add_argument("--config", help="TOML config file")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--events-jsonl", help="append every event to this file as JSON lines")
    p.add_argument("--webhook", help="POST every event as JSON to this URL")

    p = sub.add_parser("simulate", help="play a WAV file as a platform's call")
    p.add_argument("--url", required=True, help="ws://HOST:PORT/twilio (the dialect's path)")
    p.add_argument("--dialect", default="twilio", help="platform to simulate (default twilio)")
    p.add_argument(
        "--auth",
        default="none",
        choices=("none", "signature", "token", "basic", "audiohook"),
        help="authenticate the upgrade as the platform does",
    )
    p.add_argument("--api-key", help="AudioHook X-API-KEY (--auth audiohook)")
    p.add_argument("--client-secret", help="AudioHook base64 client secret (--auth audiohook)")
    p.add_argument("--probe", action="store_true", help="AudioHook: play the connection probe")
    p.add_argument("--auth-token", help="Twilio auth token (--auth signature)")
    p.add_argument("--token", help="shared token (--auth token)")
    p.add_argument("--username", help="basic-auth user (--auth basic)")
    p.add_argument("--password", help="basic-auth password (--auth basic)")
    p.add_argument("wav")
    p.add_argument("--fast", action="store_true", help="send as fast as possible")
    p.add_argument("--gap-at", type=float, help="stop sending media at this second")
    p.add_argument("--gap", type=float, help="for this many seconds")
    p.add_argument("--tracks", choices=("inbound", "both"), default="inbound")
    p.add_argument("--param", action="append", help="custom parameter NAME=VALUE")
    p.add_argument("--events-url", help="also print this call's events: ws://HOST:PORT/events")
    p.add_argument("--events-token", help="its token (default: IVR_BRIDGE_EVENTS_TOKEN)")

    p = sub.add_parser("local-recognizer", help="run the embedded SpeechKit-compatible recognizer")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=50051)
    p.add_argument("--api-key", default="", help="require this API key")
    p.add_argument("--engine", default="pocketsphinx")
    p.add_argument(
        "--workers", type=int, help="engine worker processes (default: one per core; 0: none)"
    )
    p.add_argument(
        "--rest-port",
        type=int,
        help="also serve SpeechKit v2 REST (longRunningRecognize, operations) on this port",
    )

    p = sub.add_parser("loadtest", help="many concurrent simulated calls, measured")
    p.add_argument("--dialect", default="twilio", help="platform to simulate (default twilio)")
    p.add_argument("--calls", type=int, default=10)
    p.add_argument("--duration", type=float, default=10.0, help="seconds per call")
    p.add_argument("--ramp", type=float, default=2.0, help="seconds over which calls start")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--url", help="a running bridge (ws://HOST:PORT) instead of starting one")
    p.add_argument("--bridge-pid", type=int, help="that bridge's pid, for its CPU and memory")

    p = sub.add_parser("demo", help="stream the bundled sample call through the bridge")
    p.add_argument("--fast", action="store_true")
    p.add_argument("--wav", help="another WAV file to play")
    p.add_argument("--no-partials", action="store_true")

    p = sub.add_parser("events", help="tail a bridge's live events (GET /events)")
    p.add_argument("--url", required=True, help="ws://HOST:PORT/events")
    p.add_argument("--call", help="only this call_id (exits after its call_ended)")
    p.add_argument("--types", default="", help="comma-separated event types (default: all)")
    p.add_argument(
        "--token",
        help="bearer token (events.api_token or api_read_token); default: the "
        "IVR_BRIDGE_EVENTS_TOKEN environment variable",
    )

    p = sub.add_parser("check-config", help="validate a config file and print it (secrets hidden)")
    p.add_argument("--config")

    from ivr_bridge.transcribe.cli import add_parser as add_transcribe

    add_transcribe(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "check-config":
            settings = _settings(args)
            _check_engine(settings)
            configure_logging(settings.logging.level, settings.logging.format)
            print(json.dumps(_public(settings), indent=2))
            return 0
        if args.command == "serve":
            settings = _settings(args)
            configure_logging(settings.logging.level, settings.logging.format)
            return _serve_all(settings)
        if args.command == "demo":
            configure_logging("warning", "console")
            return asyncio.run(_demo(args))
        if args.command == "transcribe":
            from ivr_bridge.transcribe.cli import run as run_transcribe

            configure_logging("warning", "console")
            return run_transcribe(args)
        if args.command == "events":
            return asyncio.run(_events(args))
        configure_logging("info", "console")
        if args.command == "simulate":
            return asyncio.run(_simulate(args))
        if args.command == "loadtest":
            return run_fast(_loadtest(args))
        return asyncio.run(_local_recognizer(args))
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    except StartupFailed as exc:
        print(f"cannot start: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


async def _events(args: argparse.Namespace) -> int:
    from ivr_bridge.events_client import TailRefused, tail_events

    token = args.token or os.environ.get("IVR_BRIDGE_EVENTS_TOKEN", "")
    if not token:
        print("events: give --token or set IVR_BRIDGE_EVENTS_TOKEN", file=sys.stderr)
        return 2
    types = [t.strip() for t in args.types.split(",") if t.strip()]
    try:
        await tail_events(args.url, token=token, call_id=args.call, types=types)
    except TailRefused as exc:
        print(f"events: {exc}", file=sys.stderr)
        return 1
    return 0


def _check_engine(settings: Settings) -> None:
    """check-config catches an unknown embedded engine too, not only ``serve``."""
    from ivr_bridge.app import choose_recognizer
    from ivr_bridge.local.engine import available_engines

    engine = settings.embedded.engine
    if choose_recognizer(settings).embedded and engine not in available_engines():
        raise ConfigError(
            "embedded.engine",
            f"unknown engine {engine!r}; available: {', '.join(available_engines())}",
        )


def _public(settings: Settings) -> dict[str, Any]:
    from dataclasses import asdict

    data = asdict(settings)
    for dialect in data["dialects"].values():
        dialect["secrets"] = dict.fromkeys(dialect["secrets"], "[set]")
    for section in data.values():
        for key in list(section):
            secret = any(word in key for word in ("key", "token", "secret"))
            if secret and section[key] and key != "service_account_key_file":
                section[key] = "[set]"
    return data
