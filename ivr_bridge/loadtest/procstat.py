"""CPU time and resident memory of another process, read from /proc (Linux)."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class ProcSample:
    cpu_s: float  # user + system, this process and its threads
    rss_bytes: int


def sample(pid: int) -> ProcSample:
    """Read /proc/PID/stat and /proc/PID/status; raises OSError if the process is gone."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # Fields after the command name (which may hold spaces) start after the last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    rss = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) * 1024
            break
    return ProcSample(cpu, rss)


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (every thread's list), from /proc; empty if unknown."""
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                found.extend(int(c) for c in (task / "children").read_text().split())
    return found


def sample_tree(pid: int) -> ProcSample:
    """``sample`` summed over ``pid`` and its children (a multi-worker server's processes)."""
    total = sample(pid)
    for child in children(pid):
        with contextlib.suppress(OSError):
            part = sample(child)
            total = ProcSample(total.cpu_s + part.cpu_s, total.rss_bytes + part.rss_bytes)
    return total
