"""Helpers for tests/test_wire_compat.py; the official_* scripts run in subprocesses."""
