"""``ivr-bridge events``: tail a bridge's GET /events stream in a readable form.

Each event prints as one line (the console sink's format, prefixed with the call id when
watching every call); notices (dropped, gap, ack, error) print as ``# ...``. After a dropped
connection it reconnects and resumes from the last seq it printed for each call, so nothing
is printed twice or missed while the bridge still keeps those events.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Sequence
from typing import Any, TextIO
from urllib.parse import urlencode

import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from ivr_bridge.events.console import render
from ivr_bridge.model import UtteranceEvent


class TailRefused(Exception):
    """The bridge refused the stream (bad token, bad filter): retrying will not help."""


def event_from_json(doc: dict[str, Any]) -> UtteranceEvent:
    """An event envelope (events.schema.json) back as an UtteranceEvent, for rendering."""
    return UtteranceEvent(
        type=str(doc["type"]),
        call_id=str(doc["call_id"]),
        channel=doc.get("channel"),
        seq=int(doc["seq"]),
        call_ms=int(doc["call_ms"]),
        wall_time=0.0,
        data=dict(doc.get("data") or {}),
        id=str(doc.get("id", "")),
    )


def stream_url(
    base: str, call_id: str | None, types: Sequence[str], last_seq: dict[str, int]
) -> str:
    params: dict[str, str] = {}
    if call_id:
        params["call_id"] = call_id
    if types:
        params["types"] = ",".join(types)
    if last_seq:
        params["after"] = ",".join(f"{cid}:{seq}" for cid, seq in last_seq.items())
    return base + ("&" if "?" in base else "?") + urlencode(params) if params else base


def format_message(doc: dict[str, Any], *, with_call: bool) -> str:
    if "op" in doc:
        detail = " ".join(f"{k}={v}" for k, v in doc.items() if k != "op")
        return f"# {doc['op']} {detail}".rstrip()
    line = render(event_from_json(doc))
    return f"{doc['call_id']} {line}" if with_call else line


async def tail_events(
    url: str,
    *,
    token: str,
    call_id: str | None = None,
    types: Sequence[str] = (),
    out: TextIO | None = None,  # default: sys.stdout as it is at call time
    reconnects: int = 5,
    retry_s: float = 1.0,
) -> int:
    """Print the stream until it closes for good (with ``call_id``: until that call ended).
    Returns the number of events printed."""
    out = out or sys.stdout
    last_seq: dict[str, int] = {}
    printed = 0
    attempts = 0
    while True:
        target = stream_url(url, call_id, types, last_seq)
        try:
            async with websockets.connect(
                target, additional_headers={"Authorization": f"Bearer {token}"}
            ) as ws:
                attempts = 0
                async for raw in ws:
                    doc = json.loads(raw)
                    if "op" not in doc:
                        if doc["seq"] <= last_seq.get(doc["call_id"], 0):
                            continue
                        last_seq[doc["call_id"]] = doc["seq"]
                        printed += 1
                    print(format_message(doc, with_call=call_id is None), file=out, flush=True)
                    if call_id is not None and doc.get("type") == "call_ended":
                        return printed
        except InvalidStatus as exc:
            status = exc.response.status_code
            raise TailRefused(f"the bridge answered HTTP {status}") from None
        except (ConnectionClosed, OSError) as exc:
            attempts += 1
            if attempts > reconnects:
                print(f"# gave up: {type(exc).__name__}", file=out, flush=True)
                return printed
            print(f"# reconnecting ({attempts}/{reconnects})", file=out, flush=True)
            await asyncio.sleep(retry_s)
            continue
        # The bridge closed the stream cleanly (shutting down): try again like a drop.
        attempts += 1
        if attempts > reconnects:
            return printed
        await asyncio.sleep(retry_s)


SIM_TAG = "simulator_tag"  # the custom parameter that tells the simulated call apart


async def follow_tagged_call(
    url: str,
    *,
    token: str,
    tag: str,
    out: TextIO | None = None,  # default: sys.stdout as it is at call time
    subscribed: asyncio.Event | None = None,
) -> int:
    """Print the events of the one call whose ``call_started`` carries custom parameter
    ``simulator_tag=<tag>`` (``ivr-bridge simulate --events-url``), until its call_ended.
    Subscribe before the call starts. Returns the number of events printed."""
    out = out or sys.stdout
    printed = 0
    call_id: str | None = None
    async with websockets.connect(
        url, additional_headers={"Authorization": f"Bearer {token}"}
    ) as ws:
        if subscribed is not None:
            subscribed.set()
        async for raw in ws:
            doc = json.loads(raw)
            if "op" in doc:
                continue
            data = doc["data"]
            if call_id is None and data.get("custom_parameters", {}).get(SIM_TAG) == tag:
                call_id = doc["call_id"]  # its call_started: the first event of the call
            if doc["call_id"] != call_id:
                continue
            print(format_message(doc, with_call=False), file=out, flush=True)
            printed += 1
            if doc["type"] == "call_ended":
                break
    return printed
