"""Shared fixtures: a throwaway PostgreSQL server for the session, and per-test databases.

`db_url` runs a test once on a real SQLite file and once on a fresh PostgreSQL database;
`store` is a migrated `node.store.Store` on that URL. PostgreSQL never skips: when it cannot
start, every test that needs it fails with the reason. `tls`: each city's TLS key and
certificate, for tests that run nodes over real mutual TLS.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from devtools.ports import share_ports
from node.store import Store
from tests.backends import BACKENDS
from tests.greenloan_helpers import Setup, greenloan_setting
from tests.pg import PostgresServer, PostgresUnavailable
from tests.pki import NodeTls, make_node_tls


def pytest_configure(config: pytest.Config) -> None:
    """Each test worker picks ports from its own share (devtools.ports), so two workers never
    pick the same port for nodes they start side by side."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")  # "gw0", "gw1", … under pytest-xdist
    if worker:
        count = int(os.environ["PYTEST_XDIST_WORKER_COUNT"])
        share_ports(int(worker.removeprefix("gw")) % count, count)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server on 127.0.0.1 for the whole session, removed afterwards."""
    try:
        server = PostgresServer()
    except PostgresUnavailable as exc:
        pytest.fail(f"cannot set up the test PostgreSQL server: {exc}", pytrace=False)
    try:
        server.start()
    except PostgresUnavailable as exc:
        server.stop()
        pytest.fail(f"cannot start the test PostgreSQL server: {exc}", pytrace=False)
    yield server
    server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """SQLAlchemy URL of a fresh, empty PostgreSQL database (test_<n>), dropped afterwards."""
    name = postgres_server.create_database()
    yield postgres_server.url(name)
    postgres_server.drop_database(name)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """SQLAlchemy URL of a (not yet created) SQLite file in the test's tmp_path."""
    return f"sqlite:///{tmp_path / 'node.db'}"


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest) -> str:
    """A fresh empty database URL, once per backend: "sqlite" and "postgres"."""
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    """A Store opened (and migrated to head) on `db_url`, closed afterwards."""
    opened = Store.open(db_url)
    yield opened
    opened.close()


@pytest.fixture
def tls() -> dict[str, NodeTls]:
    """TLS identities of Huzhou, Jiaxing and Shanghai, and of cn-999999, whom no node trusts."""
    return {n: make_node_tls(n) for n in ("cn-330500", "cn-330400", "cn-310000", "cn-999999")}


@pytest.fixture
async def feed(tmp_path: Path) -> AsyncIterator[Setup]:
    """Huzhou's node serving the changefeed, and the provincial sync job's home."""
    async with greenloan_setting(tmp_path) as setup:
        yield setup
