"""Registers the embedded recognizer's services besides v3 streaming on its gRPC server.

One place, so ``server.py`` needs a single call and each API stays in its own module: v2
streaming (``v2_streaming.py``), v3 asynchronous recognition and the operations API
(``async_grpc.py``). The asynchronous jobs of a recognizer are reachable through
``jobs_of`` (the v2 REST front, ``rest.py``, serves the same operations).
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

from ivr_bridge.local.async_grpc import add_async_services
from ivr_bridge.local.async_jobs import AsyncJobs
from ivr_bridge.local.v2_streaming import add_v2_streaming

if TYPE_CHECKING:
    from ivr_bridge.local.server import EmbeddedSpeechKitServer

_JOBS: weakref.WeakKeyDictionary[EmbeddedSpeechKitServer, AsyncJobs] = weakref.WeakKeyDictionary()


def jobs_of(owner: EmbeddedSpeechKitServer) -> AsyncJobs:
    """The asynchronous operations of this embedded recognizer (created on first use)."""
    jobs = _JOBS.get(owner)
    if jobs is None:
        jobs = _JOBS[owner] = AsyncJobs(owner)
    return jobs


def add_other_services(owner: EmbeddedSpeechKitServer, server: Any) -> None:
    """Add v2 streaming, v3 AsyncRecognizer and OperationService to ``server``."""
    add_v2_streaming(owner, server)
    jobs = jobs_of(owner)
    add_async_services(owner, jobs, server)
    owner.on_stop.append(jobs.aclose)  # jobs still running are cancelled when the server stops
