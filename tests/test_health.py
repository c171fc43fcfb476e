"""What /healthz and /readyz derive from the recognizer's state and the sinks' counters."""

from __future__ import annotations

from ivr_bridge.health import RecognizerWatch, SinkWatch


def test_readiness_fails_only_after_the_grace_period() -> None:
    watch = RecognizerWatch(grace_s=30)
    watch.observe("READY", 0)
    assert watch.ready(0) and watch.report(0) == {"status": "ok", "state": "READY"}
    watch.observe("TRANSIENT_FAILURE", 10)
    watch.observe("TRANSIENT_FAILURE", 25)  # the outage started at the first sighting
    assert watch.ready(40)
    assert not watch.ready(40.5)
    assert watch.report(41) == {
        "status": "unreachable",
        "state": "TRANSIENT_FAILURE",
        "unreachable_for_s": 31.0,
    }
    watch.observe("CONNECTING", 42)
    assert watch.ready(42) and watch.reachable


def test_zero_grace_never_fails_readiness() -> None:
    watch = RecognizerWatch(grace_s=0)
    watch.observe("SHUTDOWN", 0)
    assert not watch.reachable and watch.ready(10_000)


def test_sink_failing_until_a_delivery_gets_through() -> None:
    watch = SinkWatch()
    assert watch.report("jsonl", 5, 0, {"open": True})["status"] == "ok"
    assert watch.report("jsonl", 5, 3, {"open": True})["status"] == "failing"
    assert watch.report("jsonl", 5, 3, {"open": True})["status"] == "failing"  # no news
    assert watch.report("jsonl", 6, 4, {"open": True})["status"] == "ok"


def test_sink_reporting_itself_broken_is_failing() -> None:
    watch = SinkWatch()
    assert watch.report("jsonl", 0, 0, {"open": False})["status"] == "failing"
    assert watch.report("webhook", 0, 0, {"state": "open"})["status"] == "failing"
    assert watch.report("webhook", 0, 0, {"state": "closed"})["status"] == "ok"
