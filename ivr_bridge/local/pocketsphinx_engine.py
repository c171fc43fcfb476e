"""The PocketSphinx engine: the stock US English model and language model from its wheel.

* Audio goes to the 16 kHz en-us model: 8 kHz telephone audio is upsampled, 48 kHz is
  downsampled (audioop.ratecv, stateful across chunks). The model's front end is fixed by its
  feat.params (130-6800 Hz filterbank), so upsampled 8 kHz audio leaves the top filters empty;
  dither keeps their log energies finite, which measurably helps on telephone audio
  (10% more words recognized in our espeak-ng set). The dither is ours, not PocketSphinx's:
  its generator is process-wide, so with several sessions per process the words would depend
  on the interleaving; ours is a fixed pattern by position within the utterance.
* Voice activity: PocketSphinx's WebRTC-derived ``Vad`` on 30 ms frames, behind an RMS floor;
  segmentation, endpoint and length cap are ``segmenter.SegmentedSession``'s.
* Decoding: ``process_raw`` per <= 90 ms of utterance audio (PocketSphinx holds the GIL while
  it decodes, so small calls keep the event loop responsive); partial words from ``seg()``.
* ``Decoder`` construction loads the acoustic model, dictionary and LM (0.3 s of CPU, 0.6 s
  wall on a busy 2-core box) and holds the GIL all along, so decoders are pooled: a session
  takes one when an utterance starts and gives it back when the utterance ends, so the pool
  only grows to the number of utterances decoded at the same moment. ``warm_up`` preloads
  ``min_idle`` before the server starts serving.
"""

from __future__ import annotations

import audioop
import random
import re
import threading
import time
from array import array
from typing import Any

import pocketsphinx
import structlog

from ivr_bridge.local.engine import (
    EngineOptions,
    EngineSession,
    EngineWord,
    register_engine,
)
from ivr_bridge.local.segmenter import SegmentedSession, SegmenterParams

log = structlog.get_logger(__name__)

MODEL_RATE = 16_000
_FRAME_S = 0.03
_DECODE_STEP_BYTES = 2 * MODEL_RATE * 30 // 1000  # 30 ms per process_raw call (GIL held)
# Caps the active HMMs per frame (default 30000): on telephone-band speech this cut decoding
# CPU by about a third with the same words recognized in our espeak-ng set.
MAX_HMM_PER_FRAME = 10_000
_ALT_SUFFIX = re.compile(r"\(\d+\)$")

VAD_MODES = {
    "loose": pocketsphinx.Vad.LOOSE,
    "medium_loose": pocketsphinx.Vad.MEDIUM_LOOSE,
    "medium_strict": pocketsphinx.Vad.MEDIUM_STRICT,
    "strict": pocketsphinx.Vad.STRICT,
}


def clean_word(raw: str) -> str | None:
    """A dictionary word as text: fillers and markers dropped, ``word(2)`` -> ``word``."""
    if not raw or raw[0] in "<[+":
        return None
    return _ALT_SUFFIX.sub("", raw)


class _Vad:
    """FrameClassifier over pocketsphinx.Vad (one per session: it keeps state)."""

    def __init__(self, mode: int) -> None:
        self._vad: Any = pocketsphinx.Vad(mode, MODEL_RATE, _FRAME_S)
        self._frame_bytes = int(self._vad.frame_bytes)

    @property
    def frame_bytes(self) -> int:
        return self._frame_bytes

    def is_speech(self, frame: bytes) -> bool:
        return bool(self._vad.is_speech(frame))


def _dither_table(samples: int, seed: int) -> bytes:
    """PCM16 noise: +1 on about one sample in four (what PocketSphinx's own dither adds)."""
    rng = random.Random(seed)
    return array("h", (1 if rng.random() < 0.25 else 0 for _ in range(samples))).tobytes()


# PocketSphinx dithers from one process-wide random generator, so a session's words would
# depend on what other sessions decoded in between. This table, applied by position inside
# each utterance, gives the same noise to the same audio whatever else the process does.
_DITHER = _dither_table(MODEL_RATE, seed=1)


