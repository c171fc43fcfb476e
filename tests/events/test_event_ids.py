"""Event ids: random version-4 UUIDs, drawn from a pooled os.urandom, never shared by a
forked worker process and its parent."""

from __future__ import annotations

import os
import uuid

from ivr_bridge.model import new_event_id


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
