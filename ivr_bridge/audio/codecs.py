"""G.711 and PCM16 conversions, resampling and sample arithmetic.

Every audio conversion in the bridge goes through this module, so ``audioop`` (untyped, and on
Python 3.13+ provided by the ``audioop-lts`` package) is imported exactly once, behind typed
wrappers. PCM16 here always means signed 16-bit little-endian samples.
"""

from __future__ import annotations

import math
import warnings
from array import array
from typing import Final

with warnings.catch_warnings():
    # Deprecated on 3.11/3.12 (PEP 594); the replacement package keeps the same module name.
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop as _audioop

PCM16_WIDTH: Final = 2
ULAW_SILENCE: Final = 0xFF  # mu-law code for zero amplitude
ALAW_SILENCE: Final = 0xD5  # A-law code for (near) zero amplitude


def _check_pcm16(pcm: bytes) -> None:
    if len(pcm) % PCM16_WIDTH:
        raise ValueError("PCM16 data must have an even number of bytes")


# ---- G.711 -------------------------------------------------------------------------------


def ulaw_to_pcm16(data: bytes | bytearray) -> bytes:
    """Decode G.711 mu-law (one byte per sample) to PCM16."""
    out: bytes = _audioop.ulaw2lin(data, PCM16_WIDTH)
    return out


def pcm16_to_ulaw(pcm: bytes) -> bytes:
    """Encode PCM16 to G.711 mu-law."""
    _check_pcm16(pcm)
    out: bytes = _audioop.lin2ulaw(pcm, PCM16_WIDTH)
    return out


def alaw_to_pcm16(data: bytes) -> bytes:
    """Decode G.711 A-law (one byte per sample) to PCM16."""
    out: bytes = _audioop.alaw2lin(data, PCM16_WIDTH)
    return out


def pcm16_to_alaw(pcm: bytes) -> bytes:
    """Encode PCM16 to G.711 A-law."""
    _check_pcm16(pcm)
    out: bytes = _audioop.lin2alaw(pcm, PCM16_WIDTH)
    return out


# ---- sample width and channel layout -------------------------------------------------------


def to_pcm16(data: bytes, width: int) -> bytes:
    """Convert signed little-endian integer samples of ``width`` bytes (1-4) to PCM16.

    Keeps the top 16 bits (truncation, like every WAV tool). 8-bit WAV data is unsigned: bias
    it first with :func:`unsigned8_to_signed`.
    """
    if width not in (1, 2, 3, 4):
        raise ValueError("sample width must be 1, 2, 3 or 4 bytes")
    if len(data) % width:
        raise ValueError("data is not a whole number of samples")
    if width == PCM16_WIDTH:
        return bytes(data)
    out: bytes = _audioop.lin2lin(data, width, PCM16_WIDTH)
    return out


def unsigned8_to_signed(data: bytes) -> bytes:
    """Shift unsigned 8-bit samples (WAV's 8-bit PCM) to signed ones."""
    out: bytes = _audioop.bias(data, 1, -128)
    return out


def float_to_pcm16(data: bytes, width: int) -> bytes:
    """Convert IEEE float samples (``width`` 4 or 8 bytes, nominal range +-1.0) to PCM16.

    Out-of-range values clip and NaN becomes silence, as a DAC would do, rather than wrap.
    """
    if width not in (4, 8):
        raise ValueError("float samples must be 4 or 8 bytes wide")
    if len(data) % width:
        raise ValueError("data is not a whole number of samples")
    floats = array("f" if width == 4 else "d")
    floats.frombytes(data)
    ints = array("h", bytes(2 * len(floats)))
    for i, value in enumerate(floats):
        scaled = value * 32768.0
        if scaled >= 32767.0:
            ints[i] = 32767
        elif scaled <= -32768.0:
            ints[i] = -32768
        elif not math.isnan(scaled):
            ints[i] = int(scaled)
    return ints.tobytes()