def dither(pcm: bytes, position: int) -> bytes:
    """``pcm`` (PCM16) plus the fixed dither noise from sample ``position`` on."""
    out: list[bytes] = []
    size = len(_DITHER) // 2
    done = 0
    while done < len(pcm):
        start = (position + done // 2) % size
        take = min(len(pcm) - done, 2 * (size - start))
        noise = _DITHER[2 * start : 2 * start + take]
        out.append(audioop.add(pcm[done : done + take], noise, 2))
        done += take
    return b"".join(out)


class _PooledDecoder:
    """UtteranceDecoder over one pooled pocketsphinx.Decoder."""

    def __init__(self, engine: PocketSphinxEngine, decoder: Any, cmn: list[str]) -> None:
        self._engine = engine
        self._decoder = decoder
        # The session's cepstral mean, carried from one utterance to the next (see acquire).
        self._cmn = cmn
        if cmn:
            decoder.set_cmn(cmn[0])
        self._frame_ms = 1000 // int(decoder.config["frate"])
        self._position = 0  # samples of this utterance decoded so far (for the dither)

    def start(self) -> None:
        self._decoder.start_utt()
        self._position = 0

    def process(self, pcm: bytes) -> None:
        pcm = dither(pcm, self._position)
        self._position += len(pcm) // 2
        for off in range(0, len(pcm), _DECODE_STEP_BYTES):
            self._decoder.process_raw(pcm[off : off + _DECODE_STEP_BYTES], False, False)

    def words(self) -> list[EngineWord]:
        out: list[EngineWord] = []
        for seg in self._decoder.seg():
            text = clean_word(str(seg.word))
            if text:
                start = int(seg.start_frame) * self._frame_ms
                end = (int(seg.end_frame) + 1) * self._frame_ms
                out.append(EngineWord(text, start, end))
        return out

    def end(self) -> list[EngineWord]:
        self._decoder.end_utt()
        return self.words()

    def release(self) -> None:
        decoder, self._decoder = self._decoder, None
        if decoder is not None:
            self._cmn[:] = [str(decoder.get_cmn())]
            self._engine.release(decoder)


class PocketSphinxEngine:
    name = "pocketsphinx"
    parallel = True  # decoding holds the GIL: sessions run in worker processes

    def __init__(
        self, *, min_idle: int = 2, max_idle: int = 8, vad_mode: str = "medium_loose"
    ) -> None:
        self.min_idle = min_idle
        self.max_idle = max_idle
        self.vad_mode = VAD_MODES[vad_mode]
        self.params = SegmenterParams()
        self._idle: list[Any] = []
        self._lock = threading.Lock()
        self.decoders_created = 0
        self.last_load_s = 0.0

    def _new_decoder(self) -> Any:
        started = time.perf_counter()
        decoder = pocketsphinx.Decoder(
            samprate=MODEL_RATE,
            dither=False,  # dithered here instead, deterministically per session (dither())
            maxhmmpf=MAX_HMM_PER_FRAME,
            fwdflat=False,
            loglevel="FATAL",
        )
        self.last_load_s = time.perf_counter() - started
        with self._lock:
            self.decoders_created += 1
        log.info("pocketsphinx_decoder_loaded", seconds=round(self.last_load_s, 3))
        return decoder

    def acquire(self) -> Any:
        with self._lock:
            decoder = self._idle.pop() if self._idle else None
        if decoder is None:
            return self._new_decoder()
        # Forget the previous user's feature state (cepstral mean): a pooled decoder must hear
        # a session exactly as a fresh one would, whatever ran on it before.
        decoder.reinit_feat()
        return decoder

    def release(self, decoder: Any) -> None:
        with self._lock:
            if len(self._idle) < self.max_idle:
                self._idle.append(decoder)

    def warm_up(self) -> None:
        while True:
            with self._lock:
                if len(self._idle) >= self.min_idle:
                    return
            self.release(self._new_decoder())

    def open_session(self, options: EngineOptions) -> EngineSession:
        cmn: list[str] = []  # this session's own cepstral mean, shared by its utterances
        return SegmentedSession(
            options,
            decoder_rate=MODEL_RATE,
            classifier=_Vad(self.vad_mode),
            decoder_factory=lambda: _PooledDecoder(self, self.acquire(), cmn),
            params=self.params,
        )


register_engine("pocketsphinx", PocketSphinxEngine)
