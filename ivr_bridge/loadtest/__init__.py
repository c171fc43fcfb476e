"""``ivr-bridge loadtest``: many concurrent simulated calls against a bridge, measured.

The load generator (``generator.py``) plays N calls in one process on absolute 20 ms schedules.
Each call's audio carries a tag (``tagging.py``) that survives G.711 decoding, so the probe
recognizer (``probe.py``, a SpeechKit v3 endpoint in its own process) can tell which call a
chunk belongs to and when each frame reached it. ``runner.py`` starts the probe and the bridge
as separate processes, reads the bridge's CPU and memory from /proc (``procstat.py``) and joins
the generator's send times with the probe's receipt times into a report (``report.py``).
"""

from ivr_bridge.loadtest.report import LoadReport
from ivr_bridge.loadtest.runner import LoadTestOptions, run_loadtest

__all__ = ["LoadReport", "LoadTestOptions", "run_loadtest"]
