"""The JSON-lines sink under log rotation: SIGHUP reopen, rename and delete noticed without a
signal, failing writes counted, an unwritable path refused at startup by name."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from ivr_bridge.errors import ConfigError, SinkError
from ivr_bridge.events.bus import EventBus
from ivr_bridge.events.jsonl import JsonlSink
from ivr_bridge.model import UtteranceEvent

from .factories import make


def ev(seq: int) -> UtteranceEvent:
    return make("c", seq, "dtmf", channel="caller")


def seqs(path: Path) -> list[int]:
    return [json.loads(line)["seq"] for line in path.read_text().splitlines()]


async def test_rename_is_noticed_without_a_signal(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    sink = JsonlSink(path, rotation_check_s=0.0)  # checked at every write
    await sink.deliver(ev(1))
    path.rename(tmp_path / "events.jsonl.1")  # logrotate without copytruncate
    await sink.deliver(ev(2))
    path.unlink()  # and a delete
    await sink.deliver(ev(3))
    await sink.aclose()
    assert seqs(tmp_path / "events.jsonl.1") == [1]
    assert seqs(path) == [3]
    assert sink.reopened == 2


async def test_rename_checks_are_spaced_out(tmp_path: Path) -> None:
    # By default the path is stat'ed at most once a second, not per event: a write right
    # after the rename still lands in the renamed file, and no reopen happens yet.
    path = tmp_path / "events.jsonl"
    sink = JsonlSink(path, rotation_check_s=3600.0)
    await sink.deliver(ev(1))
    path.rename(tmp_path / "events.jsonl.1")
    await sink.deliver(ev(2))
    await sink.aclose()
    assert seqs(tmp_path / "events.jsonl.1") == [1, 2]
    assert sink.reopened == 0


async def test_sighup_reopen_through_the_bus(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    sink = JsonlSink(path)
    bus = EventBus()
    bus.add_sink(sink)
    bus.publish(ev(1))
    bus.publish(ev(2))
    for _ in range(100):
        if bus.stats()["jsonl"].delivered == 2:
            break
        await asyncio.sleep(0.001)
    os.replace(path, tmp_path / "old.jsonl")
    bus.reopen()
    bus.publish(ev(3))
    await bus.aclose()
    assert seqs(tmp_path / "old.jsonl") == [1, 2]
    assert seqs(path) == [3]
    assert sink.reopened == 1


async def test_failing_write_is_counted_not_raised_past_the_bus(tmp_path: Path) -> None:
    if not Path("/dev/full").exists():
        pytest.skip("needs /dev/full")
    sink = JsonlSink("/dev/full")
    with pytest.raises(SinkError, match="full"):
        await sink.deliver(ev(1))
    bus = EventBus()
    bus.add_sink(sink)
    stats = bus.stats()["jsonl"]
    bus.publish(ev(2))
    await bus.aclose()
    assert (stats.failed, stats.lost, stats.delivered) == (1, 1, 0)
    assert sink.write_errors == 2


def test_unwritable_path_is_a_config_error_naming_it(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    with pytest.raises(ConfigError) as err:
        JsonlSink(blocker / "events.jsonl")
    assert err.value.key == "events.jsonl"
    assert str(blocker / "events.jsonl") in str(err.value)


async def test_reopen_failure_is_logged_and_the_next_write_retries(tmp_path: Path) -> None:
    path = tmp_path / "d" / "events.jsonl"
    sink = JsonlSink(path)
    (tmp_path / "d" / "events.jsonl").unlink()
    (tmp_path / "d").rmdir()
    (tmp_path / "d").write_text("")  # the directory is now a file: reopen cannot succeed
    sink.reopen()
    assert sink.health()["open"] is False
    with pytest.raises(SinkError):
        await sink.deliver(ev(1))
    (tmp_path / "d").unlink()
    await sink.deliver(ev(2))  # the directory is recreated and the file reopened
    await sink.aclose()
    assert seqs(path) == [2]


class ShortWrites:
    """A file that takes at most ``most`` bytes per write (as write(2) may, near a full
    disk); ``most=0`` takes nothing."""

    def __init__(self, most: int) -> None:
        self.most = most
        self.data = b""

    def write(self, data: bytes) -> int:
        taken = bytes(data[: self.most])
        self.data += taken
        return len(taken)

    def close(self) -> None:
        return None


async def test_a_short_write_is_finished_not_cut(tmp_path: Path) -> None:
    sink = JsonlSink(tmp_path / "events.jsonl")
    short = ShortWrites(7)
    sink._fh = short  # type: ignore[assignment]
    sink.deliver_now(ev(1))
    line = short.data.decode()
    assert line.endswith("\n") and json.loads(line)["seq"] == 1


async def test_a_write_that_takes_nothing_is_a_sink_error(tmp_path: Path) -> None:
    sink = JsonlSink(tmp_path / "events.jsonl")
    sink._fh = ShortWrites(0)  # type: ignore[assignment]
    with pytest.raises(SinkError):
        sink.deliver_now(ev(1))
    assert sink.write_errors == 1
