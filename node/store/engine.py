"""Engines for the two supported backends, tuned for durability, and their failure messages.

SQLite: WAL journal, synchronous=FULL (no answer leaves before its log entry is durable,
DESIGN.md §7), foreign keys on, a busy timeout, write transactions that take the write lock at
BEGIN, and files private to the node's user (0600). PostgreSQL: psycopg 3, pre-pinged pooled
connections, a bounded connect timeout.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
from typing import Any, Protocol

from sqlalchemy import URL, Engine, create_engine, event, make_url
from sqlalchemy.engine import Connection
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import ConnectionPoolEntry, StaticPool

from node.errors import ConfigError

BUSY_TIMEOUT_MS = 10_000
CONNECT_TIMEOUT_S = 10
# Execution option naming how a SQLite transaction begins; `Store.begin()` sets IMMEDIATE so a
# writer holds the write lock from the start and never fails half-way with SQLITE_BUSY.
# BY_CALLER: the caller issues BEGIN itself on the driver connection (the sequencer's hot path,
# where SQLAlchemy's statement machinery for one BEGIN cost more than the BEGIN).
SQLITE_BEGIN = "creditx_sqlite_begin"
SQLITE_BEGIN_BY_CALLER = "BY_CALLER"
_SQLITE_BEGIN_MODES = frozenset({"DEFERRED", "IMMEDIATE", SQLITE_BEGIN_BY_CALLER})
# The database holds resident ids and the exchange log: its file and the -wal and -shm files
# SQLite keeps beside it are readable by the node's user alone.
SQLITE_FILE_MODE = 0o600
_SQLITE_FILE_SUFFIXES = ("", "-wal", "-shm")


def parse_url(url: str | URL) -> URL:
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError(f"store URL {url!r} is not a database URL: {exc}") from None
    backend = parsed.get_backend_name()
    if backend == "postgresql":
        if parsed.drivername == "postgresql":  # no driver named: use psycopg 3
            parsed = parsed.set(drivername="postgresql+psycopg")
        elif parsed.get_driver_name() != "psycopg":
            raise ConfigError(
                f"store URL {describe(parsed)} names driver {parsed.get_driver_name()!r}; "
                "use postgresql+psycopg:// (psycopg 3)"
            )
    elif backend != "sqlite":
        raise ConfigError(
            f"store URL {describe(parsed)} uses {backend!r}; supported: sqlite:///path/to/file.db "
            "and postgresql+psycopg://user@host:port/database"
        )
    return parsed


def describe(url: URL) -> str:
    """Where the store is, for messages: the SQLite file or host:port/database, no password."""
    if url.get_backend_name() == "sqlite":
        return f"SQLite file {url.database}" if is_file_sqlite(url) else "in-memory SQLite"
    host = url.host or "localhost (unix socket)"
    port = url.port or 5432
    return f"PostgreSQL at {host}:{port}/{url.database or ''}"


def is_file_sqlite(url: URL) -> bool:
    return url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:")


def build_engine(url: URL) -> Engine:
    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(url)
    return create_engine(
        url,
        pool_pre_ping=True,  # several node processes share one server; survive its restarts
        connect_args={"connect_timeout": CONNECT_TIMEOUT_S},
    )


def _sqlite_engine(url: URL) -> Engine:
    on_file = is_file_sqlite(url)
    if on_file and url.database is not None and not url.query.get("uri"):
        make_sqlite_files_private(url.database)
    engine = create_engine(
        url,
        connect_args={"timeout": BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
        # An in-memory database exists once per connection: share one.
        **({} if on_file else {"poolclass": StaticPool}),
    )

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: sqlite3.Connection, _record: ConnectionPoolEntry) -> None:
        # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin (below).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            if on_file:
                cursor.execute("PRAGMA journal_mode=WAL")
            # FULL: in WAL mode, NORMAL may lose the last commits on power loss.
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        options: dict[str, Any] = dict(conn.get_execution_options())
        mode = str(options.get(SQLITE_BEGIN, "DEFERRED"))
        if mode not in _SQLITE_BEGIN_MODES:
            raise ValueError(f"{SQLITE_BEGIN} must be one of {sorted(_SQLITE_BEGIN_MODES)}")
        if mode != SQLITE_BEGIN_BY_CALLER:
            conn.exec_driver_sql(f"BEGIN {mode}")

    return engine


def make_sqlite_files_private(database: str) -> None:
    """Create the database file 0600 if missing, and narrow it and its -wal and -shm to 0600.

    SQLite creates -wal and -shm with the database file's mode, so a new store is private from
    its first byte; files left by an older version or another tool are narrowed here, on open.
    A missing directory is left for SQLite to report.
    """
    if os.name != "posix":
        return  # Windows has no mode bits: access is the directory's ACL
    with contextlib.suppress(FileExistsError, FileNotFoundError):
        os.close(os.open(database, os.O_RDONLY | os.O_CREAT | os.O_EXCL, SQLITE_FILE_MODE))
    for path in (database + suffix for suffix in _SQLITE_FILE_SUFFIXES):
        try:
            mode = stat.S_IMODE(os.stat(path).st_mode)
            if mode & ~SQLITE_FILE_MODE:
                os.chmod(path, SQLITE_FILE_MODE)
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise ConfigError(
                f"SQLite file {path} is not private to this user and cannot be made "
                f"{SQLITE_FILE_MODE:04o} ({exc.strerror}); have its owner run "
                f"`chmod 600 {path}`"
            ) from None


class Database(Protocol):
    """What a repository needs of the store (`node.store.Store` is one): transactions and
    connections on its database, and the dialect for the statements that differ."""

    @property
    def dialect(self) -> str: ...

    def begin(self) -> contextlib.AbstractContextManager[Connection]: ...

    def connect(self) -> contextlib.AbstractContextManager[Connection]: ...

    def lock_changes(self, conn: Connection) -> None: ...
