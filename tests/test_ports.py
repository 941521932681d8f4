"""Ports picked before a node starts (devtools.ports): outside the range the kernel hands to
outgoing connections and port-0 binds, so that nothing connecting meanwhile can take them."""

from __future__ import annotations

import pathlib
import socket

from devtools.ports import candidate_ports, ephemeral_ports, free_port


def test_a_picked_port_is_free_and_outside_the_kernels_range() -> None:
    low, high = ephemeral_ports()
    for _ in range(50):
        port = free_port()
        assert not low <= port <= high, port
        with socket.socket() as server:
            server.bind(("127.0.0.1", port))


def test_the_range_is_read_from_linux_or_else_the_iana_one(tmp_path: pathlib.Path) -> None:
    range_file = tmp_path / "ip_local_port_range"
    range_file.write_text("32768\t60999\n")
    assert ephemeral_ports(range_file) == (32768, 60999)
    assert ephemeral_ports(tmp_path / "absent") == (49152, 65535)
    range_file.write_text("garbled\n")
    assert ephemeral_ports(range_file) == (49152, 65535)


def test_ports_come_from_below_the_range_or_else_above_it() -> None:
    assert candidate_ports((32768, 60999)) == range(10000, 32768)
    assert candidate_ports((49152, 65535)) == range(10000, 49152)
    assert candidate_ports((1024, 60999)) == range(61000, 65536)
    assert len(candidate_ports((1024, 65535))) == 0
