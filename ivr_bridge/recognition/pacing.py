"""Send pacing: every channel's sender wakes on one shared tick, so gRPC writes leave together.

A gRPC write costs the process far less when many leave at once: grpc.aio completes each
write through its poller thread and a wake-up of the event loop, and writes issued in the
same loop iteration share those wake-ups (and the HTTP/2 connection's flush). With 200 calls
each sending 5 chunks a second at its own moment, a write cost about 190 us of CPU here;
released on a 20 ms grid, about 100 us (benchmarks/, README). The price is at most one tick of
extra delay before a chunk leaves.

The pacer holds the senders that have a chunk ready and wakes them all at the next multiple of
the tick on the event loop's clock, with one timer for the whole process, armed only while
some sender waits. A tick of 0 wakes each sender at once (no pacing).
"""

from __future__ import annotations

import asyncio


class SendPacer:
    """Wakes ready senders on a shared tick (see the module docstring).

    One per event loop, shared by every channel: ``wake(event)`` instead of ``event.set()``.
    """

    def __init__(self, tick_s: float) -> None:
        if tick_s < 0:
            raise ValueError("tick_s must be 0 or more")
        self.tick_s = tick_s
        self._waiting: set[asyncio.Event] = set()
        self._timer: asyncio.TimerHandle | None = None
        self.ticks = 0  # timer firings (diagnostics, tests)
        self.woken = 0  # senders woken by them

    def wake(self, event: asyncio.Event) -> None:
        """Set ``event`` at the next tick (now, when pacing is off)."""
        if self.tick_s == 0:
            event.set()
            return
        if event.is_set():
            return
        self._waiting.add(event)
        if self._timer is None:
            loop = asyncio.get_running_loop()
            tick = self.tick_s
            # The next grid point, the same for every caller: releases line up.
            due = (loop.time() // tick + 1) * tick
            self._timer = loop.call_at(due, self._release)

    def _release(self) -> None:
        self._timer = None
        waiting, self._waiting = self._waiting, set()
        self.ticks += 1
        self.woken += len(waiting)
        for event in waiting:
            event.set()

    def close(self) -> None:
        """Wake everyone now and stop the timer (shutdown)."""
        if self._timer is not None:
            self._timer.cancel()
        self._release()
