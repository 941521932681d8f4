"""Inputs that once escaped the Huzhou adapters as exceptions (issue 9 §6): each is a
row-numbered problem now, its reason short, and a resident id never in clear in it."""

from __future__ import annotations

import datetime as dt
import pathlib

import pytest

from adapters import conformance
from adapters.huzhou import CHINA_TZ, HUZHOU_CSV, HUZHOU_JSON
from adapters.registry import ImportAdapter
from node.errors import ImportRejected, RowProblem

VECTORS = pathlib.Path(__file__).parent.parent / "vectors" / "imports"
CITY = "cn-330500"
PERSON = "330522198503142034"  # the natural person of every good.* vector
PERSON_MASKED = "330522********2034"
# Vectors of issue 9 §6, in each container that can hold them (CSV has no surrogates, no
# number types and no keys).
ISSUE_9_VECTORS = {
    "huzhou-csv": ["valid_until_year_9999", "evaluated_year_1", "nul_in_name", "huge_score"],
    "huzhou-json": [
        "valid_until_year_9999", "evaluated_year_1", "nul_in_name", "integer_5000_digits",
        "number_out_of_range", "lone_surrogate", "duplicate_key",
    ],
}  # fmt: skip
MAX_REASON_CHARS = 200


def _cases() -> list[tuple[ImportAdapter, conformance.BadFileVector]]:
    adapters = {HUZHOU_CSV.name: HUZHOU_CSV, HUZHOU_JSON.name: HUZHOU_JSON}
    return [
        (adapters[fmt], vector)
        for fmt, names in ISSUE_9_VECTORS.items()
        for vector in conformance.load_vectors(VECTORS / fmt)
        if vector.name in names
    ]


def _rejected(adapter: ImportAdapter, data: bytes) -> list[RowProblem]:
    with pytest.raises(ImportRejected) as caught:
        adapter.parse(data, issuer_node=CITY)
    return caught.value.problems


@pytest.mark.parametrize(
    ("adapter", "vector"), _cases(), ids=[f"{a.name}-{v.name}" for a, v in _cases()]
)
def test_hostile_cell_is_a_short_row_problem(
    adapter: ImportAdapter, vector: conformance.BadFileVector
) -> None:
    """issue 9 §6: a 9999-12-31 validity, a year-1 evaluation, a NUL, a 5,000-digit number,
    1e999, a lone surrogate and a duplicated JSON key are each listed as (row, field, reason)
    like any bad row, instead of raising OverflowError, ValueError or UnicodeEncodeError."""
    conformance.check_rejects(adapter, vector, CITY)
    for problem in _rejected(adapter, vector.path.read_bytes()):
        assert problem.row > 0
        assert len(problem.reason) <= MAX_REASON_CHARS, problem
        assert PERSON not in str(problem)


def test_every_issue_9_vector_exists() -> None:
    """issue 9 §6: the named vectors this suite relies on are all on disk and listed."""
    found = {(a.name, v.name) for a, v in _cases()}
    wanted = {(fmt, name) for fmt, names in ISSUE_9_VECTORS.items() for name in names}
    assert found == wanted


@pytest.mark.parametrize(
    ("date", "accepted"),
    [("1899-12-31", False), ("1900-01-01", True), ("2199-12-31", True), ("2200-01-01", False)],
)
def test_dates_are_bounded_on_both_sides(date: str, accepted: bool) -> None:
    """issue 9 §6: the accepted range is 1900-01-01 to 2199-12-31, both inclusive; outside it
    PJRQ is a row problem, so nothing near datetime's limits reaches the arithmetic."""
    row = f"91330502MA2B3C4D1U,某公司,企业,zj-public-credit@2023,A,{date}"
    data = f"TYSHXYDM,QYMC,ZTLX,PJTX,PJDJ,PJRQ\n{row}\n".encode()
    if accepted:
        [result] = HUZHOU_CSV.parse(data, issuer_node=CITY)
        day = dt.date.fromisoformat(date)
        assert result.evaluated_at == dt.datetime(day.year, day.month, day.day, tzinfo=CHINA_TZ)
    else:
        [problem] = _rejected(HUZHOU_CSV, data)
        assert (problem.row, problem.field) == (1, "PJRQ")


GOOD_MEMBERS = (
    '"TYSHXYDM": "91330502MA2B3C4D1U", "QYMC": "某公司", "ZTLX": "企业", '
    '"PJTX": "zj-public-credit@2023", "PJDJ": "A", "PJRQ": "2024-03-01"'
)


@pytest.mark.parametrize(
    ("document", "row", "field"),
    [
        ('{"records": [], "records": []}', 0, "file"),  # which list? neither is guessed
        (r'[{%s, "ZB_X\u0000": "x"}]', 1, "row"),  # no field to name: the row says it
        (r'[{%s, "\udc00": "x"}]', 1, "row"),
        (r'[{%s, "SXBZ": ["RED_LIST", "\u0000"]}]', 1, "SXBZ"),
        ('[{%s, "ZB_ESG_SCORE": NaN}]', 1, "ZB_ESG_SCORE"),
        ('[{%s, "ZB_ESG_SCORE": -Infinity}]', 1, "ZB_ESG_SCORE"),
        ('[{%s, "ZB_ESG_SCORE": -' + "1" * 41 + "}]", 1, "ZB_ESG_SCORE"),
    ],
)
def test_json_oddities_are_problems_not_exceptions(document: str, row: int, field: str) -> None:
    """issue 9 §6: the same rules reach keys, flag arrays, NaN/Infinity and a record list
    named twice."""
    data = (document % GOOD_MEMBERS if "%s" in document else document).encode()
    problems = _rejected(HUZHOU_JSON, data)
    assert [(p.row, p.field) for p in problems] == [(row, field)], problems


def test_nul_in_a_header_cell_rejects_the_file() -> None:
    """issue 9 §6: a NUL in the CSV header is a whole-file problem (there is no column to name)."""
    data = b"TYSHXYDM,QYMC,ZTLX,PJTX,PJDJ,PJRQ,X\x00\n"
    [problem] = _rejected(HUZHOU_CSV, data)
    assert (problem.row, problem.field) == (0, "file")
    assert "column 7" in problem.reason and "NUL" in problem.reason


@pytest.mark.parametrize("adapter", [HUZHOU_CSV, HUZHOU_JSON], ids=lambda a: a.name)
def test_a_repeated_person_is_named_masked(adapter: ImportAdapter) -> None:
    """issue 9 §6: the duplicate-subject problem shows a resident id as 330522********2034,
    never the id (it holds the birth date)."""
    good = adapter.parse(
        (VECTORS / adapter.name / f"good.{adapter.name[7:]}").read_bytes(), issuer_node=CITY
    )
    data = adapter.render([*good, good[2]])
    [problem] = _rejected(adapter, data)
    assert (problem.row, problem.field) == (4, "TYSHXYDM")
    assert PERSON_MASKED in problem.reason and "row 3" in problem.reason
    assert PERSON not in problem.reason
