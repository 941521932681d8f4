"""The Green Loan Link record (adapters/greenloan.md) carries the result's status (结果状态)."""

from __future__ import annotations

from adapters import greenloan
from tests.results import make_result


def test_a_fed_result_reads_as_an_active_record_with_every_column() -> None:
    result = make_result(flags=("SERIOUS_DISHONESTY", "RED_LIST"))
    record = greenloan.record_from_result(result)
    assert record.jgzt == "ACTIVE"
    assert record.sxbz == "RED_LIST,SERIOUS_DISHONESTY"
    assert greenloan.COLUMNS[-1] == "jgzt" and len(greenloan.record_row(result)) == len(
        greenloan.COLUMNS
    )
