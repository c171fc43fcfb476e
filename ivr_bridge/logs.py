"""structlog setup: console or JSON lines, and a redaction step that runs on every record.

Nothing personal or secret is logged by default: transcripts, audio, phone numbers, custom
parameters, tokens and keys are replaced by "[redacted]" whatever code tried to log them.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

SENSITIVE_KEYS = frozenset(
    {
        "text",
        "transcript",
        "words",
        "audio",
        "pcm",
        "payload",
        "from",
        "to",
        "caller",
        "phone",
        "ani",
        "dnis",
        "custom_parameters",
        "api_key",
        "iam_token",
        "token",
        "authorization",
        "secret",
        "private_key",
        "jwt",
        "password",
    }
)


def redact(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key in list(event_dict):
        if key.lower() in SENSITIVE_KEYS:
            event_dict[key] = "[redacted]"
    return event_dict


def configure_logging(
    level: str = "info", fmt: str = "console", stream: TextIO | None = None
) -> None:
    out = stream or sys.stderr
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        # One write per line (print() writes the newline separately): the worker processes
        # share stderr, and a line split in two interleaves with theirs or loses its newline.
        logger_factory=structlog.WriteLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
