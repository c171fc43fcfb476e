"""The one retry schedule: exponential backoff with jitter, capped before it is computed.

Recognition retries, the IAM token refresh and webhook delivery all draw their delays from
``backoff``. The exponent stops growing once the cap is reached, so the ten-thousandth
consecutive failure costs the same arithmetic as the tenth and can never overflow.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator


def backoff_delay(
    attempt: int,
    *,
    initial_s: float,
    max_s: float,
    multiplier: float = 2.0,
    jitter: float = 0.0,
    rand: Callable[[], float] = random.random,
) -> float:
    """Delay before retry number ``attempt`` (0-based): ``initial * multiplier**attempt``,
    at most ``max_s``, spread by +/- ``jitter`` (a fraction) and never negative."""
    if initial_s <= 0 or max_s <= 0:
        return 0.0
    if multiplier <= 1.0 or initial_s >= max_s:
        base = min(initial_s, max_s)
    else:
        # The attempt after which the cap is reached; beyond it the exponent is not computed.
        ceiling = math.ceil(math.log(max_s / initial_s, multiplier))
        base = min(max_s, initial_s * multiplier ** min(max(0, attempt), ceiling))
    if jitter > 0:
        base *= 1.0 + jitter * (2.0 * rand() - 1.0)
    return max(0.0, base)


def backoff(
    *,
    initial_s: float,
    max_s: float,
    multiplier: float = 2.0,
    jitter: float = 0.0,
    rand: Callable[[], float] = random.random,
) -> Iterator[float]:
    """An endless schedule of delays; start a new one after a success."""
    attempt = 0
    while True:
        yield backoff_delay(
            attempt,
            initial_s=initial_s,
            max_s=max_s,
            multiplier=multiplier,
            jitter=jitter,
            rand=rand,
        )
        attempt += 1
