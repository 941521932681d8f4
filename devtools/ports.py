"""A port for a server to listen on later, picked now (a federation's addresses go on its trust
lists before any node starts).

Between the pick and the bind the port is free for anyone to take, and the node then fails to
start with "another process listens there". Two takers are kept out:

- The kernel: a port it hands out for port 0 comes from the range it also gives to outgoing
  connections (Linux: /proc/sys/net/ipv4/ip_local_port_range), where any connection made
  meanwhile can take it. Ports are picked from outside that range.
- Other pickers: processes that pick side by side (the test workers) each take their own
  share of the range (`share_ports`), and one process hands out its share in turn from a
  random start, so that it gives no port twice before it has given all of them.

A port is handed out only if binding it succeeds then: something else on the host may hold it.
"""

from __future__ import annotations

import pathlib
import random
import socket

_RANGE_FILE = pathlib.Path("/proc/sys/net/ipv4/ip_local_port_range")
_DEFAULT_EPHEMERAL = (49152, 65535)  # IANA's dynamic ports, used where Linux's file is absent
_LOWEST = 10000  # above the ports services are commonly configured on
_ATTEMPTS = 200

_share = (0, 1)  # this process picks from share 0 of 1: the whole range
_handed = 0  # how many ports this process has tried to hand out, on any host
_start = random.randrange(1 << 30)  # where in its share this process begins


def ephemeral_ports(range_file: pathlib.Path = _RANGE_FILE) -> tuple[int, int]:
    """The first and last port the kernel picks for port 0 and outgoing connections."""
    try:
        low, high = (int(n) for n in range_file.read_text().split())
    except (OSError, ValueError):
        return _DEFAULT_EPHEMERAL
    return low, high


def candidate_ports(ephemeral: tuple[int, int], share: tuple[int, int] = (0, 1)) -> range:
    """Ports to pick from: below the ephemeral range (or above it, when it starts too low),
    and of those the `index`-th of `count` equal slices, `share` being (index, count)."""
    low, high = ephemeral
    ports = range(_LOWEST, low) if low - _LOWEST >= 1000 else range(high + 1, 65536)
    index, count = share
    size = len(ports) // count
    return ports[index * size : (index + 1) * size]


def share_ports(index: int, count: int) -> None:
    """From now on, this process picks only from share `index` of `count`: processes given
    different shares of the same count never pick the same port."""
    global _share
    if not 0 <= index < count:
        raise ValueError(f"share {index} of {count} does not exist")
    _share = (index, count)


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing on `host` holds now, outside the kernel's ephemeral range, and the next
    in turn of this process's share."""
    candidates = candidate_ports(ephemeral_ports(), _share)
    if not candidates:  # the kernel may hand out every port: take one of its own
        with socket.socket() as probe:
            probe.bind((host, 0))
            return int(probe.getsockname()[1])
    global _handed
    for _ in range(_ATTEMPTS):
        port = candidates[(_start + _handed) % len(candidates)]
        _handed += 1
        with socket.socket() as probe:
            try:
                probe.bind((host, port))
            except OSError:
                continue
        return port
    raise RuntimeError(f"no free port on {host} among {_ATTEMPTS} tried in {candidates}")


__all__ = ["candidate_ports", "ephemeral_ports", "free_port", "share_ports"]
