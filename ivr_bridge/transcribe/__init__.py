"""``ivr-bridge transcribe``: whole-file recognition through SpeechKit's asynchronous APIs.

``audio`` probes and converts input files, ``v3``/``v2`` speak the two asynchronous APIs,
``storage`` uploads to Object Storage, ``results`` turns answers into transcripts and
formats, ``runner`` runs several files with bounded concurrency and a progress display.
"""
