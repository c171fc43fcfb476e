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
