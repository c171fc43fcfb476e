"""Recognition: the SpeechKit clients, credentials, and the sans-I/O session policy."""
