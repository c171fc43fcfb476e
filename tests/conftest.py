"""Suite-wide fixtures: every event published in any test is validated against the schema."""

from tests.events.schema_check import validate_published_events  # noqa: F401
