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
        # Compare in logarithms: the exponent is never raised past the cap, so no attempt
        # count (and no tiny initial delay) can overflow a float.
        log_base = math.log(initial_s) + max(0, attempt) * math.log(multiplier)
        if log_base >= math.log(max_s):
            base = max_s
        elif max(0, attempt) * math.log(multiplier) < 700:  # the power alone stays finite
            base = min(max_s, initial_s * multiplier ** max(0, attempt))
        else:  # a vanishing initial delay times a huge power: only the logarithm is safe
            base = min(max_s, math.exp(log_base))
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
