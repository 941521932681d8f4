"""A legacy register code with a wrong USCC check character (DESIGN.md §9): ingested only when
configuration allows it, and then stored and read back on both backends."""

from __future__ import annotations

import pytest

from adapters.registry import get_adapter
from node.errors import ImportRejected
from node.model import SubjectIdType
from node.store import Store
from tests.adapters.test_huzhou import CITY, USCC, _csv

LEGACY = USCC[:17] + ("0" if USCC[17] != "0" else "1")
ROW = f"{LEGACY},某公司,企业,zj-public-credit@2023,A,,2024-03-01,,"


def test_legacy_code_is_refused_by_default() -> None:
    with pytest.raises(ImportRejected):
        get_adapter("huzhou-csv").parse(_csv(ROW), issuer_node=CITY)


def test_legacy_code_round_trips_through_the_store_when_allowed(store: Store) -> None:
    results = get_adapter("huzhou-csv").parse(_csv(ROW), issuer_node=CITY,
                                              legacy_uscc_allowed=True)
    summary = store.results.import_results(results, source="legacy.csv", file_sha256="0" * 64,
                                           fmt="huzhou-csv")
    assert summary.inserted == 1
    [current] = store.results.get_current(SubjectIdType.USCC, LEGACY)
    assert current.subject.id == LEGACY
