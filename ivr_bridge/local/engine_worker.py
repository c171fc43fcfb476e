"""An engine worker process: ``main([FD, ENGINE])`` (``python -m ivr_bridge.local.engine_worker``).

Started by ``workers.ProcessBackend`` with one end of a socket pair as file descriptor FD. It
loads the engine called ENGINE, answers ``("ready", pid)``, then serves ``(kind, sid, args)``
requests one at a time: ``open`` a session with EngineOptions, ``call`` an operation on it
(replies are ``workers.EngineReply``), ``close`` it, or ``stop``. Each reply is ``("ok",
payload)`` or ``("error", description)``. It exits when told to or when the parent goes away.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from multiprocessing.connection import Connection
from typing import Any

import structlog

from ivr_bridge.local.engine import EngineSession, get_engine
from ivr_bridge.local.workers import apply_operation


def worker_main(conn: Connection, engine_name: str) -> None:
    """A worker process: load the engine, then serve (kind, sid, args) requests in order."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when workers stop
    # Warnings and errors only, on stderr: stdout may be the parent's event stream.
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=structlog.WriteLoggerFactory(sys.stderr),  # one write per line
    )
    engine = get_engine(engine_name)
    engine.warm_up()
    conn.send(("ready", os.getpid()))
    sessions: dict[int, EngineSession] = {}
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return  # the parent is gone
        kind, sid, args = message
        if kind == "stop":
            break
        reply: Any = None
        try:
            if kind == "open":
                sessions[sid] = engine.open_session(args)
            elif kind == "call":
                reply = apply_operation(sessions[sid], *args)
            else:
                session = sessions.pop(sid, None)
                if session is not None:
                    session.close()
        except Exception as exc:  # reported to the session, which ends with INTERNAL
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
            continue
        conn.send(("ok", reply))
    for session in sessions.values():
        session.close()


def main(argv: list[str]) -> None:
    """``argv`` = [file descriptor of the socket to the parent, engine name]."""
    worker_main(Connection(int(argv[0])), argv[1])


if __name__ == "__main__":
    main(sys.argv[1:])
