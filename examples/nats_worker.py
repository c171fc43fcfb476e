"""A dialog worker for a fleet: events from NATS JetStream, commands back to the right bridge.

    python examples/nats_worker.py --nats nats://127.0.0.1:4222

Every bridge publishes its calls' events to ``ivr.calls.<call_id>.<type>`` (``events.nats_url``
in its config) and listens for commands on ``ivr.calls.<call_id>.commands`` while it owns the
call. Any number of these workers share one durable pull consumer, so each event is handled by
one of them, whichever bridge the call is on. This one answers every key press with a prompt
(a beep whose length says which key: 100 ms per digit value) and hangs up on ``#``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import math
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import nats
import nats.errors
import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg

log = structlog.get_logger("nats_worker")


@dataclass(frozen=True, slots=True)
class Answer:
    call_id: str
    digit: str
    command: str  # "play" | "hangup"
    ok: bool
    error: str = ""


def beep_b64(ms: int, hz: float = 660.0, rate: int = 8000) -> str:
    n = rate * ms // 1000
    pcm = array("h", (int(3000 * math.sin(2 * math.pi * hz * i / rate)) for i in range(n)))
    return base64.b64encode(pcm.tobytes()).decode("ascii")


def command_for(digit: str) -> dict[str, Any]:
    """What to do about a key press: ``#`` hangs up, anything else gets a prompt."""
    if digit == "#":
        return {"type": "hangup", "reason": "caller pressed #"}
    length = 100 * (int(digit) + 1) if digit.isdigit() else 150
    return {"type": "play", "pcm16_b64": beep_b64(length), "sample_rate": 8000}


class Worker:
    def __init__(
        self,
        nats_url: str,
        *,
        prefix: str = "ivr.calls",
        stream: str = "IVR_CALLS",
        durable: str = "dialog-workers",
        on_answer: Callable[[Answer], None] | None = None,
    ) -> None:
        self.nats_url = nats_url
        self.prefix = prefix
        self.stream = stream
        self.durable = durable
        self.on_answer = on_answer
        self._stop = asyncio.Event()

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        nc = await nats.connect(self.nats_url)
        try:
            js = nc.jetstream()
            sub = await js.pull_subscribe(
                f"{self.prefix}.*.dtmf", durable=self.durable, stream=self.stream
            )
            log.info("worker_started", subject=f"{self.prefix}.*.dtmf")
            while not self._stop.is_set():
                try:
                    batch = await sub.fetch(10, timeout=0.5)
                except (nats.errors.TimeoutError, TimeoutError):
                    continue
                for msg in batch:
                    await self._answer(nc, msg)
                    await msg.ack()  # after the command went out: a crash redelivers it
            # Let go of the pull subscription first: drain() would otherwise hold the exit
            # for seconds, waiting on it.
            await sub.unsubscribe()
        finally:
            with contextlib.suppress(nats.errors.Error):
                await nc.drain()

    async def _answer(self, nc: Client, msg: Msg) -> None:
        event = json.loads(msg.data)
        call_id, digit = event["call_id"], event["data"]["digit"]
        command = command_for(digit)
        # The event's own subject, with its last token swapped: the owning bridge listens there.
        subject = msg.subject.rsplit(".", 1)[0] + ".commands"
        try:
            reply = await nc.request(subject, json.dumps(command).encode(), timeout=5)
            answer: dict[str, Any] = json.loads(reply.data)
            ok, error = bool(answer.get("ok")), str(answer.get("error", ""))
        except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
            ok, error = False, "the call is gone"  # hung up before we answered
        log.info("worker_answered", call_id=call_id, command=command["type"], ok=ok, error=error)
        if self.on_answer is not None:
            self.on_answer(Answer(call_id, digit, str(command["type"]), ok, error))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nats", default="nats://127.0.0.1:4222")
    parser.add_argument("--prefix", default="ivr.calls")
    parser.add_argument("--stream", default="IVR_CALLS")
    args = parser.parse_args()
    worker = Worker(args.nats, prefix=args.prefix, stream=args.stream)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(worker.run())


if __name__ == "__main__":
    main()
