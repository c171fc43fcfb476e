"""A TCP port for a server a test starts by number (settings that have no "0 = any")."""

from __future__ import annotations

import random
import socket


def free_tcp_port() -> int:
    """A port nobody listens on right now, below the kernel's ephemeral range: ports bound
    to 0 and outgoing connections all come from that range, so nothing else in the suite
    takes this one before the server the test starts binds it."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            ephemeral_low = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral_low = 32768
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(10000, max(10001, ephemeral_low))
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below the ephemeral range")
