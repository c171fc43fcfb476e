"""Event sinks: where utterance events go (JSON lines, stdout, webhooks, in-process callbacks)."""
