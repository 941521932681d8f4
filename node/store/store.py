"""`Store`: one database (SQLite file or PostgreSQL), migrated to head on open, with repositories.

Transactions are context managers that commit on success and roll back on any error, so a
repository method is all or nothing. A database that cannot be reached or has gone away raises
`StoreUnavailable` naming where it is (never the password); nothing else leaks driver errors.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import URL, Engine, func, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.orm import Session

from node.errors import StoreUnavailable
from node.store.changes import ChangeRepository
from node.store.engine import SQLITE_BEGIN, build_engine, describe, parse_url
from node.store.penalties import PenaltyRepository
from node.store.received import ReceivedRepository
from node.store.results import ResultRepository
from node.store.revocations import RevocationRepository
from node.store.trust_floors import TrustFloorRepository

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
# pg_advisory_xact_lock keys (any fixed int64): one migrator at a time when several node
# processes start together; one writer of the changes journal at a time (see lock_changes).
_MIGRATION_LOCK = 0x6372_6564_6D69_6731  # "credmig1"
_CHANGES_LOCK = 0x6372_6564_6368_6731  # "credchg1"


def alembic_config() -> Config:
    """Alembic configured in code: the scripts ship inside the package, no ini file."""
    config = Config()
    # ConfigParser interpolates '%': escape it in the path.
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    return config


def head_revisions() -> tuple[str, ...]:
    """The revision(s) `Store.open` migrates to."""
    return tuple(ScriptDirectory.from_config(alembic_config()).get_heads())


class Store:
    """The node's database. Open with `Store.open(url)`; use as a context manager or close()."""

    def __init__(self, engine: Engine, url: URL) -> None:
        self._engine = engine
        self._url = url
        self.results = ResultRepository(self)
        self.changes = ChangeRepository(self)
        self.revocations = RevocationRepository(self)
        self.received = ReceivedRepository(self)
        self.penalties = PenaltyRepository(self)
        self.trust_floors = TrustFloorRepository(self)

    @classmethod
    def open(cls, url: str | URL, *, migrate: bool = True) -> Store:
        """Connect to `url` and (by default) migrate its schema to head.

        `url` is `sqlite:///path/to/node.db` (the file's directory must exist) or
        `postgresql+psycopg://user@host:port/database`.
        """
        parsed = parse_url(url)
        store = cls(build_engine(parsed), parsed)
        try:
            if migrate:
                store.migrate()
            else:
                with store.connect():
                    pass  # fail now, not at first use, when the database is unreachable
        except BaseException:
            store.close()
            raise
        return store

    @property
    def engine(self) -> Engine:
        return self._engine

    @property
    def dialect(self) -> str:
        """ "sqlite" or "postgresql"."""
        return self._engine.dialect.name

    @property
    def where(self) -> str:
        """Where the database is, fit for messages: file path or host:port/database."""
        return describe(self._url)

    # --- schema -------------------------------------------------------------------------------

    def migrate(self, revision: str = "head") -> None:
        config = alembic_config()
        with self.begin() as conn:
            if self.dialect == "postgresql":
                conn.execute(select(func.pg_advisory_xact_lock(_MIGRATION_LOCK)))
            config.attributes["connection"] = conn
            command.upgrade(config, revision)

    def schema_revisions(self) -> tuple[str, ...]:
        """The revision(s) the database is at; empty before the first migration."""
        with self.connect() as conn:
            return tuple(MigrationContext.configure(conn).get_current_heads())

    # --- transactions -------------------------------------------------------------------------

    @contextlib.contextmanager
    def begin(self) -> Iterator[Connection]:
        """A write transaction: committed when the block ends, rolled back on any error.

        On SQLite it begins IMMEDIATE: it waits (busy timeout) for the write lock up front
        instead of failing half-way when another writer committed since it read.
        """
        with self._translate_unavailable(), self._engine.connect() as conn:
            conn.execution_options(**{SQLITE_BEGIN: "IMMEDIATE"})
            with conn.begin():
                yield conn

    @contextlib.contextmanager
    def connect(self) -> Iterator[Connection]:
        """A connection for reading; whatever it wrote is rolled back unless it commits."""
        with self._translate_unavailable(), self._engine.connect() as conn:
            yield conn

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        """An ORM session inside a write transaction (`begin()`), flushed and committed at the
        end of the block, rolled back on any error."""
        with self.begin() as conn, Session(bind=conn, expire_on_commit=False) as session:
            yield session
            session.flush()

    def lock_changes(self, conn: Connection) -> None:
        """Serialise writers of the `changes` journal until `conn`'s transaction ends.

        A changefeed reader resumes after the last seq it saw, so seqs must become visible in
        order. PostgreSQL hands out sequence values before commit; the lock makes commit order
        follow seq order. SQLite already allows one writer at a time.
        """
        if self.dialect == "postgresql":
            conn.execute(select(func.pg_advisory_xact_lock(_CHANGES_LOCK)))

    @contextlib.contextmanager
    def _translate_unavailable(self) -> Iterator[None]:
        try:
            yield
        except (OperationalError, InterfaceError) as exc:
            raise StoreUnavailable(f"store unavailable: {self.where}: {_first_line(exc)}") from exc
        except DBAPIError as exc:
            if exc.connection_invalidated:
                raise StoreUnavailable(
                    f"store unavailable: {self.where}: connection lost: {_first_line(exc)}"
                ) from exc
            raise

    # --- lifecycle ----------------------------------------------------------------------------

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _first_line(exc: DBAPIError) -> str:
    text = str(exc.orig).strip() if exc.orig is not None else str(exc)
    return text.splitlines()[0] if text else type(exc.orig).__name__
