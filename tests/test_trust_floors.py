"""The trust-list version floors kept in the store (issue 9 §5), on a real SQLite file and a
real PostgreSQL server: a node home's list files loaded again after a restart are held to the
versions accepted before."""

from __future__ import annotations

import hashlib
import logging
import pathlib

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from node import signing, trust, trust_files
from node.errors import RolledBackTrustList
from node.home import NodeHome
from node.store import Base, Store
from tests.trust_lists import DAY, T0, make_list, make_member


@pytest.fixture(scope="module")
def coordinator() -> signing.Ed25519Signer:
    return signing.Ed25519Signer.generate()


@pytest.fixture
def home(tmp_path: pathlib.Path, coordinator: signing.Ed25519Signer) -> NodeHome:
    """A node home with hjjw's coordinator key pinned (all that loading trust reads)."""
    node_home = NodeHome(tmp_path / "home")
    node_home.path.mkdir()
    node_home.config_file.write_text("")
    trust_files.pin_coordinator_key(node_home, "hjjw", coordinator.verification_key())
    return node_home


def _install(home: NodeHome, env: signing.Envelope) -> None:
    trust_files.install_trust_list(home.path, "hjjw", env.to_json())


def test_floor_table_matches_its_migration(store: Store) -> None:
    with store.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diffs = compare_metadata(context, Base.metadata)
    assert "trust_list_floors" in Base.metadata.tables
    assert [d for d in diffs if "trust_list_floors" in repr(d)] == []


def test_a_floor_only_rises(store: Store) -> None:
    """Several processes of one node record at once: the highest version wins."""
    floors = store.trust_floors
    floors.record("hjjw", 4, "a" * 64, T0)
    floors.record("hjjw", 3, "b" * 64, T0 + DAY)
    floors.record("hjjw", 4, "c" * 64, T0 + DAY)
    assert floors.recorded() == {"hjjw": (4, "a" * 64)}
    floors.record("hjjw", 5, "d" * 64, T0 + DAY)
    floors.record("yrd", 1, "e" * 64, T0 + DAY)
    assert floors.recorded() == {"hjjw": (5, "d" * 64), "yrd": (1, "e" * 64)}


def test_a_restart_refuses_a_list_older_than_one_accepted_before(
    db_url: str,
    home: NodeHome,
    coordinator: signing.Ed25519Signer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """issue 9 §5: rollback protection survives restarts. v4 removed Jiaxing; v3 dropped
    into zones/ while the node was stopped is refused at start-up, as it is at run time."""
    huzhou, jiaxing = make_member("cn-330500"), make_member("cn-330400")
    v3 = trust.sign_trust_list(make_list(3, huzhou, jiaxing), coordinator)
    v4 = trust.sign_trust_list(make_list(4, huzhou), coordinator)
    _install(home, v4)
    with Store.open(db_url) as store:
        files = trust_files.load_home_trust(home, T0, store.trust_floors)
        assert files.store.trust_list("hjjw").version == 4  # type: ignore[union-attr]
        assert store.trust_floors.recorded() == {
            "hjjw": (4, hashlib.sha256(v4.payload).hexdigest())
        }

    _install(home, v3)
    with Store.open(db_url) as store, caplog.at_level(logging.ERROR, logger="node.trust_files"):
        files = trust_files.load_home_trust(home, T0 + DAY, store.trust_floors)
        assert files.store.zones() == []
        assert files.store.member("hjjw", "cn-330400") is None
        assert isinstance(files.last_errors["hjjw"], RolledBackTrustList)
        assert "version 3, but version 4 was already accepted" in caplog.text
        # The recorded floor did not move; v4 put back is taken again.
        assert store.trust_floors.recorded()["hjjw"][0] == 4
        _install(home, v4)
        assert files.refresh(T0 + DAY) == ["hjjw"]


def test_an_expired_list_in_force_before_a_restart_is_held_and_reported(
    db_url: str,
    home: NodeHome,
    coordinator: signing.Ed25519Signer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """issue 9 §5: at start-up an expired list is reported, not silently dropped: the list
    last accepted is held again, granting nothing, and its expiry is logged as an error."""
    huzhou = make_member("cn-330500")
    _install(home, trust.sign_trust_list(make_list(1, huzhou, valid=DAY), coordinator))
    with Store.open(db_url) as store:
        trust_files.load_home_trust(home, T0, store.trust_floors)
    later = T0 + 2 * DAY
    with Store.open(db_url) as store, caplog.at_level(logging.ERROR, logger="node.trust_files"):
        files = trust_files.load_home_trust(home, later, store.trust_floors)
    assert files.store.expired_zones(later) == ["hjjw"]
    assert files.store.zones_in_force(later) == []
    [record] = [r for r in caplog.records if "expired at" in r.getMessage()]
    assert "zone hjjw: trust list version 1 expired at 2026-05-02T00:00:00Z" in record.getMessage()
    assert record.levelno == logging.ERROR
