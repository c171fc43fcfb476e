"""Where pytest-xdist runs a test (``make test`` runs the suite in two processes).

``realtime``: tests whose audio or timers run on a wall clock (a ScaledClock, real-time
pacing, subprocess servers, load and latency) run one after another in one process, so they
never share the CPU with each other; the rest of the suite fills the other process around them.
"""

from __future__ import annotations

import pytest

realtime = pytest.mark.xdist_group("realtime")
