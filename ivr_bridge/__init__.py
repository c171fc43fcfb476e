"""ivr-bridge: phone-call media streams to Yandex SpeechKit streaming recognition."""

__version__ = "0.1.0"
