"""A port for a server to listen on later, picked now (a federation's addresses go on its trust
lists before any node starts).

A port the kernel hands out for port 0 is drawn from the range it also gives to outgoing
connections (Linux: /proc/sys/net/ipv4/ip_local_port_range). Between the pick and the bind,
any connection made on the machine (to PostgreSQL, to another test's server) can take it, and
the node then fails to start with "another process listens there". The port is therefore
drawn at random from outside that range and checked free by binding it; a clash with another
pick is then left to chance among thousands of ports, and a bind still checks the pick.
"""

from __future__ import annotations

import pathlib
import random
import socket

_RANGE_FILE = pathlib.Path("/proc/sys/net/ipv4/ip_local_port_range")
_DEFAULT_EPHEMERAL = (49152, 65535)  # IANA's dynamic ports, used where Linux's file is absent
_LOWEST = 10000  # above the ports services are commonly configured on
_ATTEMPTS = 200


def ephemeral_ports(range_file: pathlib.Path = _RANGE_FILE) -> tuple[int, int]:
    """The first and last port the kernel picks for port 0 and outgoing connections."""
    try:
        low, high = (int(n) for n in range_file.read_text().split())
    except (OSError, ValueError):
        return _DEFAULT_EPHEMERAL
    return low, high


def candidate_ports(ephemeral: tuple[int, int]) -> range:
    """Ports to pick from: below the ephemeral range, or above it when it starts too low."""
    low, high = ephemeral
    if low - _LOWEST >= 1000:
        return range(_LOWEST, low)
    return range(high + 1, 65536)


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing on `host` holds now, outside the kernel's ephemeral range."""
    candidates = candidate_ports(ephemeral_ports())
    if not candidates:  # the kernel may hand out every port: take one of its own
        with socket.socket() as probe:
            probe.bind((host, 0))
            return int(probe.getsockname()[1])
    for _ in range(_ATTEMPTS):
        port = random.choice(candidates)
        with socket.socket() as probe:
            try:
                probe.bind((host, port))
            except OSError:
                continue
        return port
    raise RuntimeError(f"no free port on {host} among {_ATTEMPTS} tried in {candidates}")


__all__ = ["candidate_ports", "ephemeral_ports", "free_port"]
