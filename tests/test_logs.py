from __future__ import annotations

import io
import json

import structlog

from ivr_bridge.logs import configure_logging


def test_sensitive_fields_are_redacted_in_json_logs() -> None:
    out = io.StringIO()
    configure_logging("debug", "json", stream=out)
    log = structlog.get_logger("t").bind(call_id="call_1")
    log.info(
        "final",
        text="my card number is 4111",
        api_key="AQVN-secret",
        authorization="Bearer t1.abc",
        custom_parameters={"From": "+79990001122"},
        session=2,
    )
    record = json.loads(out.getvalue())
    assert record["call_id"] == "call_1" and record["session"] == 2
    for key in ("text", "api_key", "authorization", "custom_parameters"):
        assert record[key] == "[redacted]"
    raw = out.getvalue()
    assert "4111" not in raw and "AQVN" not in raw and "+7999" not in raw


def test_console_format_and_level_filter() -> None:
    out = io.StringIO()
    configure_logging("warning", "console", stream=out)
    structlog.get_logger("t").info("hidden")
    structlog.get_logger("t").warning("shown", token="x")
    text = out.getvalue()
    assert "hidden" not in text and "shown" in text and "token=[redacted]" in text


async def test_bound_call_id_reaches_tasks_created_inside_the_call() -> None:
    import asyncio

    out = io.StringIO()
    configure_logging("info", "json", stream=out)

    async def channel() -> None:
        structlog.get_logger("recognition").info("recognition_retry", status="UNAVAILABLE")

    with structlog.contextvars.bound_contextvars(call_id="call_7", dialect="twilio"):
        task = asyncio.create_task(channel())
    structlog.get_logger("server").info("outside_the_call")
    await task
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert second["event"] == "recognition_retry" and second["call_id"] == "call_7"
    assert first["event"] == "outside_the_call" and "call_id" not in first
