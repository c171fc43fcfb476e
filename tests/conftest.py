"""Suite-wide rule: tests that need a system tool never skip silently.

The speech tests synthesize audio with espeak-ng, which the Makefile installs when it can
(``make speech-tools``). Where it is missing they skip, and the run ends with a list of them
and how to fix it; under ``CI=true`` (or ``IVR_BRIDGE_REQUIRE_SPEECH_TOOLS=1``) such a skip is
a failure, so CI cannot pass without having run them.

Every event published in any test is also validated against the shipped JSON Schema
(``tests/events/schema_check.py``). Under pytest-xdist (``make test``), a test whose
xdist_group was lost fails with the reason rather than running beside the others.
"""

from __future__ import annotations

import os
from collections.abc import Generator

import pytest

from tests.events.schema_check import validate_published_events  # noqa: F401

TOOL_MARKERS = ("espeak-ng",)  # words in a skip reason that mean "a required tool is missing"
_skipped_for_tools: list[str] = []


def _tools_required() -> bool:
    flags = (os.environ.get("CI", ""), os.environ.get("IVR_BRIDGE_REQUIRE_SPEECH_TOOLS", ""))
    return any(flag.lower() in {"1", "true", "yes"} for flag in flags)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if not report.skipped or not any(m in str(report.longrepr) for m in TOOL_MARKERS):
        return report
    if _tools_required():
        report.outcome = "failed"
        report.longrepr = (
            f"{item.nodeid} needs espeak-ng, which is missing; CI must run it "
            "(make speech-tools, or apt-get install espeak-ng)"
        )
    return report


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    # Noted here, not in makereport: under pytest-xdist only this hook runs in the process
    # that prints the summary (the workers send their reports to it).
    if report.skipped and any(m in str(report.longrepr) for m in TOOL_MARKERS):
        _skipped_for_tools.append(report.nodeid)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _skipped_for_tools:
        return
    terminalreporter.section("tests skipped for a missing tool", sep="!", red=True, bold=True)
    terminalreporter.line(
        f"{len(_skipped_for_tools)} test(s) did not run because espeak-ng is missing; "
        "run `make speech-tools` (or apt-get install espeak-ng). Under CI=true they fail."
    )
    for nodeid in _skipped_for_tools:
        terminalreporter.line(f"  {nodeid}")


_UNGROUPED = pytest.StashKey[bool]()


def pytest_collection_finish(session: pytest.Session) -> None:
    """Under ``--dist loadgroup`` every xdist_group test must carry its group, or the
    wall-clock tests would silently run beside each other (pytest-xdist#1386)."""
    if not getattr(session.config.option, "loadgroup", False):  # set in xdist's workers
        return
    for item in session.items:
        if item.get_closest_marker("xdist_group") and "@" not in item.nodeid:
            item.stash[_UNGROUPED] = True


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.stash.get(_UNGROUPED, False):
        pytest.fail(
            "pytest-xdist did not keep this test in its xdist_group (pytest-xdist#1386): "
            "check the pytest pin in pyproject.toml",
            pytrace=False,
        )
