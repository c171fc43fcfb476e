"""One timer for many periodic checks: a task per event loop, not one per call channel.

Every call channel re-checks its session (stalled? rotation due? keepalive silence due?) a
few times a second. A sleeping task per channel pays a timer, a future and a task switch
for each check, hundreds of times a second at a few hundred calls, while the check itself
is a comparison. A :class:`Ticker` sleeps once per interval, on the injected clock, and
calls each subscriber in turn; a subscriber that raises is logged and the others still run.

Tickers are shared per (running loop, clock, interval) through :func:`ticker`; a ticker's
task ends once its last subscriber leaves, and the next subscription starts it again.
"""

from __future__ import annotations

import asyncio
import contextvars
import weakref
from collections.abc import Callable

import structlog

from ivr_bridge.clock import Clock

log = structlog.get_logger(__name__)

# Per loop (weakly: a closed loop takes its tickers with it), then per (clock, interval).
_TICKERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[int, float], Ticker]] = (
    weakref.WeakKeyDictionary()
)


class Ticker:
    """Calls every subscriber once per ``interval`` seconds of ``clock`` time."""

    def __init__(self, clock: Clock, interval: float) -> None:
        if interval <= 0:
            raise ValueError("interval must be positive")
        self.clock = clock
        self.interval = interval
        self._subscribers: dict[int, Callable[[], None]] = {}
        self._next_key = 0
        self._task: asyncio.Task[None] | None = None

    def subscribe(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` every interval from now on (first within one interval);
        returns the function that stops it. Must be called with a running loop."""
        key = self._next_key
        self._next_key += 1
        self._subscribers[key] = callback
        if self._task is None or self._task.done():
            # A context of its own: the task outlives the subscriber that started it, and
            # its log lines must not carry that one's call_id.
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="ticker", context=contextvars.Context()
            )

        def unsubscribe() -> None:
            self._subscribers.pop(key, None)

        return unsubscribe

    async def _run(self) -> None:
        while self._subscribers:
            await self.clock.sleep(self.interval)
            for callback in list(self._subscribers.values()):
                try:
                    callback()
                except Exception:
                    # One channel's bug must not stop the others' checks.
                    log.exception("tick_failed")


def ticker(clock: Clock, interval: float) -> Ticker:
    """The running loop's shared ticker for ``clock`` and ``interval``."""
    tickers = _TICKERS.setdefault(asyncio.get_running_loop(), {})
    key = (id(clock), interval)  # the ticker holds the clock, so the id stays its own
    found = tickers.get(key)
    if found is None:
        found = tickers[key] = Ticker(clock, interval)
    return found
