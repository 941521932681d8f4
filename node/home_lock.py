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


def holder(data_dir: pathlib.Path) -> int | None:
    """The pid of the `serve` holding this home's lock (0 if its file names none), or None
    when no process holds it. Asked with a shared lock, taken and dropped at once."""
    try:
        fd = os.open(data_dir / LOCK_FILE, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _read_pid(fd) or 0
    finally:
        os.close(fd)  # closing the descriptor drops a lock we took
    return None


def _read_pid(fd: int) -> int | None:
    """The pid the holder wrote, if it is a number (a bounded read: it is our own file)."""
    try:
        text = os.pread(fd, 32, 0).decode("ascii", errors="replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
