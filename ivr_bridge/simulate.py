"""Play audio into a bridge as a platform's call: the PBX side, for demos, tests and load.

The platform is a client encoder (:class:`~ivr_bridge.simulators.base.ClientEncoder`): it
frames the audio, DTMF and goodbye in its dialect and authenticates the upgrade as that
platform does. :data:`ENCODERS` lists one per dialect this build simulates (``ivr-bridge
simulate --dialect NAME``); Twilio is the default.

Frames go out on an absolute schedule (frame ``i`` is due at ``start + i * frame_ms`` on the
injected clock), so pacing never drifts however long the call; ``fast`` drops the pacing but
still yields to the event loop. A gap stops media for a while without losing audio and moves
the media timestamps on, which is what the bridge sees when a platform goes quiet or a call
is on hold. Twilio's framing comes from
:class:`~ivr_bridge.simulators.twilio.TwilioStreamEncoder`, so the simulator and the
dialect's tests agree on what Twilio sends; the other platforms' from their dialect's client
(``ivr_bridge/dialects/*_client.py``) or :mod:`ivr_bridge.simulators.audiohook`.

An encoder may offer optional hooks, used when present: ``subprotocol`` (requested on the
upgrade: jambonz, mod_audio_fork), ``closes_socket`` (the platform's goodbye is closing the
socket, so the simulator closes at once instead of waiting for the bridge), ``ready()`` (wait
after the opening frames until the bridge answered, AudioHook's ``opened``), ``pending()``
(frames due besides the step's own: pings, ``resumed``), ``hold()`` (frames before a gap:
AudioHook's ``paused``) and ``sends_audio`` (False for AudioHook's connection probe).
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from ivr_bridge.audio.codecs import resample, samples_for_ms, silence
from ivr_bridge.audio.wav import read_wav
from ivr_bridge.clock import SYSTEM_CLOCK, Clock
from ivr_bridge.dialects.asterisk_client import AsteriskClient
from ivr_bridge.dialects.freeswitch_client import AudioForkClient
from ivr_bridge.dialects.vonage_client import VonageClient
from ivr_bridge.simulators.audiohook import AudioHookEncoder
from ivr_bridge.simulators.base import ClientAuth, ClientEncoder, Frame
from ivr_bridge.simulators.twilio import SAMPLE_RATE, TwilioStreamEncoder
from ivr_bridge.simulators.twilio_family import (
    ExotelStreamEncoder,
    PlivoStreamEncoder,
    SignalWireStreamEncoder,
    TelnyxStreamEncoder,
)

_TRACK_SETS = {"inbound": ("inbound",), "both": ("inbound", "outbound")}

# name -> encoder class, each taking tracks=, custom_parameters= and auth= keywords.
ENCODERS: dict[str, Callable[..., ClientEncoder]] = {
    "twilio": TwilioStreamEncoder,
    "signalwire": SignalWireStreamEncoder,
    "telnyx": TelnyxStreamEncoder,
    "plivo": PlivoStreamEncoder,
    "exotel": ExotelStreamEncoder,
    "audiohook": AudioHookEncoder,
    "asterisk": AsteriskClient,
    "freeswitch": functools.partial(AudioForkClient, "freeswitch"),
    "jambonz": functools.partial(AudioForkClient, "jambonz"),
    "vonage": VonageClient,
}
DISPLAY_NAMES = {"twilio": "Twilio", "signalwire": "SignalWire", "telnyx": "Telnyx",
                 "plivo": "Plivo", "exotel": "Exotel", "audiohook": "Genesys AudioHook",
                 "asterisk": "Asterisk", "freeswitch": "FreeSWITCH", "jambonz": "jambonz",
                 "vonage": "Vonage"}  # fmt: skip


def _hook_frames(encoder: ClientEncoder, name: str) -> list[Frame]:
    """Frames from an optional encoder hook (``pending``, ``hold``); none when absent."""
    hook = getattr(encoder, name, None)
    return list(hook()) if callable(hook) else []


def _ready(encoder: ClientEncoder) -> bool:
    hook = getattr(encoder, "ready", None)
    return bool(hook()) if callable(hook) else True


def make_encoder(
    dialect: str,
    *,
    tracks: str = "inbound",
    custom_parameters: Mapping[str, str] | None = None,
    auth: ClientAuth | None = None,
    **kwargs: Any,
) -> ClientEncoder:
    """A fresh encoder for ``dialect`` (a name in :data:`ENCODERS`)."""
    if dialect not in ENCODERS:
        raise ValueError(f"no simulator for dialect {dialect!r} (have: {sorted(ENCODERS)})")
    if tracks not in _TRACK_SETS:
        raise ValueError("tracks must be 'inbound' or 'both'")
    return ENCODERS[dialect](
        tracks=_TRACK_SETS[tracks], custom_parameters=custom_parameters, auth=auth, **kwargs
    )


@dataclass
class SimulationReport:
    """What the simulated PBX sent and how the bridge ended the call."""

    url: str
    call_sid: str  # the platform's call id
    stream_sid: str  # the platform's stream id
    tracks: tuple[str, ...]
    fast: bool
    dialect: str = "twilio"
    frames_sent: int = 0  # inbound media frames
    outbound_frames_sent: int = 0
    audio_ms: int = 0  # inbound audio sent, including trailing silence
    bytes_sent: int = 0  # encoded audio payload bytes, all tracks
    messages_sent: int = 0  # every text frame, connected and stop included
    dtmf_sent: int = 0
    gap_ms: int = 0
    elapsed_s: float = 0.0  # on the simulation clock (scaled time under ScaledClock)
    wall_s: float = 0.0  # real seconds
    max_lag_ms: float = 0.0  # worst lateness behind the pacing schedule, clock time
    stop_sent: bool = False
    close_code: int | None = None  # as received from the bridge; 1006 if none arrived
    close_reason: str = ""
    closed_by_server: bool = False
    received: list[str] = field(default_factory=list)  # text frames from the bridge
    binary_received: int = 0

    @property
    def text_frames_received(self) -> int:
        return len(self.received)

    def format_report(self) -> str:
        """A few lines for people: what was sent, how it was paced, how it ended."""
        pacing = (
            "as fast as possible" if self.fast else f"real time, max lag {self.max_lag_ms:.1f} ms"
        )
        closer = "bridge" if self.closed_by_server else "simulator"
        lines = [
            f"simulated {DISPLAY_NAMES.get(self.dialect, self.dialect)} call"
            f" {self.call_sid} -> {self.url}",
            f"  stream {self.stream_sid}, tracks: {', '.join(self.tracks)}",
            f"  media: {self.frames_sent} frames, {self.audio_ms / 1000:.2f} s of audio,"
            f" {self.bytes_sent} bytes ({self.outbound_frames_sent} outbound frames)",
            f"  messages sent: {self.messages_sent} (dtmf: {self.dtmf_sent},"
            f" stop: {'yes' if self.stop_sent else 'no'})",
            f"  gap: {self.gap_ms / 1000:.2f} s; pacing: {pacing}",
            f"  took {self.elapsed_s:.2f} s on the clock ({self.wall_s:.2f} s real)",
            f"  closed by the {closer}: {self.close_code} {self.close_reason!r}".rstrip(),
            f"  received from the bridge: {self.text_frames_received} text frames,"
            f" {self.binary_received} binary",
        ]
        return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class _Step:
    at_s: float  # media time: seconds of audio before this step, gaps excluded
    order: int  # tie-break at the same instant: gap, then dtmf, then media
    kind: str  # "gap" | "dtmf" | "media"
    track: str = ""
    payload: bytes = b""
    digit: str = ""


def _plan(  # noqa: PLR0917
    pcm: bytes,
    frame_samples: int,
    frame_ms: int,
    tracks: tuple[str, ...],
    dtmf: Sequence[tuple[float, str]],
    gap_at_s: float | None,
    gap_s: float,
) -> tuple[Iterator[_Step], float]:
    """The call as steps in media time, generated lazily (an hour of audio is 180k frames)."""
    frame_bytes = frame_samples * 2
    frames = -(-len(pcm) // frame_bytes)
    end_s = frames * frame_ms / 1000
    specials = [_Step(min(max(at, 0.0), end_s), 1, "dtmf", digit=d) for at, d in dtmf]
    if gap_at_s is not None and gap_s > 0:
        specials.append(_Step(min(max(gap_at_s, 0.0), end_s), 0, "gap"))
    specials.sort(key=lambda s: (s.at_s, s.order))
    quiet = silence(frame_samples)

    def steps() -> Iterator[_Step]:
        pending = iter(specials)
        special = next(pending, None)
        for i in range(frames):
            at = i * frame_ms / 1000
            while special is not None and special.at_s <= at:
                yield special
                special = next(pending, None)
            frame = pcm[i * frame_bytes : (i + 1) * frame_bytes]
            frame += bytes(frame_bytes - len(frame))  # platforms send whole frames
            yield _Step(at, 2, "media", "inbound", frame)
            if "outbound" in tracks:
                yield _Step(at, 3, "media", "outbound", quiet)
        while special is not None:
            yield special
            special = next(pending, None)

    return steps(), end_s


async def simulate_pcm(
    url: str,
    pcm: bytes,
    *,
    fast: bool = False,
    gap_at_s: float | None = None,
    gap_s: float = 0.0,
    clock: Clock = SYSTEM_CLOCK,
    custom_parameters: Mapping[str, str] | None = None,
    tracks: str = "inbound",
    dtmf: Sequence[tuple[float, str]] = (),
    trailing_silence_s: float = 1.0,
    close_timeout_s: float = 30.0,
    open_timeout_s: float = 10.0,
    encoder: ClientEncoder | None = None,
    dialect: str = "twilio",
    auth: ClientAuth | None = None,
    sample_rate: int = SAMPLE_RATE,
) -> SimulationReport:
    """Send PCM16 mono audio (at ``sample_rate``) as one call and wait for the bridge's close.

    The call is framed by ``encoder``, or a fresh one for ``dialect`` authenticating with
    ``auth``. ``dtmf`` holds (media seconds, digit) pairs. ``gap_at_s``/``gap_s`` pause media
    at that point of the audio for that long (on the clock, also when ``fast``: a gap is about
    time). ``trailing_silence_s`` of silence follows the audio so the recognizer can finish the
    last utterance, as a real caller's line would stay open.
    """
    if tracks not in _TRACK_SETS:
        raise ValueError("tracks must be 'inbound' or 'both'")
    if gap_s < 0 or trailing_silence_s < 0:
        raise ValueError("durations must not be negative")
    track_set = _TRACK_SETS[tracks]
    if encoder is None:
        encoder = make_encoder(
            dialect, tracks=tracks, custom_parameters=custom_parameters, auth=auth
        )
    elif encoder.tracks != track_set:
        raise ValueError("the encoder's tracks differ from tracks")
    rate = encoder.sample_rate
    if getattr(encoder, "sends_audio", True) is False:
        pcm, trailing_silence_s, dtmf, gap_at_s = b"", 0.0, (), None  # AudioHook's probe
    trailing = silence(samples_for_ms(trailing_silence_s * 1000, sample_rate))
    audio = resample(pcm + trailing, sample_rate, rate) if rate != sample_rate else pcm + trailing
    frame_samples = rate * encoder.frame_ms // 1000
    steps, end_s = _plan(audio, frame_samples, encoder.frame_ms, track_set, dtmf, gap_at_s, gap_s)
    report = SimulationReport(
        url=url,
        call_sid=encoder.call_id,
        stream_sid=encoder.stream_id,
        tracks=track_set,
        fast=fast,
        dialect=encoder.dialect,
    )
    dial_url, headers = encoder.upgrade(url)
    subprotocol = getattr(encoder, "subprotocol", None)
    closes_socket = bool(getattr(encoder, "closes_socket", False))
    wall0, clock0 = time.perf_counter(), clock.now()
    async with connect(
        dial_url,
        compression=None,
        open_timeout=open_timeout_s,
        additional_headers=headers,
        subprotocols=[Subprotocol(subprotocol)] if subprotocol else None,
    ) as ws:
        progress = asyncio.Event()
        reader = asyncio.create_task(_read(ws, encoder, report, progress))
        pacing = _Pacing(clock=clock, fast=fast, gap_s=gap_s, reply_timeout_s=open_timeout_s)
        try:
            said_goodbye = await _send_all(ws, encoder, steps, end_s, report, pacing, progress)
            if said_goodbye and not closes_socket:
                await _await_close(ws, reader, clock, close_timeout_s)
            elif report.stop_sent:
                # The platform's goodbye is closing the socket (Plivo, Asterisk, jambonz...).
                await ws.close(1000, "stream ended")
                await asyncio.gather(reader, return_exceptions=True)
        finally:
            if not reader.done():
                reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
        close = ws.protocol.close_rcvd
        report.close_code = close.code if close is not None else 1006
        report.close_reason = close.reason if close is not None else ""
        report.closed_by_server = bool(ws.protocol.close_rcvd_then_sent)
    report.elapsed_s = clock.now() - clock0
    report.wall_s = time.perf_counter() - wall0
    return report


async def simulate_call(
    url: str,
    wav_path: str | Path,
    *,
    fast: bool = False,
    gap_at_s: float | None = None,
    gap_s: float = 0.0,
    clock: Clock = SYSTEM_CLOCK,
    custom_parameters: Mapping[str, str] | None = None,
    tracks: str = "inbound",
    dtmf: Sequence[tuple[float, str]] = (),
    trailing_silence_s: float = 1.0,
    close_timeout_s: float = 30.0,
    dialect: str = "twilio",
    auth: ClientAuth | None = None,
    encoder_options: Mapping[str, Any] | None = None,
) -> SimulationReport:
    """Play any WAV file as a call in ``dialect``; see :func:`simulate_pcm`.
    ``encoder_options`` go to the dialect's encoder (AudioHook: ``probe=True``)."""
    encoder = make_encoder(
        dialect,
        tracks=tracks,
        custom_parameters=custom_parameters,
        auth=auth,
        **dict(encoder_options or {}),
    )
    pcm = await asyncio.to_thread(read_wav, wav_path, encoder.sample_rate)
    return await simulate_pcm(
        url,
        pcm,
        fast=fast,
        gap_at_s=gap_at_s,
        gap_s=gap_s,
        clock=clock,
        tracks=tracks,
        dtmf=dtmf,
        trailing_silence_s=trailing_silence_s,
        close_timeout_s=close_timeout_s,
        encoder=encoder,
        sample_rate=encoder.sample_rate,
    )


