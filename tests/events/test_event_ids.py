"""Event ids and times. Ids: random version-4 UUIDs, drawn from a pooled os.urandom, never
shared by a forked worker process and its parent. Times: exactly datetime's ISO form."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from ivr_bridge.model import iso_utc, new_event_id


def test_ids_are_distinct_version_4_uuids() -> None:
    ids = [new_event_id() for _ in range(2000)]  # several refills of the pool
    assert len(set(ids)) == len(ids)
    for event_id in ids:
        assert event_id.startswith("evt_")
        parsed = uuid.UUID(event_id[4:])
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122


def test_a_forked_child_does_not_repeat_its_parents_ids() -> None:
    new_event_id()  # the pool now holds ids the child would repeat if it kept them
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next ids, then out without pytest's teardown
        try:
            os.write(write, " ".join(new_event_id() for _ in range(10)).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child = set(pipe.read().split())
    os.waitpid(pid, 0)
    parent = {new_event_id() for _ in range(10)}
    assert len(child) == 10
    assert not child & parent


@settings(max_examples=2000, deadline=None)
@given(
    st.one_of(
        st.floats(min_value=0, max_value=253402300798.0),
        # near whole seconds and milliseconds, where rounding to microseconds carries
        st.builds(
            lambda s, off: s + off,
            st.integers(0, 4_000_000_000),
            st.sampled_from([0.0, 0.0005, 0.0009995, 0.9994995, 0.9995, 0.9999995, 0.99999949]),
        ),
        st.floats(min_value=-1e9, max_value=-0.0),
    )
)
def test_event_time_is_what_datetime_gives(epoch: float) -> None:
    want = (
        datetime.fromtimestamp(epoch, tz=UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )
    assert iso_utc(epoch) == want
