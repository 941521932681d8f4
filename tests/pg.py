"""A throwaway PostgreSQL server for the test session, started from the Debian server packages.

Runs initdb/pg_ctl as the unprivileged `postgres` user when the tests run as root (PostgreSQL
refuses to run as root), listens only on 127.0.0.1 and a unix socket in its own temp dir, and
fails loudly with the server's own log when it cannot start: store tests never skip PostgreSQL.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg

from devtools.ports import free_port

PG_LIB = Path("/usr/lib/postgresql")
SERVER_USER = "postgres"
START_ATTEMPTS = 3  # a free port can be taken between probing and binding it


class PostgresUnavailable(RuntimeError):
    """PostgreSQL could not be found or started; the message says why and what to install."""


def find_bindir(lib: Path = PG_LIB) -> Path:
    """The newest /usr/lib/postgresql/<major>/bin holding initdb and pg_ctl."""
    candidates = []
    for child in lib.glob("*/bin") if lib.is_dir() else []:
        major = child.parent.name
        if major.isdigit() and (child / "initdb").is_file() and (child / "pg_ctl").is_file():
            candidates.append((int(major), child))
    if not candidates:
        raise PostgresUnavailable(
            f"no PostgreSQL server binaries under {lib}/*/bin (initdb, pg_ctl); install the "
            "Debian package postgresql (e.g. postgresql-15)"
        )
    return max(candidates)[1]


class PostgresServer:
    """One PostgreSQL cluster in a temp dir; `start()`, `create_database()`, `stop()`."""

    def __init__(self, bindir: Path | None = None) -> None:
        self.bindir = bindir or find_bindir()
        self.as_root = os.geteuid() == 0
        # As root, /tmp rather than $TMPDIR: every parent must be traversable by the server user.
        self.root = Path(
            tempfile.mkdtemp(prefix="creditx-pg-", dir="/tmp" if self.as_root else None)
        )
        self.datadir = self.root / "data"
        self.logfile = self.root / "server.log"
        self.port = 0
        self._databases = 0
        if self.as_root:
            try:
                owner = pwd.getpwnam(SERVER_USER)
            except KeyError:
                self._remove_root()
                raise PostgresUnavailable(
                    f"running as root, but there is no {SERVER_USER!r} user to run PostgreSQL "
                    "as (PostgreSQL refuses to run as root); install the postgresql package, "
                    "which creates it"
                ) from None
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
            self.root.chmod(0o700)

    # --- running the server's tools -----------------------------------------------------------

    def _run(self, args: list[str], what: str) -> None:
        command = [str(self.bindir / args[0]), *args[1:]]
        if self.as_root:
            if shutil.which("runuser"):
                command = ["runuser", "-u", SERVER_USER, "--", *command]
            else:
                command = ["su", SERVER_USER, "-s", "/bin/sh", "-c", shlex.join(command)]
        # cwd: the server user cannot enter root's working directory.
        done = subprocess.run(
            command, cwd=self.root, capture_output=True, text=True, timeout=120, check=False
        )
        if done.returncode != 0:
            raise PostgresUnavailable(
                f"{what} failed (exit {done.returncode}): {shlex.join(command)}\n"
                f"{done.stdout}{done.stderr}{self._log_tail()}"
            )

    def _log_tail(self) -> str:
        try:
            lines = self.logfile.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\nserver log:\n" + "\n".join(lines[-30:])

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        self._run(
            [
                "initdb", "-D", str(self.datadir), "-U", SERVER_USER, "--auth=trust",
                "--encoding=UTF8", "--locale=C", "--no-sync",
            ],
            "initdb",
        )  # fmt: skip
        for attempt in range(1, START_ATTEMPTS + 1):
            self.port = free_port()
            options = (
                f"-c listen_addresses=127.0.0.1 -c port={self.port} "
                f"-c unix_socket_directories={self.root} -c max_connections=100"
            )
            try:
                self._run(
                    [
                        "pg_ctl", "start", "-D", str(self.datadir), "-l", str(self.logfile),
                        "-w", "-t", "60", "-o", options,
                    ],
                    f"pg_ctl start on 127.0.0.1:{self.port}",
                )  # fmt: skip
                return
            except PostgresUnavailable:
                if attempt == START_ATTEMPTS or "could not bind" not in self._log_tail():
                    raise

    def stop(self) -> None:
        with contextlib.suppress(PostgresUnavailable, subprocess.TimeoutExpired):
            if (self.datadir / "postmaster.pid").exists():
                stop = ["pg_ctl", "stop", "-D", str(self.datadir), "-m", "fast", "-w"]
                self._run(stop, "pg_ctl stop")
        self._remove_root()

    def _remove_root(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    # --- databases ----------------------------------------------------------------------------

    def url(self, database: str) -> str:
        """The SQLAlchemy URL of `database` on this server (psycopg 3 driver)."""
        return f"postgresql+psycopg://{SERVER_USER}@127.0.0.1:{self.port}/{database}"

    def _admin(self) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(
            host="127.0.0.1", port=self.port, user=SERVER_USER, dbname="postgres", autocommit=True
        )

    def create_database(self) -> str:
        """A new empty database `test_<n>`; returns its name."""
        self._databases += 1
        name = f"test_{self._databases}"
        with self._admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        if not re.fullmatch(r"test_\d+", name):
            raise ValueError(f"refusing to drop {name!r}: not a test database")
        with self._admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
