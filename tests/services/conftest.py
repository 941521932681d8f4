"""Fixtures shared by the service tests: a Huzhou node on real gRPC with real mutual TLS."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from node import model
from node.identifiers import make_uscc
from node.store import Store
from tests.pki import NodeTls
from tests.services.interchange_node import COMPANY, HUZHOU, JIAXING, SHANGHAI, Node, company


@pytest.fixture
def node_store(db_url: str) -> Iterator[Store]:
    """The answering node's store, on each backend (SQLite file, PostgreSQL database)."""
    store = Store.open(db_url)
    store.results.import_results(
        [
            company(COMPANY, "湖州绿源新材料有限公司"),
            company(
                make_uscc("91330500MA0000001"),
                "安吉竹业个体户",
                subject_type=model.SubjectType.INDIVIDUAL_BUSINESS,
            ),
        ],
        source="test",
        file_sha256="0" * 64,
        fmt="test",
    )
    yield store
    store.close()


@pytest.fixture
async def node(node_store: Store, tls: dict[str, NodeTls]) -> AsyncIterator[Node]:
    members = {tls[n].fingerprint: n for n in (JIAXING, SHANGHAI)}
    node = Node(node_store, tls[HUZHOU], members)
    await node.start([tls[JIAXING], tls[SHANGHAI]])
    yield node
    await node.stop()
