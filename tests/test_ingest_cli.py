"""`creditnode ingest` and `gen-data` on a real node home (made by `creditnode init`) and a real
store: a bad file changes nothing, a re-import changes nothing, both encodings import."""

from __future__ import annotations

import csv
import io
import pathlib

import pytest
from click.testing import CliRunner, Result

from adapters import conformance
from adapters.problems import describe
from node.cli import main
from node.errors import RowProblem
from node.home import NodeHome
from node.model import ResultStatus
from node.store import Store
from tests.federation_helpers import HUZHOU, init_home

VECTORS = pathlib.Path(__file__).parent / "vectors" / "imports" / "huzhou-csv"
GOOD = VECTORS / "good.csv"


def _run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture
def home(tmp_path: pathlib.Path) -> pathlib.Path:
    return init_home(tmp_path, HUZHOU, "湖州")


@pytest.fixture
def db_home(home: pathlib.Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> pathlib.Path:
    """The home, its store on each backend (SQLite file, PostgreSQL database)."""
    monkeypatch.setenv("CREDITNODE_DB_URL", db_url)
    return home


def _ingest(home: pathlib.Path, file: pathlib.Path, fmt: str = "huzhou-csv") -> Result:
    return _run("ingest", "--format", fmt, str(file), "--home", str(home))


def _counts(home: pathlib.Path) -> dict[str, int]:
    with Store.open(NodeHome(home).db_url()) as store:
        return {status.name: store.results.count(status) for status in ResultStatus}


@pytest.mark.parametrize("vector", conformance.load_vectors(VECTORS), ids=lambda v: v.name)
def test_bad_file_is_rejected_with_every_problem_and_nothing_imported(
    db_home: pathlib.Path, vector: conformance.BadFileVector
) -> None:
    before = _counts(db_home)
    result = _ingest(db_home, vector.path)
    assert result.exit_code == 1
    assert "nothing imported" in result.stderr
    lines = result.stderr.splitlines()
    for expected in vector.problems:
        problem = RowProblem(expected.row, expected.field, expected.reason)
        where = describe(problem).split(": ")[0]
        assert any(line.startswith(f"  {where}: ") and expected.reason in line for line in lines), (
            where,
            lines,
        )
    assert _counts(db_home) == before == {"ACTIVE": 0, "SUPERSEDED": 0, "REVOKED": 0}


def test_import_then_reimport_changes_nothing(db_home: pathlib.Path) -> None:
    first = _ingest(db_home, GOOD)
    assert first.exit_code == 0, first.output
    assert "3 new, 0 updated, 0 unchanged" in first.stdout
    again = _ingest(db_home, GOOD)
    assert again.exit_code == 0, again.output
    assert "0 new, 0 updated, 3 unchanged" in again.stdout
    assert _counts(db_home)["ACTIVE"] == 3


@pytest.mark.parametrize("vector", ["good_gb18030.csv", "good_bom.csv"])
def test_gb18030_and_bom_files_import_as_the_same_results(home: pathlib.Path, vector: str) -> None:
    result = _ingest(home, VECTORS / vector)
    assert result.exit_code == 0, result.output
    assert "3 new" in result.stdout
    # The UTF-8 original is the very same content: nothing new.
    assert "0 new, 0 updated, 3 unchanged" in _ingest(home, GOOD).stdout


def test_a_corrected_row_supersedes_the_old_result(
    home: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    assert _ingest(home, GOOD).exit_code == 0
    corrected = tmp_path / "corrected.csv"
    corrected.write_text(GOOD.read_text(encoding="utf-8").replace(",良,", ",中,"), encoding="utf-8")
    result = _ingest(home, corrected)
    assert result.exit_code == 0, result.output
    assert "0 new, 1 updated, 2 unchanged" in result.stdout
    assert _counts(home) == {"ACTIVE": 3, "SUPERSEDED": 1, "REVOKED": 0}


def test_store_refusal_is_listed_and_nothing_imported(
    home: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    """An evaluation older than the one held cannot replace it (the store's rule)."""
    assert _ingest(home, GOOD).exit_code == 0
    older = tmp_path / "older.csv"
    older.write_text(
        GOOD.read_text(encoding="utf-8").replace("20240415", "20230415").replace("912.5", "901"),
        encoding="utf-8",
    )
    result = _ingest(home, older)
    assert result.exit_code == 1
    assert "row 2, evaluated_at: " in result.stderr
    assert _counts(home) == {"ACTIVE": 3, "SUPERSEDED": 0, "REVOKED": 0}


def test_many_problems_are_capped_with_a_count(
    db_home: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    """issue 11 §1: a rejected file lists its bad rows, the first 1,000 of them in row order
    and a count of the rest, and writes nothing."""
    export = tmp_path / "export.csv"
    made = _run("gen-data", "--city", "cn-330500", "--subjects", "1234", "--out", str(export))
    assert made.exit_code == 0, made.output
    rows = list(csv.reader(io.StringIO(export.read_text(encoding="utf-8"), newline="")))
    for row in rows[1:]:
        row[rows[0].index("PJRQ")] = "2024-13-01"  # every one of the 1,234 rows is bad
    with export.open("w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows(rows)
    result = _ingest(db_home, export)
    assert result.exit_code == 1
    listed = [line for line in result.stderr.splitlines() if line.startswith("  row ")]
    assert listed == [
        f"  row {n}, PJRQ: '2024-13-01' is not a calendar date; write YYYY-MM-DD or YYYYMMDD"
        for n in range(1, 1001)
    ]
    assert "  ... and 234 more problems" in result.stderr
    assert "rejected, nothing imported: 1,234 problems in 1,234 rows" in result.stderr
    assert _counts(db_home) == {"ACTIVE": 0, "SUPERSEDED": 0, "REVOKED": 0}


def test_store_problems_of_a_large_file_are_capped_too(
    home: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    """Problems the store finds (older evaluations than those held) are capped alike."""
    export = tmp_path / "export.csv"
    made = _run(
        "gen-data", "--city", "cn-330500", "--subjects", "1100", "--as-of", "2030-06-01",
        "--out", str(export),
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    assert _ingest(home, export).exit_code == 0
    rows = list(csv.reader(io.StringIO(export.read_text(encoding="utf-8"), newline="")))
    for row in rows[1:]:
        row[rows[0].index("PJRQ")] = "1990-01-01"  # older than every evaluation held
        row[rows[0].index("YXQZ")] = ""
    with export.open("w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows(rows)
    result = _ingest(home, export)
    assert result.exit_code == 1
    listed = [line for line in result.stderr.splitlines() if line.startswith("  row ")]
    assert len(listed) == 1000
    assert listed[0].startswith("  row 1, evaluated_at: 1989-12-31T16:00:00+00:00 is before")
    assert "  ... and 100 more problems" in result.stderr
    assert _counts(home) == {"ACTIVE": 1100, "SUPERSEDED": 0, "REVOKED": 0}


@pytest.mark.parametrize("fmt", ["huzhou-csv", "huzhou-json"])
def test_generated_export_imports_in_each_format(
    home: pathlib.Path, tmp_path: pathlib.Path, fmt: str
) -> None:
    export = tmp_path / f"export.{fmt}"
    made = _run(
        "gen-data", "--city", "cn-330500", "--subjects", "500", "--seed", "4",
        "--format", fmt, "--out", str(export),
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    result = _ingest(home, export, fmt)
    assert result.exit_code == 0, result.output
    assert "500 new, 0 updated, 0 unchanged" in result.stdout


def test_unknown_format_lists_the_known_ones(home: pathlib.Path) -> None:
    result = CliRunner().invoke(main, ["ingest", "--format", "xml", str(GOOD), "--home", str(home)])
    assert result.exit_code == 2
    assert "huzhou-csv" in result.output and "huzhou-json" in result.output


def test_ingest_without_a_node_home_says_how_to_make_one(tmp_path: pathlib.Path) -> None:
    result = CliRunner().invoke(
        main, ["ingest", "--format", "huzhou-csv", str(GOOD), "--home", str(tmp_path)]
    )
    assert "creditnode init" in str(result.exception)
