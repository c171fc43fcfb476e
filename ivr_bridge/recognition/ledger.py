"""The audio ledger: one call channel's timeline in samples, bounded, replayable. Sans-I/O.

The timeline holds real audio from the PBX and silence the bridge inserted while the PBX sent
nothing (hold, a stalled stream). Offsets are absolute samples since the channel started, so
a recognition session that starts at offset S maps its server time t (ms) back to the call as
S + t: both audio (sent as ``chunk``) and inserted silence (sent as ``silence_chunk``) advance
the server's clock exactly as they advance the timeline.

Only the newest ``capacity`` samples are kept. Anything older that was never sent is dropped
and counted; every sample is accounted for: received = sent_first + dropped + pending.

Memory follows what may still be replayed, not the capacity: the channel releases audio that
is sent and final (:meth:`release`), so in steady state the ledger holds only the un-finalized
tail (and, during an outage, what piles up, up to ``capacity``). Audio is kept compactly: a frame
that G.711 mu-law represents exactly (every frame that arrived as mu-law, the usual telephony
case) is stored as one byte per sample and decoded on read, bit-exact; other frames stay PCM16.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from ivr_bridge.audio.codecs import pcm16_to_ulaw, rms, ulaw_to_pcm16

BYTES_PER_SAMPLE = 2
_MAX_BLOCK_SAMPLES = 8000  # merge 20 ms frames into blocks of up to this many samples


@dataclass(slots=True)
class _Block:
    start: int
    length: int
    pcm: bytearray | None  # None: inserted silence
    ulaw: bool = False  # ``pcm`` holds mu-law bytes (one per sample), exact for this audio

    @property
    def width(self) -> int:
        return 1 if self.ulaw else BYTES_PER_SAMPLE

    def pcm16(self, lo: int, hi: int) -> bytes:
        """Samples [lo, hi) of this block (block-relative) as PCM16."""
        assert self.pcm is not None
        if self.ulaw:
            return ulaw_to_pcm16(self.pcm[lo:hi])
        return bytes(self.pcm[lo * BYTES_PER_SAMPLE : hi * BYTES_PER_SAMPLE])

    @property
    def end(self) -> int:
        return self.start + self.length


@dataclass(frozen=True, slots=True)
class Piece:
    """A run read from the ledger: audio (``pcm`` set) or silence (``pcm`` is None)."""

    start: int
    length: int
    pcm: bytes | None

    @property
    def end(self) -> int:
        return self.start + self.length

    @property
    def is_silence(self) -> bool:
        return self.pcm is None


@dataclass(frozen=True, slots=True)
class LedgerStats:
    received_samples: int
    sent_first_samples: int
    replayed_samples: int
    dropped_samples: int
    pending_samples: int
    inserted_silence_samples: int


class AudioLedger:
    """The bounded, replayable timeline of one channel (sans-I/O; see the module docstring).

    The reader appends with :meth:`append_audio`; the session runner reads pieces with
    :meth:`read`, reports what went out with :meth:`note_sent`, and keeps unsent or
    not-yet-final audio with :meth:`hold` so a new session can replay it. :meth:`stats`
    satisfies received = sent_first + dropped + pending at any time.
    """

    def __init__(self, sample_rate: int, capacity_s: float) -> None:
        if sample_rate <= 0 or capacity_s <= 0:
            raise ValueError("sample_rate and capacity_s must be positive")
        self.sample_rate = sample_rate
        self.capacity = int(sample_rate * capacity_s)
        self._blocks: deque[_Block] = deque()
        self._end = 0
        self._base = 0
        self._sent_hw = 0  # timeline offset up to which everything was sent at least once
        # A live session reading from here: trimming waits for it, up to ``overshoot`` more
        # samples, so a replay that starts at the oldest sample is not cut from under it.
        self._hold: int | None = None
        self.overshoot = sample_rate * 5
        self._release = 0  # everything before this offset is sent, final and never re-read
        self.received = 0
        self.sent_first = 0
        self.replayed = 0
        self.dropped = 0
        self.inserted_silence = 0

    # ---- timeline -------------------------------------------------------------------

    @property
    def end(self) -> int:
        return self._end

    @property
    def base(self) -> int:
        """Oldest offset still held; reads before it are impossible."""
        return self._base

    @property
    def sent_high_water(self) -> int:
        return self._sent_hw

    def ms(self, offset: int) -> int:
        return offset * 1000 // self.sample_rate

    def samples(self, ms: int) -> int:
        return ms * self.sample_rate // 1000

    def hold(self, offset: int | None) -> None:
        """Keep samples from ``offset`` on while a session still has to send them."""
        self._hold = offset

    def release(self, offset: int) -> None:
        """Nothing before ``offset`` will be read again (it is final): free it once sent."""
        self._release = max(self._release, offset)
        self._trim()

    @property
    def held_bytes(self) -> int:
        """Bytes of audio currently kept (the ledger's memory, roughly)."""
        return sum(len(b.pcm) for b in self._blocks if b.pcm is not None)

    def append_audio(self, pcm: bytes, wire_ulaw: bytes | None = None) -> None:
        """Append PCM16 samples; ``wire_ulaw``, when given, is the mu-law they were decoded
        from (kept as it is: no encoding, no round-trip check)."""
        n = len(pcm) // BYTES_PER_SAMPLE
        if n == 0:
            return
        if wire_ulaw is not None and len(wire_ulaw) == n:
            stored: bytes = wire_ulaw
            ulaw = True
        else:
            data = pcm[: n * BYTES_PER_SAMPLE]
            compact = pcm16_to_ulaw(data)
            ulaw = ulaw_to_pcm16(compact) == data  # mu-law holds these samples exactly
            stored = compact if ulaw else data
        last = self._blocks[-1] if self._blocks else None
        if (
            last is not None
            and last.pcm is not None
            and last.ulaw == ulaw
            and last.length < _MAX_BLOCK_SAMPLES
        ):
            last.pcm.extend(stored)
            last.length += n
        else:
            self._blocks.append(_Block(self._end, n, bytearray(stored), ulaw))
        self._end += n
        self.received += n
        self._trim()

    def append_silence(self, n: int) -> None:
        if n <= 0:
            return
        last = self._blocks[-1] if self._blocks else None
        if last is not None and last.pcm is None:
            last.length += n
        else:
            self._blocks.append(_Block(self._end, n, None))
        self._end += n
        self.inserted_silence += n
        self._trim()

    def read(self, start: int, max_audio_samples: int, max_silence_samples: int) -> Piece | None:
        """The run at ``start``: contiguous audio up to a limit, or one silence run.

        Returns None when ``start`` is at the end. ``start`` below ``base`` is clamped to it
        (the caller checks ``base`` first to report the loss).
        """
        start = max(start, self._base)
        if start >= self._end:
            return None
        idx = self._find(start)
        block = self._blocks[idx]
        if block.pcm is None:
            length = min(block.end - start, max_silence_samples)
            return Piece(start, length, None)
        take = min(block.end - start, max_audio_samples)
        if take == max_audio_samples or idx + 1 == len(self._blocks):
            # All in one block (blocks hold whole seconds: the usual chunk): no joining.
            lo = start - block.start
            return Piece(start, take, block.pcm16(lo, lo + take))
        out = bytearray()
        pos = start
        while idx < len(self._blocks) and pos - start < max_audio_samples:
            block = self._blocks[idx]
            if block.pcm is None:
                break
            take = min(block.end - pos, max_audio_samples - (pos - start))
            lo = pos - block.start
            out += block.pcm16(lo, lo + take)
            pos += take
            idx += 1
        return Piece(start, pos - start, bytes(out))

    def audio_samples_between(self, start: int, end: int) -> int:
        """How many real (not inserted) samples the timeline holds in [start, end)."""
        total = 0
        for block in self._blocks:
            if block.pcm is None or block.end <= start or block.start >= end:
                continue
            total += min(block.end, end) - max(block.start, start)
        return total

    def quietest_point(self, around: int, radius: int, window: int) -> int:
        """The start of the quietest ``window`` samples within ``around`` +/- ``radius``.

        Used to start a replayed session between words rather than inside one. Inserted
        silence counts as perfectly quiet. Falls back to ``around`` when nothing is held.
        """
        lo = max(self._base, around - radius)
        hi = min(self._end - window, around + radius)
        best, best_energy = around, None
        pos = lo
        while pos <= hi:
            piece = self.read(pos, window, window)
            if piece is None:
                break
            if piece.pcm is None:
                return pos
            if piece.length == window:
                energy = rms(piece.pcm)
                if best_energy is None or energy < best_energy:
                    best, best_energy = pos, energy
            pos += max(1, window // 2)
        return best

    def loudest(self, start: int, end: int, window: int) -> int:
        """The highest RMS of any ``window``-sample stretch of real audio in [start, end)."""
        loudest = 0
        pos = max(start, self._base)
        while pos < end:
            piece = self.read(pos, min(window, end - pos), end - pos)
            if piece is None:
                break
            if piece.pcm is not None:
                loudest = max(loudest, rms(piece.pcm))
            pos = piece.end
        return loudest

    # ---- accounting -----------------------------------------------------------------

    def note_sent(self, piece: Piece) -> None:
        """Count a piece as sent: first time above the high-water mark, replay below it."""
        if piece.pcm is not None:
            fresh = max(0, piece.end - max(piece.start, self._sent_hw))
            self.sent_first += fresh
            self.replayed += piece.length - fresh
        self._sent_hw = max(self._sent_hw, piece.end)

    def abandon_pending(self) -> int:
        """Count everything never sent as dropped (recognition gave up); returns samples."""
        lost = self.audio_samples_between(self._sent_hw, self._end)
        self.dropped += lost
        self._sent_hw = self._end
        return lost

    def stats(self) -> LedgerStats:
        pending = self.audio_samples_between(self._sent_hw, self._end)
        return LedgerStats(
            received_samples=self.received,
            sent_first_samples=self.sent_first,
            replayed_samples=self.replayed,
            dropped_samples=self.dropped,
            pending_samples=pending,
            inserted_silence_samples=self.inserted_silence,
        )

    # ---- internals ------------------------------------------------------------------

    def _find(self, offset: int) -> int:
        # Reads are almost always near the end: scan from the right.
        for i in range(len(self._blocks) - 1, -1, -1):
            if self._blocks[i].start <= offset:
                return i
        return 0

    def _trim(self) -> None:
        if self._end - self._base <= self.capacity and self._release <= self._base:
            return  # nothing over capacity, nothing newly released: the per-frame case
        target = self._end - self.capacity
        if self._hold is not None:
            target = max(min(target, self._hold), self._end - self.capacity - self.overshoot)
        # Released audio goes early, but never what is unsent or what a live session still reads.
        released = min(self._release, self._sent_hw, self._end)
        if self._hold is not None:
            released = min(released, self._hold)
        target = max(target, released)
        if target <= self._base:
            return
        while self._blocks and self._blocks[0].start < target:
            block = self._blocks[0]
            cut_end = min(block.end, target)
            if block.pcm is not None:
                unsent = max(0, cut_end - max(block.start, self._sent_hw))
                self.dropped += unsent
            if block.end <= target:
                self._blocks.popleft()
            else:
                cut = target - block.start
                if block.pcm is not None:
                    del block.pcm[: cut * block.width]
                block.start = target
                block.length -= cut
        self._base = target
        self._sent_hw = max(self._sent_hw, target)
