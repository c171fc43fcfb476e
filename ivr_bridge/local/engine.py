"""The engine seam of the embedded recognizer: what a speech engine must do for one session.

The gRPC server (``server.py``) owns the protocol: options, limits, the idle rule, cursors and
the response messages. An engine owns the audio: it takes PCM16 at the session's rate (and
declared silence), finds utterances, and reports what it heard as plain events with
session-relative milliseconds. Engine calls are blocking and run in a worker (``workers.py``:
a worker process for engines marked ``parallel``, else a thread), one call at a time per
session; the server never touches an engine session from two threads at once.

Engines are looked up by name (``EmbeddedServerConfig.engine``): built-in names map to a
module that registers its factory on import; ``"package.module:factory"`` loads any other.
An engine object is shared by every session of every server in the process (it may hold a
pool of loaded models), so factories are called once per name.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ivr_bridge.errors import ConfigError

# ---- events ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EngineWord:
    text: str
    start_ms: int
    end_ms: int


@dataclass(frozen=True, slots=True)
class EnginePartial:
    """The current hypothesis of the open utterance (may still change)."""

    text: str
    start_ms: int
    end_ms: int
    words: tuple[EngineWord, ...] = ()


@dataclass(frozen=True, slots=True)
class EngineFinal:
    """A fixed result: the words of an utterance (or of a slice of a very long one)."""

    text: str
    start_ms: int
    end_ms: int
    words: tuple[EngineWord, ...] = ()


@dataclass(frozen=True, slots=True)
class EngineEou:
    """End of utterance at ``time_ms``."""

    time_ms: int


EngineEvent = EnginePartial | EngineFinal | EngineEou


# ---- options and the per-session object --------------------------------------------------


@dataclass(frozen=True, slots=True)
class EngineOptions:
    """How one session wants its audio treated (derived from ``session_options``)."""

    sample_rate: int
    # Non-speech after speech that ends an utterance (final + end of utterance).
    endpoint_ms: int = 700
    # No utterance runs longer than this without a final (a non-stop talker still gets them).
    max_utterance_ms: int = 20_000
    # Partials at most this often, in audio time, and only when the hypothesis changed.
    partial_interval_ms: int = 250
    # External EOU classifier: silence still yields finals, but end-of-utterance events come
    # only from force_endpoint() (the client's eou message) and from finish().
    external_eou: bool = False


class EngineSession(Protocol):
    """One recognition session. Every method may block; all return the events they caused."""

    def feed(self, pcm: bytes) -> list[EngineEvent]:
        """PCM16 little-endian mono at ``options.sample_rate`` (whole samples)."""
        ...

    def add_silence(self, duration_ms: int) -> list[EngineEvent]:
        """``duration_ms`` of declared silence (a silence_chunk): advances session time."""
        ...

    def force_endpoint(self) -> list[EngineEvent]:
        """End the open utterance now; always ends with an EngineEou at the current time."""
        ...

    def finish(self) -> list[EngineEvent]:
        """The client is done: final (+ end of utterance) for whatever is still open."""
        ...

    def close(self) -> None:
        """Release resources (models go back to the engine's pool). Idempotent."""
        ...

    @property
    def processed_ms(self) -> int:
        """Session audio time the engine has consumed (audio plus declared silence)."""
        ...

    @property
    def final_time_ms(self) -> int:
        """Everything before this time is final or known to hold no speech."""
        ...


class Engine(Protocol):
    name: str
    # True for CPU-bound engines that hold the GIL (PocketSphinx): their sessions run in worker
    # processes when the server has workers. False: one in-process thread is enough.
    parallel: bool

    def open_session(self, options: EngineOptions) -> EngineSession:
        """A new session (may block briefly; called in a worker thread)."""
        ...

    def warm_up(self) -> None:
        """Load whatever the first session would otherwise wait for (worker thread)."""
        ...


# ---- registry ------------------------------------------------------------------------------

EngineFactory = Callable[[], Engine]

# Built-in engines: name -> module whose import calls register_engine(name, ...).
BUILTIN_ENGINES: dict[str, str] = {
    "pocketsphinx": "ivr_bridge.local.pocketsphinx_engine",
    "tones": "ivr_bridge.local.tone_engine",  # synthetic vocabulary, exact transcripts (tests)
}

_factories: dict[str, EngineFactory] = {}
_instances: dict[str, Engine] = {}
_lock = threading.Lock()


def register_engine(name: str, factory: EngineFactory) -> None:
    """Make ``factory`` the engine called ``name`` (the last registration wins)."""
    with _lock:
        _factories[name] = factory
        _instances.pop(name, None)


def available_engines() -> list[str]:
    return sorted(set(BUILTIN_ENGINES) | set(_factories))


def _load_factory(name: str) -> EngineFactory:
    if name in _factories:
        return _factories[name]
    if name in BUILTIN_ENGINES:
        importlib.import_module(BUILTIN_ENGINES[name])
        if name in _factories:
            return _factories[name]
    elif ":" in name:
        module_name, _, attr = name.partition(":")
        try:
            module = importlib.import_module(module_name)
            factory = getattr(module, attr)
        except (ImportError, AttributeError) as exc:
            raise ConfigError("engine", f"cannot load engine {name!r}: {exc}") from exc
        if callable(factory):
            checked: EngineFactory = factory
            return checked
    raise ConfigError(
        "engine", f"unknown engine {name!r}; available: {', '.join(available_engines())}"
    )


def get_engine(name: str) -> Engine:
    """The process-wide engine called ``name``, created on first use.

    Raises ConfigError for a name that is neither registered, built in, nor ``module:factory``.
    """
    with _lock:
        engine = _instances.get(name)
    if engine is not None:
        return engine
    factory = _load_factory(name)
    with _lock:
        engine = _instances.get(name)
        if engine is None:
            engine = factory()
            _instances[name] = engine
        return engine
