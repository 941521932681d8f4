"""The floor plan of DESIGN.md §2 holds in `node/` (issue 10): no import cycle, no import
up a floor, generated code imported by the wire layer alone (`python -m tests.layering`
prints the same)."""

from __future__ import annotations

from tests import layering


def test_node_imports_go_down_and_form_no_cycle() -> None:
    assert layering.violations(layering.graph()) == []


def test_the_check_sees_a_cycle_and_an_upward_import() -> None:
    """The check itself can fail: a made-up graph with both faults is reported."""
    edges = {"node.model": {"node.runtime"}, "node.runtime": {"node.model"}}
    problems = layering.violations(edges)
    assert "node.model (floor 2) imports node.runtime (floor 6)" in problems
    assert "import cycle: node.model <-> node.runtime" in problems


def test_the_log_tables_have_one_owner() -> None:
    """issue 10 §3: the exchange log's tables were read and written from six places."""
    edges = {"node.services.exchange_log": {"node.store.log_tables"}}
    assert layering.violations(edges) == [
        "node.services.exchange_log imports node.store.log_tables, which only "
        "node.log.store, node.store.migrations.env may"
    ]
