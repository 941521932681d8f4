"""Result ids travel to peers and into the log: a resident id enters them only keyed."""

from __future__ import annotations

from adapters.registry import get_adapter
from node import identifiers
from tests.adapters.huzhou_export import CITY, USCC, huzhou_csv

PERSON = identifiers.make_resident_id("33050219900307123")
ROWS = (
    f"{PERSON},张三,自然人,zj-public-credit@2023,A,,2026-03-01,,",
    f"{USCC},某公司,企业,zj-public-credit@2023,A,,2026-03-01,,",
)


def ids(key: bytes | None) -> list[str]:
    results = get_adapter("huzhou-csv").parse(huzhou_csv(*ROWS), issuer_node=CITY, subject_key=key)
    return [r.result_id for r in results]


def test_resident_ids_enter_result_ids_only_under_the_node_key() -> None:
    unkeyed, one, other = ids(None), ids(b"k" * 32), ids(b"j" * 32)
    assert one == ids(b"k" * 32), "the same key gives the same ids (re-import is a no-op)"
    assert len({unkeyed[0], one[0], other[0]}) == 3, "a person's id depends on the key"
    assert unkeyed[1] == one[1] == other[1], "an enterprise's id does not"