@dataclass(frozen=True, slots=True)
class _Pacing:
    clock: Clock
    fast: bool
    gap_s: float
    reply_timeout_s: float  # how long to wait for a reply the platform needs (AudioHook opened)


async def _send_all(  # noqa: PLR0917
    ws: ClientConnection,
    encoder: ClientEncoder,
    steps: Iterator[_Step],
    end_s: float,
    report: SimulationReport,
    pacing: _Pacing,
    progress: asyncio.Event,
) -> bool:
    """Send the call; a bridge that closes early just ends it (the report says how).
    True when the platform's goodbye went out as frames (then the bridge closes)."""
    clock = pacing.clock

    async def send(frame: Frame) -> None:
        await ws.send(frame)
        report.messages_sent += 1

    async def send_pending() -> None:
        for frame in _hook_frames(encoder, "pending"):
            await send(frame)

    async def wait_until(media_s: float) -> None:
        if pacing.fast:
            await asyncio.sleep(0)  # let the bridge (often in this loop) keep up
            return
        delay = t0 + media_s + paused_s - clock.now()
        if delay > 0:
            await clock.sleep(delay)
        else:
            report.max_lag_ms = max(report.max_lag_ms, -delay * 1000)

    async def wait_ready() -> None:
        while not _ready(encoder) and ws.close_code is None:
            progress.clear()
            await clock.wait_for(progress.wait(), pacing.reply_timeout_s)

    try:
        for frame in encoder.opening():
            await send(frame)
        await wait_ready()
        t0, paused_s = clock.now(), 0.0
        for step in steps:
            await wait_until(step.at_s)
            if step.kind == "gap":
                for frame in _hook_frames(encoder, "hold"):
                    await send(frame)
                await clock.sleep(pacing.gap_s)
                paused_s += pacing.gap_s
                encoder.skip(pacing.gap_s * 1000)
                report.gap_ms += round(pacing.gap_s * 1000)
            elif step.kind == "dtmf":
                for frame in encoder.digit(step.digit):
                    await send(frame)
                report.dtmf_sent += 1
            else:
                frame, size = encoder.audio(step.payload, step.track)
                await send(frame)
                report.bytes_sent += size
                if step.track == "inbound":
                    report.frames_sent += 1
                    report.audio_ms += encoder.frame_ms
                else:
                    report.outbound_frames_sent += 1
            await send_pending()
        await wait_until(end_s)
        await send_pending()
        goodbye = encoder.closing()
        for frame in goodbye:
            await send(frame)
        report.stop_sent = True
        return bool(goodbye)
    except ConnectionClosed:
        return False


async def _read(
    ws: ClientConnection,
    encoder: ClientEncoder,
    report: SimulationReport,
    progress: asyncio.Event,
) -> None:
    """Collect what the bridge sends (back-channel media, marks, clears) until it closes,
    answering whatever the platform's protocol answers; ``progress`` is set after each."""
    try:
        async for message in ws:
            if isinstance(message, str):
                report.received.append(message)
            else:
                report.binary_received += 1
            for reply in encoder.on_server_frame(message):
                await ws.send(reply)
                report.messages_sent += 1
            progress.set()
    except ConnectionClosed:
        return
    finally:
        progress.set()  # a sender waiting for a reply must not wait for a closed socket


async def _await_close(
    ws: ClientConnection, reader: asyncio.Task[None], clock: Clock, timeout_s: float
) -> None:
    """Platforms wait for the bridge to close after their goodbye; so do we, within a bound."""
    timer = asyncio.ensure_future(clock.sleep(timeout_s))
    try:
        await asyncio.wait({reader, timer}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        timer.cancel()
    if not reader.done():
        await ws.close(1000, "simulation done")
