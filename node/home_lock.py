"""One serving process per node home (issue 14 §6): an exclusive flock(2) on `data/serve.lock`,
held for the life of the process.

The kernel drops the lock when the process ends, however it ends (SIGKILL included), so a file
left behind never blocks a restart; the file holds the holder's pid only to name it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pathlib
from types import TracebackType

from node.errors import ConfigError, HomeInUse

LOCK_FILE = "serve.lock"
PROC_LOCKS = pathlib.Path("/proc/locks")


class HomeLock:
    """`HomeLock.acquire(data_dir)` or HomeInUse naming the process that holds it."""

    def __init__(self, path: pathlib.Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, data_dir: pathlib.Path) -> HomeLock:
        path = data_dir / LOCK_FILE
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except FileNotFoundError:
            raise ConfigError(
                f"{data_dir} does not exist: is this a node home? (creditnode init)"
            ) from None
        except OSError as exc:
            raise ConfigError(f"cannot open {path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            by = f"process {holder}" if holder else "another process"
            raise HomeInUse(
                f"{data_dir.parent} is already served by {by} (it holds {path}); stop it "
                "first, or give this one its own home"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        return cls(path, fd)

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing the descriptor drops the lock
            self._fd = None

    def __enter__(self) -> HomeLock:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def holder(data_dir: pathlib.Path, locks: pathlib.Path = PROC_LOCKS) -> int | None:
    """The pid of the process holding this home's lock, or None when none holds it.

    Read from the kernel's table of locks (`/proc/locks`, by the lock file's inode), never by
    taking the lock: a `serve` starting meanwhile must not find the home taken by the asker.
    Without that table (not Linux), the pid the file names, if that process is alive."""
    path = data_dir / LOCK_FILE
    try:
        inode = path.stat().st_ino
    except OSError:
        return None
    try:
        table = locks.read_text(encoding="ascii", errors="replace")
    except OSError:
        return _live_pid_in(path)
    for line in table.splitlines():
        # "1: FLOCK  ADVISORY  WRITE 4242 fd:01:1311 0 EOF" (a waiter's line has "->")
        fields = line.split()
        if (
            len(fields) >= 6
            and fields[1:4:2] == ["FLOCK", "WRITE"]
            and fields[5].rsplit(":", 1)[-1] == str(inode)
            and fields[4].isdigit()
        ):
            return int(fields[4])
    return None


def _live_pid_in(path: pathlib.Path) -> int | None:
    try:
        text = path.read_text(encoding="ascii", errors="replace")[:32].strip()
    except OSError:
        return None
    if not text.isdigit():
        return None
    try:
        os.kill(int(text), 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # alive, another user's
    return int(text)


def _read_pid(fd: int) -> int | None:
    """The pid the holder wrote, if it is a number (a bounded read: it is our own file)."""
    try:
        text = os.pread(fd, 32, 0).decode("ascii", errors="replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
