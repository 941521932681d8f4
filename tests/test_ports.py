"""Ports picked before a node starts (devtools.ports): outside the range the kernel hands to
outgoing connections and port-0 binds, so that nothing connecting meanwhile can take them."""

from __future__ import annotations

import pathlib
import socket

import pytest

from devtools import ports
from devtools.ports import candidate_ports, ephemeral_ports, free_port, share_ports


def test_a_picked_port_is_free_outside_the_kernels_range_and_not_given_twice() -> None:
    low, high = ephemeral_ports()
    given = []
    for _ in range(200):
        port = free_port()
        assert not low <= port <= high, port
        with socket.socket() as server:
            server.bind(("127.0.0.1", port))
        given.append(port)
    assert len(set(given)) == len(given)


def test_a_port_something_holds_is_passed_over() -> None:
    with socket.socket() as held:
        share = candidate_ports(ephemeral_ports(), ports._share)
        port = share[(ports._start + ports._handed) % len(share)]  # the one due next
        held.bind(("127.0.0.1", port))
        assert free_port() != port


def test_workers_pick_from_shares_that_do_not_meet(monkeypatch: pytest.MonkeyPatch) -> None:
    shares = [candidate_ports((32768, 60999), (i, 3)) for i in range(3)]
    assert [len(s) for s in shares] == [7589] * 3
    assert shares[0][-1] < shares[1][0] and shares[1][-1] < shares[2][0]
    monkeypatch.setattr(ports, "_share", ports._share)  # restored after the test
    share_ports(2, 3)
    mine = candidate_ports(ephemeral_ports(), (2, 3))
    assert all(free_port() in mine for _ in range(20))
    with pytest.raises(ValueError, match="share 3 of 3 does not exist"):
        share_ports(3, 3)


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