def mix_to_mono(pcm: bytes, channels: int) -> bytes:
    """Average interleaved PCM16 channels into one (an equal-weight mixdown)."""
    if channels < 1:
        raise ValueError("channels must be at least 1")
    if len(pcm) % (PCM16_WIDTH * channels):
        raise ValueError("data is not a whole number of frames")
    if channels == 1:
        return bytes(pcm)
    if channels == 2:
        out: bytes = _audioop.tomono(pcm, PCM16_WIDTH, 0.5, 0.5)
        return out
    samples = array("h")
    samples.frombytes(pcm)
    mixed = bytes(len(pcm) // channels)
    for c in range(channels):
        plane = samples[c::channels].tobytes()
        mixed = _audioop.add(mixed, _audioop.mul(plane, PCM16_WIDTH, 1.0 / channels), PCM16_WIDTH)
    return mixed


# ---- resampling ----------------------------------------------------------------------------


class Resampler:
    """Streaming PCM16 mono rate converter.

    Carries ``audioop.ratecv`` state between chunks, so audio cut into frames converts exactly as
    the whole would: no clicks or drift at frame boundaries.
    """

    def __init__(self, from_rate: int, to_rate: int) -> None:
        if from_rate <= 0 or to_rate <= 0:
            raise ValueError("sample rates must be positive")
        self.from_rate = from_rate
        self.to_rate = to_rate
        self._state: tuple[int, tuple[tuple[int, int], ...]] | None = None

    def process(self, pcm: bytes) -> bytes:
        """Convert the next chunk; output length follows the running rate ratio."""
        _check_pcm16(pcm)
        if self.from_rate == self.to_rate:
            return bytes(pcm)
        out, self._state = _audioop.ratecv(
            pcm, PCM16_WIDTH, 1, self.from_rate, self.to_rate, self._state
        )
        converted: bytes = out
        return converted


def resample(pcm: bytes, from_rate: int, to_rate: int) -> bytes:
    """Convert a whole PCM16 mono buffer from one rate to another."""
    return Resampler(from_rate, to_rate).process(pcm)


# ---- re-chunking ---------------------------------------------------------------------------


class Rechunker:
    """Cuts a byte stream into fixed-size chunks, carrying the remainder to the next push.

    Platforms want exact frame sizes (Twilio 160-byte mu-law frames, Vonage exactly 20 ms) while
    audio arrives in whatever sizes the producer had.
    """

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("chunk size must be positive")
        self.size = size
        self._buffer = bytearray()

    @property
    def pending(self) -> int:
        """Bytes held back until a chunk is full."""
        return len(self._buffer)

    def push(self, data: bytes) -> list[bytes]:
        """Add data; return every full chunk now available, in order."""
        self._buffer += data
        whole = len(self._buffer) - len(self._buffer) % self.size
        chunks = [bytes(self._buffer[i : i + self.size]) for i in range(0, whole, self.size)]
        del self._buffer[:whole]
        return chunks

    def flush(self, fill: int | None = None) -> bytes:
        """The remainder (possibly empty), padded to a full chunk with ``fill`` bytes if given."""
        rest = bytes(self._buffer)
        self._buffer.clear()
        if rest and fill is not None:
            rest += bytes([fill]) * (self.size - len(rest))
        return rest


# ---- silence and sample arithmetic ---------------------------------------------------------


def silence(samples: int) -> bytes:
    """PCM16 silence of ``samples`` samples."""
    if samples < 0:
        raise ValueError("samples must not be negative")
    return bytes(PCM16_WIDTH * samples)


def ulaw_silence(samples: int) -> bytes:
    """Mu-law silence (0xFF, not 0x00, which is full-scale negative)."""
    if samples < 0:
        raise ValueError("samples must not be negative")
    return bytes([ULAW_SILENCE]) * samples


def samples_for_ms(ms: float, rate: int) -> int:
    """Whole samples in ``ms`` milliseconds at ``rate`` Hz (rounded to nearest)."""
    return round(ms * rate / 1000)


def ms_for_samples(samples: int, rate: int) -> float:
    """Duration of ``samples`` samples at ``rate`` Hz, in milliseconds."""
    return samples * 1000 / rate


def pcm16_samples(pcm: bytes) -> int:
    """Sample count of a mono PCM16 buffer."""
    _check_pcm16(pcm)
    return len(pcm) // PCM16_WIDTH


def pcm16_duration_ms(pcm: bytes, rate: int) -> float:
    """Duration of a mono PCM16 buffer at ``rate`` Hz, in milliseconds."""
    return ms_for_samples(pcm16_samples(pcm), rate)


# ---- measurements ---------------------------------------------------------------------------


def rms(pcm: bytes) -> int:
    """Root-mean-square amplitude of PCM16 samples (0 for empty input)."""
    _check_pcm16(pcm)
    value: int = _audioop.rms(pcm, PCM16_WIDTH)
    return value


def cross(pcm: bytes) -> int:
    """Zero crossings in PCM16 samples: a cheap frequency estimate for steady tones."""
    _check_pcm16(pcm)
    value: int = _audioop.cross(pcm, PCM16_WIDTH)
    return max(0, value)  # audioop says -1 for an empty buffer


def peak(pcm: bytes) -> int:
    """Largest absolute PCM16 sample value (0 for empty input)."""
    _check_pcm16(pcm)
    value: int = _audioop.max(pcm, PCM16_WIDTH)
    return value
