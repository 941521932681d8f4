"""`creditnode ingest` on hostile files and a failing store (issue 9 §6): every problem is a
numbered line, nothing is imported, no traceback is printed and no resident id is in clear."""

from __future__ import annotations

import dataclasses
import pathlib

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import text

from adapters import conformance
from adapters.huzhou import HUZHOU_CSV
from adapters.problems import describe
from node.cli import main
from node.errors import RowProblem
from node.home import NodeHome
from node.model import ResultStatus
from node.store import Store
from node.store.results import check_batch

VECTORS = pathlib.Path(__file__).parent / "vectors" / "imports"
PERSON = "330522198503142034"  # the natural person of every good.* vector
PERSON_MASKED = "330522********2034"
ISSUE_9_VECTORS = {
    "huzhou-csv": ["valid_until_year_9999", "evaluated_year_1", "nul_in_name", "huge_score"],
    "huzhou-json": [
        "valid_until_year_9999", "evaluated_year_1", "nul_in_name", "integer_5000_digits",
        "number_out_of_range", "lone_surrogate", "duplicate_key",
    ],
}  # fmt: skip
NOTHING = {"ACTIVE": 0, "SUPERSEDED": 0, "REVOKED": 0}


def _cases() -> list[tuple[str, conformance.BadFileVector]]:
    return [
        (fmt, vector)
        for fmt, names in ISSUE_9_VECTORS.items()
        for vector in conformance.load_vectors(VECTORS / fmt)
        if vector.name in names
    ]


def _run(*args: str) -> Result:
    # catch_exceptions=False: an exception escaping the command fails the test with it.
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture
def db_home(tmp_path: pathlib.Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> pathlib.Path:
    """A node home made by `creditnode init`, its store on each backend."""
    home = tmp_path / "huzhou"
    made = _run("init", "--node-id", "cn-330500", "--name", "湖州", "--home", str(home))
    assert made.exit_code == 0, made.output
    monkeypatch.setenv("CREDITNODE_DB_URL", db_url)
    return home


def _ingest(home: pathlib.Path, file: pathlib.Path, fmt: str) -> Result:
    return _run("ingest", "--format", fmt, str(file), "--home", str(home))


def _counts(home: pathlib.Path) -> dict[str, int]:
    with Store.open(NodeHome(home).db_url()) as store:
        return {status.name: store.results.count(status) for status in ResultStatus}


def _assert_private(result: Result) -> None:
    output = result.stdout + result.stderr
    assert "Traceback" not in output
    assert PERSON not in output
    assert "parameters" not in output.lower()


@pytest.mark.parametrize(("fmt", "vector"), _cases(), ids=[f"{f}-{v.name}" for f, v in _cases()])
def test_hostile_file_is_listed_by_row_and_nothing_imported(
    db_home: pathlib.Path, fmt: str, vector: conformance.BadFileVector
) -> None:
    """issue 9 §6: YXQZ=9999-12-31, PJRQ=0001-01-01, a NUL in a name (PostgreSQL used to raise
    DataError with the resident id in its traceback; SQLite stored it), a 5,000-digit number,
    1e999, a lone surrogate and a duplicated key are each a `row N, FIELD:` line on both
    backends, and the store stays empty."""
    result = _ingest(db_home, vector.path, fmt)
    assert result.exit_code == 1, result.output
    assert "nothing imported" in result.stderr
    lines = result.stderr.splitlines()
    for expected in vector.problems:
        where = describe(RowProblem(expected.row, expected.field, expected.reason)).split(": ")[0]
        assert any(line.startswith(f"  {where}: ") and expected.reason in line for line in lines), (
            where,
            lines,
        )
    _assert_private(result)
    assert _counts(db_home) == NOTHING


def test_a_repeated_person_is_shown_masked(db_home: pathlib.Path, tmp_path: pathlib.Path) -> None:
    """issue 9 §6: ingest's duplicate-subject line masks the resident id (330522********2034)."""
    good = (VECTORS / "huzhou-csv" / "good.csv").read_text(encoding="utf-8")
    person_row = next(line for line in good.splitlines() if line.startswith(PERSON))
    export = tmp_path / "twice.csv"
    export.write_text(good + person_row + "\n", encoding="utf-8")
    result = _ingest(db_home, export, "huzhou-csv")
    assert result.exit_code == 1
    assert f"  row 4, TYSHXYDM: subject {PERSON_MASKED} already appears in row 3" in result.stderr
    _assert_private(result)
    assert _counts(db_home) == NOTHING


def test_store_duplicate_check_masks_a_person() -> None:
    """issue 9 §6: the store's own one-result-per-subject check names a person masked too."""
    good = HUZHOU_CSV.parse(
        (VECTORS / "huzhou-csv" / "good.csv").read_bytes(), issuer_node="cn-330500"
    )
    person = next(r for r in good if r.subject.id == PERSON)
    again = dataclasses.replace(person, result_id=person.result_id[:-1] + "0")
    [problem] = check_batch([person, again])
    assert (problem.row, problem.field) == (2, "subject")
    assert PERSON_MASKED in problem.reason and PERSON not in problem.reason


# A store that fails in a way nobody wrote a message for: a trigger the driver reports as a
# DataError (SQLITE_TOOBIG on SQLite, SQLSTATE 22000 on PostgreSQL). SQLAlchemy's text of such
# an error quotes the INSERT's parameters, the resident id among them.
_FAILING_TRIGGER = {
    "sqlite": [
        "CREATE TRIGGER refuse_import BEFORE INSERT ON credit_results "
        "BEGIN SELECT zeroblob(2000000000); END",
    ],
    "postgresql": [
        "CREATE FUNCTION refuse_import() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'refused' USING ERRCODE = 'data_exception'; END $$",
        "CREATE TRIGGER refuse_import BEFORE INSERT ON credit_results "
        "FOR EACH ROW EXECUTE FUNCTION refuse_import()",
    ],
}


def test_unexpected_store_error_names_its_class_only(db_home: pathlib.Path) -> None:
    """issue 9 §6: a store error we did not word ourselves ends ingest with a generic message
    and the error's class: no traceback, no SQL parameters, no resident id."""
    with Store.open(NodeHome(db_home).db_url()) as store, store.begin() as conn:
        for statement in _FAILING_TRIGGER[store.dialect]:
            conn.execute(text(statement))
    result = _ingest(db_home, VECTORS / "huzhou-csv" / "good.csv", "huzhou-csv")
    assert result.exit_code == 1
    assert "the store failed while importing good.csv with DataError (" in result.stderr
    assert "nothing was imported" in result.stderr
    _assert_private(result)
    assert _counts(db_home) == NOTHING
