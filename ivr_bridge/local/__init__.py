"""The embedded SpeechKit-compatible recognizer (a separate service sharing only the protobufs).

``server`` is the grpc.aio server's lifecycle (``EmbeddedSpeechKitServer``); ``rules`` the
session rules as plain code; ``session`` one call's asyncio tasks; ``workers`` and
``engine_worker`` where decoding runs (worker processes, fair lanes); ``engine`` the engine
seam and registry; ``segmenter`` VAD/endpointing for frame-based engines;
``pocketsphinx_engine`` the default offline engine; ``normalize`` the text normalization
behind ``final_refinement``. See docs/embedded-recognizer.md.
"""
