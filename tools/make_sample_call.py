#!/usr/bin/env python3
"""Regenerate the bundled sample call (ivr_bridge/data/sample_call.*) and measure it.

The sample is the caller side of a short call-center call, synthesized from the fixed
script in ``UTTERANCES`` with a freely licensed text-to-speech voice, laid out with
natural pauses, passed to 8 kHz and stored as 8-bit G.711 mu-law WAV (format tag 7), the
way a telephone media stream carries it. Next to it go the reference transcript (.txt),
the utterance timings (.json); ivr_bridge/data/README.md documents all of it.

Run from the repository root with the project's virtualenv::

    .venv/bin/python tools/make_sample_call.py                  # synthesize, write, measure
    .venv/bin/python tools/make_sample_call.py --measure-only   # measure the shipped WAV
    .venv/bin/python tools/make_sample_call.py --compare-voices # voice shoot-out, no writes

What it needs installed:

* synthesis (default mode): ``sox`` and Festival with the kal diphone voice; on
  Debian/Ubuntu ``apt-get install sox festival festvox-kallpc16k`` (this pulls in
  festlex-cmu and festlex-poslex);
* ``--compare-voices`` also tries ``festvox-kdlpc16k``, ``festvox-us-slt-hts`` and
  ``espeak-ng`` (apt packages of those names), skipping any that is missing;
* measuring (every mode): the ``pocketsphinx`` wheel, a project dependency, with its stock
  US English model; ``--measure-only`` needs neither a TTS nor sox.

The recognizer is never tuned to the script: stock acoustic model, stock language model,
stock dictionary, no grammar or keyphrases.

Output is byte-for-byte reproducible for given package versions: the line noise is seeded
and sox runs without dither.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import warnings
import wave
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

with warnings.catch_warnings():
    # Deprecated on 3.11/3.12; on 3.13+ the audioop-lts package (a project dependency).
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "ivr_bridge" / "data"
sys.path.insert(0, str(ROOT))

from ivr_bridge.wer import WerResult, word_error_rate  # noqa: E402

# The caller's side of the call, one utterance per entry (lowercase words, no punctuation:
# the same text is the reference transcript).
UTTERANCES: tuple[str, ...] = (
    "hello i am calling about a problem with my internet bill",
    "i was charged twice for the same month",
    "my account number is four five two seven nine one",
    "the name on the account is john smith",
    "can you please refund the extra charge to my credit card",
    "thank you very much for your help",
)
LEAD_IN_S = 0.5
# Silence between consecutive utterances (the agent talks on the other channel meanwhile).
PAUSES_S: tuple[float, ...] = (1.2, 0.9, 1.5, 1.1, 1.3)
TAIL_S = 1.0
WIDE_RATE = 16000  # the stock en-us model's rate
PHONE_RATE = 8000
SPEECH_RMS_DBFS = -22.0  # level of each utterance
PEAK_LIMIT_DBFS = -1.0
NOISE_RMS_DBFS = -60.0  # faint line noise under the whole call
NOISE_SEED = 20240611
DEFAULT_VOICE = "festival-kal-1.15"
FULL_SCALE = 32768.0


# ---- voices ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Voice:
    name: str
    description: str
    needs: tuple[str, ...]  # executables
    command: Callable[[str, Path], list[str]]  # (text file, output wav) -> argv
    probe: Path | None = None  # a file that must exist (the voice's data)


def _festival(voice: str, setup: str = "") -> Callable[[str, Path], list[str]]:
    def command(text_file: str, out: Path) -> list[str]:
        return ["text2wave", "-eval", f"(begin (voice_{voice}) {setup})", "-o", str(out), text_file]

    return command


def _espeak(voice: str, words_per_minute: int) -> Callable[[str, Path], list[str]]:
    def command(text_file: str, out: Path) -> list[str]:
        wpm = str(words_per_minute)
        return ["espeak-ng", "-v", voice, "-s", wpm, "-f", text_file, "-w", str(out)]

    return command


_KAL = Path("/usr/share/festival/voices/english/kal_diphone")
_KED = Path("/usr/share/festival/voices/english/ked_diphone")
_SLT = Path("/usr/share/festival/voices/us/cmu_us_slt_arctic_hts")


def _stretch(factor: float) -> str:
    return f"(Parameter.set 'Duration_Stretch {factor})"


VOICES: dict[str, Voice] = {
    v.name: v
    for v in (
        Voice(
            "festival-kal-1.15",
            "Festival 2.5 kal_diphone (US English male, festvox-kallpc16k), Duration_Stretch 1.15",
            ("text2wave",),
            _festival("kal_diphone", _stretch(1.15)),
            _KAL,
        ),
        Voice(
            "festival-kal",
            "Festival 2.5 kal_diphone (US English male, festvox-kallpc16k), voice defaults",
            ("text2wave",),
            _festival("kal_diphone"),
            _KAL,
        ),
        Voice(
            "festival-kal-0.95",
            "Festival 2.5 kal_diphone (US English male, festvox-kallpc16k), Duration_Stretch 0.95",
            ("text2wave",),
            _festival("kal_diphone", _stretch(0.95)),
            _KAL,
        ),
        Voice(
            "festival-ked-1.1",
            "Festival 2.5 ked_diphone (US English male, festvox-kdlpc16k), Duration_Stretch 1.1",
            ("text2wave",),
            _festival("ked_diphone", _stretch(1.1)),
            _KED,
        ),
        Voice(
            "festival-slt-hts",
            "Festival 2.5 cmu_us_slt_arctic_hts (US English female, CMU ARCTIC slt,"
            " festvox-us-slt-hts), voice defaults",
            ("text2wave",),
            _festival("cmu_us_slt_arctic_hts"),
            _SLT,
        ),
        Voice(
            "espeak-en-us-175",
            "espeak-ng 1.51 en-us, 175 words/min (default)",
            ("espeak-ng",),
            _espeak("en-us", 175),
        ),
        Voice(
            "espeak-en-us-150",
            "espeak-ng 1.51 en-us, 150 words/min",
            ("espeak-ng",),
            _espeak("en-us", 150),
        ),
    )
}


def voice_available(voice: Voice) -> bool:
    tools = (*voice.needs, "sox")
    return all(shutil.which(t) for t in tools) and (voice.probe is None or voice.probe.exists())


# ---- audio helpers --------------------------------------------------------------------


def read_wav_pcm16(path: Path) -> tuple[bytes, int]:
    """Mono 16-bit PCM of a PCM WAV file, and its rate."""
    with wave.open(str(path), "rb") as w:
        if w.getnchannels() != 1 or w.getsampwidth() != 2:
            raise ValueError(f"{path}: expected mono 16-bit PCM")
        return w.readframes(w.getnframes()), w.getframerate()


def write_wav_pcm16(path: Path, pcm: bytes, rate: int) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)


def sox_rate(src: Path, dst: Path, rate: int) -> None:
    """Convert ``src`` (any format sox reads) to mono 16-bit PCM WAV at ``rate`` with sox's
    band-limited, very-high-quality ``rate`` effect. ``-R -D``: no (time-seeded) dither, so
    regenerating gives the same bytes; PocketSphinx's hypotheses change with a 1 LSB
    dither difference."""
    subprocess.run(
        [
            "sox",
            "-q",
            "-R",
            "-D",
            str(src),
            "-b",
            "16",
            "-c",
            "1",
            str(dst),
            "rate",
            "-v",
            str(rate),
        ],
        check=True,
    )


def sox_resample(pcm: bytes, rate_in: int, rate_out: int, tmp: Path) -> bytes:
    """Resample mono 16-bit PCM with :func:`sox_rate`."""
    src, dst = tmp / "resample-in.wav", tmp / "resample-out.wav"
    write_wav_pcm16(src, pcm, rate_in)
    sox_rate(src, dst, rate_out)
    out, rate = read_wav_pcm16(dst)
    assert rate == rate_out
    return out


def synthesize(voice: Voice, text: str, tmp: Path) -> bytes:
    """``text`` spoken by ``voice`` as 16 kHz mono 16-bit PCM."""
    text_file = tmp / "utterance.txt"
    text_file.write_text(text + "\n", encoding="utf-8")
    raw, converted = tmp / "tts.wav", tmp / "tts16k.wav"
    subprocess.run(voice.command(str(text_file), raw), check=True, capture_output=True)
    sox_rate(raw, converted, WIDE_RATE)
    pcm, _ = read_wav_pcm16(converted)
    return pcm


def trim_silence(pcm: bytes, rate: int, floor_db: float = -45.0, margin_s: float = 0.03) -> bytes:
    """Cut the synthesizer's leading and trailing silence (10 ms frames quieter than
    ``floor_db`` below the loudest frame), keeping ``margin_s`` around the speech."""
    frame = rate // 100 * 2
    levels = [audioop.rms(pcm[i : i + frame], 2) for i in range(0, len(pcm), frame)]
    threshold = max(levels) * 10 ** (floor_db / 20)
    loud = [i for i, level in enumerate(levels) if level > threshold]
    margin = int(margin_s * 100)
    first = max(loud[0] - margin, 0) * frame
    last = min(loud[-1] + 1 + margin, len(levels)) * frame
    return pcm[first:last]


def set_level(pcm: bytes) -> bytes:
    """Scale to ``SPEECH_RMS_DBFS`` RMS, lowering it if the peak would pass the limit."""
    gain = FULL_SCALE * 10 ** (SPEECH_RMS_DBFS / 20) / audioop.rms(pcm, 2)
    peak_limit = FULL_SCALE * 10 ** (PEAK_LIMIT_DBFS / 20)
    gain = min(gain, peak_limit / audioop.max(pcm, 2))
    return audioop.mul(pcm, 2, gain)


def silence(seconds: float, rate: int) -> bytes:
    return bytes(2 * round(seconds * rate))


def add_line_noise(pcm: bytes) -> bytes:
    """Add faint seeded Gaussian noise (``NOISE_RMS_DBFS``), so pauses are not digital
    zero, as on a real line."""
    rng = random.Random(NOISE_SEED)
    sigma = FULL_SCALE * 10 ** (NOISE_RMS_DBFS / 20)
    samples = array("h", pcm)
    for i, s in enumerate(samples):
        samples[i] = max(-32768, min(32767, s + round(rng.gauss(0.0, sigma))))
    return samples.tobytes()


@dataclass(frozen=True)
class Span:
    text: str
    start_s: float
    end_s: float


def assemble(utterances: Sequence[bytes], rate: int) -> tuple[bytes, list[Span]]:
    """Lay the utterances out with the lead-in, pauses and tail; return PCM and spans."""
    parts = [silence(LEAD_IN_S, rate)]
    spans: list[Span] = []
    position = len(parts[0]) // 2
    for i, (text, pcm) in enumerate(zip(UTTERANCES, utterances, strict=True)):
        if i:
            gap = silence(PAUSES_S[i - 1], rate)
            parts.append(gap)
            position += len(gap) // 2
        parts.append(pcm)
        spans.append(Span(text, position / rate, (position + len(pcm) // 2) / rate))
        position += len(pcm) // 2
    parts.append(silence(TAIL_S, rate))
    return add_line_noise(b"".join(parts)), spans


# ---- mu-law WAV -----------------------------------------------------------------------

WAVE_FORMAT_MULAW = 7


def write_mulaw_wav(path: Path, mulaw: bytes, rate: int) -> None:
    """RIFF/WAVE, fmt tag 7 (G.711 mu-law), mono, 8 bits, cbSize 0, with a fact chunk."""
    fmt = struct.pack("<HHIIHHH", WAVE_FORMAT_MULAW, 1, rate, rate, 1, 8, 0)
    fact = struct.pack("<I", len(mulaw))
    pad = b"\0" * (len(mulaw) % 2)
    body = (
        b"WAVE"
        + b"fmt "
        + struct.pack("<I", len(fmt))
        + fmt
        + b"fact"
        + struct.pack("<I", len(fact))
        + fact
        + b"data"
        + struct.pack("<I", len(mulaw))
        + mulaw
        + pad
    )
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)


def read_mulaw_wav(path: Path) -> tuple[bytes, int]:
    """The mu-law bytes and rate of a mono 8-bit mu-law WAV (as written above)."""
    blob = path.read_bytes()
    if blob[:4] != b"RIFF" or blob[8:12] != b"WAVE":
        raise ValueError(f"{path}: not a RIFF/WAVE file")
    pos, rate, data = 12, 0, None
    while pos + 8 <= len(blob):
        cid, size = blob[pos : pos + 4], struct.unpack_from("<I", blob, pos + 4)[0]
        body = blob[pos + 8 : pos + 8 + size]
        if cid == b"fmt ":
            tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", body)
            if (tag, channels, bits) != (WAVE_FORMAT_MULAW, 1, 8):
                raise ValueError(f"{path}: expected mono 8-bit mu-law, got {tag=} {channels=}")
        elif cid == b"data":
            data = body
        pos += 8 + size + size % 2
    if data is None or not rate:
        raise ValueError(f"{path}: no fmt or data chunk")
    return data, rate


def phone_to_wide(mulaw: bytes) -> bytes:
    """What a bridge feeding the 16 kHz model does: mu-law -> linear -> 16 kHz."""
    linear = audioop.ulaw2lin(mulaw, 2)
    wide, _ = audioop.ratecv(linear, 2, 1, PHONE_RATE, WIDE_RATE, None)
    return wide


# ---- recognition ----------------------------------------------------------------------


class Engine:
    """Stock PocketSphinx: the wheel's US English acoustic model, language model and
    dictionary, at 16 kHz; nothing built from the script. Times its own work."""

    def __init__(self) -> None:
        from pocketsphinx import Decoder

        self._decoder: Any = Decoder(samprate=WIDE_RATE, loglevel="FATAL")
        self.cpu_s = 0.0
        self.wall_s = 0.0

    def _timed(self, call: Callable[[], Any]) -> Any:
        cpu, wall = time.process_time(), time.perf_counter()
        result = call()
        self.cpu_s += time.process_time() - cpu
        self.wall_s += time.perf_counter() - wall
        return result

    def start(self) -> None:
        self._timed(self._decoder.start_utt)

    def feed(self, pcm: bytes, full_utt: bool = False) -> None:
        self._timed(lambda: self._decoder.process_raw(pcm, False, full_utt))

    def end(self) -> str:
        self._timed(self._decoder.end_utt)
        hyp = self._decoder.hyp()
        return str(hyp.hypstr) if hyp is not None else ""

    def whole(self, pcm: bytes) -> str:
        """One utterance decoded in one go (full_utt: batch cepstral mean normalization)."""
        self.start()
        self.feed(pcm, full_utt=True)
        return self.end()


@dataclass(frozen=True)
class Run:
    mode: str
    hypotheses: list[str]
    wer: WerResult
    cpu_s: float  # decoding CPU time (one thread)
    wall_s: float
    audio_s: float  # audio given to the decoder

    @property
    def rtf(self) -> float:
        """Real-time factor: decoding CPU time / audio duration."""
        return self.cpu_s / self.audio_s


def _run(mode: str, hyps: list[str], spans: Sequence[Span], engine: Engine, audio_s: float) -> Run:
    wer = word_error_rate(" ".join(s.text for s in spans), " ".join(hyps))
    return Run(mode, hyps, wer, engine.cpu_s, engine.wall_s, audio_s)


def decode_per_utterance(pcm: bytes, spans: Sequence[Span], margin_s: float = 0.2) -> Run:
    """Each utterance cut out with ``margin_s`` of its surrounding pause, decoded alone."""
    engine = Engine()
    total = len(pcm) // 2
    hyps, samples = [], 0
    for span in spans:
        first = max(round((span.start_s - margin_s) * WIDE_RATE), 0)
        last = min(round((span.end_s + margin_s) * WIDE_RATE), total)
        hyps.append(engine.whole(pcm[2 * first : 2 * last]))
        samples += last - first
    return _run("per utterance", hyps, spans, engine, samples / WIDE_RATE)


def decode_stream(pcm: bytes, spans: Sequence[Span], chunk_ms: int = 20) -> Run:
    """The whole call as one utterance, fed in ``chunk_ms`` pieces as they would arrive
    (live cepstral mean normalization, no segmentation)."""
    engine = Engine()
    step = 2 * WIDE_RATE * chunk_ms // 1000
    engine.start()
    for i in range(0, len(pcm), step):
        engine.feed(pcm[i : i + step])
    return _run("one continuous stream", [engine.end()], spans, engine, len(pcm) / 2 / WIDE_RATE)


def decode_endpointed(pcm: bytes, spans: Sequence[Span]) -> Run:
    """Streamed through PocketSphinx's own VAD endpointer (defaults), one utterance per
    detected speech segment."""
    from pocketsphinx import Endpointer

    engine = Engine()
    endpointer: Any = Endpointer(sample_rate=WIDE_RATE)
    step: int = endpointer.frame_bytes
    hyps: list[str] = []
    for i in range(0, len(pcm), step):
        frame = pcm[i : i + step]
        was_in_speech = endpointer.in_speech
        speech = endpointer.end_stream(frame) if len(frame) < step else endpointer.process(frame)
        if speech is not None:
            if not was_in_speech:
                engine.start()
            engine.feed(speech)
            if not endpointer.in_speech:
                hyps.append(engine.end())
    if endpointer.in_speech:
        hyps.append(engine.end())
    return _run("VAD-endpointed stream", hyps, spans, engine, len(pcm) / 2 / WIDE_RATE)


def measure(pcm16k: bytes, spans: Sequence[Span]) -> list[Run]:
    return [
        decode_per_utterance(pcm16k, spans),
        decode_stream(pcm16k, spans),
        decode_endpointed(pcm16k, spans),
    ]


def describe(run: Run) -> str:
    w = run.wer
    return (
        f"{run.mode:<22} WER {w.wer:6.1%} ({w.substitutions:2d} sub, {w.deletions:2d} del,"
        f" {w.insertions:2d} ins / {w.reference_words} words)  RTF {run.rtf:.3f}"
        f" ({run.cpu_s:.2f} s CPU, {run.wall_s:.2f} s wall, for {run.audio_s:.1f} s of audio)"
    )


def report(title: str, runs: Sequence[Run], spans: Sequence[Span], verbose: bool) -> None:
    print(title)
    for run in runs:
        print("  " + describe(run))
        if not verbose:
            continue
        if run.mode == "per utterance":
            for span, hyp in zip(spans, run.hypotheses, strict=True):
                print(f"      ref: {span.text}\n      hyp: {hyp}")
        else:
            for hyp in run.hypotheses:
                print(f"      hyp: {hyp}")


# ---- modes ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    wide: bytes  # 16 kHz PCM, the wideband original
    mulaw: bytes  # 8 kHz mu-law, what ships
    spans: list[Span]


def make_call(voice: Voice, tmp: Path) -> Call:
    utterances = [set_level(trim_silence(synthesize(voice, t, tmp), WIDE_RATE)) for t in UTTERANCES]
    wide, spans = assemble(utterances, WIDE_RATE)
    narrow = sox_resample(wide, WIDE_RATE, PHONE_RATE, tmp)
    return Call(wide, audioop.lin2ulaw(narrow, 2), spans)


def write_call(call: Call, voice: Voice, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    write_mulaw_wav(out_dir / "sample_call.wav", call.mulaw, PHONE_RATE)
    (out_dir / "sample_call.txt").write_text(
        "".join(s.text + "\n" for s in call.spans), encoding="utf-8"
    )
    meta = {
        "audio": "sample_call.wav",
        "encoding": "G.711 mu-law, 8 bit, mono (WAVE format tag 7)",
        "sample_rate": PHONE_RATE,
        "duration_s": round(len(call.mulaw) / PHONE_RATE, 3),
        "language": "en-US",
        "speaker": "caller",
        "voice": voice.description,
        "generator": "tools/make_sample_call.py",
        "utterances": [
            {"index": i, "start_s": round(s.start_s, 2), "end_s": round(s.end_s, 2), "text": s.text}
            for i, s in enumerate(call.spans)
        ],
    }
    (out_dir / "sample_call.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")


def load_spans(json_path: Path) -> list[Span]:
    meta = json.loads(json_path.read_text(encoding="utf-8"))
    return [Span(u["text"], float(u["start_s"]), float(u["end_s"])) for u in meta["utterances"]]


def compare_voices(names: Sequence[str], verbose: bool) -> int:
    rows: list[tuple[str, float, list[Run], list[Run]]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names or VOICES:
            voice = VOICES[name]
            if not voice_available(voice):
                print(f"{voice.name}: not installed, skipped")
                continue
            call = make_call(voice, Path(tmp))
            phone = measure(phone_to_wide(call.mulaw), call.spans)
            wide = measure(call.wide, call.spans)
            title = f"{voice.name} ({voice.description})"
            report(f"{title}, telephone channel:", phone, call.spans, verbose)
            report(f"{voice.name}, 16 kHz wideband:", wide, call.spans, verbose)
            rows.append((voice.name, len(call.mulaw) / PHONE_RATE, phone, wide))
    print()
    print("WER by voice: telephone channel (utt / stream / vad) | 16 kHz wideband (utt / stream)")
    for name, seconds, phone, wide in rows:
        cells = " / ".join(f"{r.wer.wer:5.1%}" for r in phone)
        wide_cells = " / ".join(f"{r.wer.wer:5.1%}" for r in wide[:2])
        print(f"  {name:<20} {seconds:5.1f} s   {cells} | {wide_cells}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--measure-only", action="store_true", help="only measure the shipped WAV (no TTS)"
    )
    group.add_argument(
        "--compare-voices",
        nargs="*",
        metavar="VOICE",
        choices=sorted(VOICES),
        help="measure these voices (default: all installed ones) and write nothing",
    )
    parser.add_argument("--voice", choices=sorted(VOICES), default=DEFAULT_VOICE)
    parser.add_argument("--out-dir", type=Path, default=DATA, help="default: ivr_bridge/data")
    parser.add_argument("-v", "--verbose", action="store_true", help="print the hypotheses")
    args = parser.parse_args(argv)
    out_dir: Path = args.out_dir

    if args.compare_voices is not None:
        return compare_voices(args.compare_voices, args.verbose)

    if not args.measure_only:
        voice = VOICES[args.voice]
        if not voice_available(voice):
            needs = ", ".join((*voice.needs, "sox"))
            raise SystemExit(f"{voice.name} needs {needs} and its voice data installed")
        with tempfile.TemporaryDirectory() as tmp:
            call = make_call(voice, Path(tmp))
        write_call(call, voice, out_dir)
        seconds = len(call.mulaw) / PHONE_RATE
        print(f"wrote {out_dir}/sample_call.{{wav,txt,json}}: {seconds:.1f} s, {voice.name}")

    # Measure what is on disk, read back the way the tests and the demo read it.
    mulaw, rate = read_mulaw_wav(out_dir / "sample_call.wav")
    if rate != PHONE_RATE:
        raise SystemExit(f"expected {PHONE_RATE} Hz, got {rate}")
    spans = load_spans(out_dir / "sample_call.json")
    phone = measure(phone_to_wide(mulaw), spans)
    report("telephone channel (8 kHz mu-law -> 16 kHz):", phone, spans, args.verbose)
    if not args.measure_only:
        wide = measure(call.wide, spans)
        report(
            "16 kHz wideband (the same call before the telephone channel):",
            wide,
            spans,
            args.verbose,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
