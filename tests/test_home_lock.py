"""`node.home_lock.holder`: who serves a home, asked without taking its lock (`creditnode
status`), so that a `serve` starting at that moment never finds the home taken by the asker."""

from __future__ import annotations

import fcntl
import os
import pathlib

from node.home_lock import LOCK_FILE, HomeLock, holder


def test_the_holder_is_named_while_it_holds_the_lock_and_asking_takes_nothing(
    tmp_path: pathlib.Path,
) -> None:
    assert holder(tmp_path) is None  # no lock file yet
    lock = HomeLock.acquire(tmp_path)
    try:
        assert holder(tmp_path) == os.getpid()
        # Without the kernel's table: the pid the file names, that process being alive.
        assert holder(tmp_path, tmp_path / "no-proc-locks") == os.getpid()
    finally:
        lock.release()
    assert holder(tmp_path) is None  # released; the file stays
    # A process that died holding it (pid in the file, no lock): not serving.
    (tmp_path / LOCK_FILE).write_text("999999999\n")
    assert holder(tmp_path) is None and holder(tmp_path, tmp_path / "none") is None
    fd = os.open(tmp_path / LOCK_FILE, os.O_RDONLY)
    try:  # asking left the lock free: an exclusive one is granted at once
        assert holder(tmp_path) is None
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(fd)
