"""The store on a real SQLite file and a real PostgreSQL server: migrations, durable settings,
idempotent all-or-nothing imports, re-evaluation (supersede) and the changes journal."""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import func, insert, inspect, select, update
from sqlalchemy.exc import IntegrityError

from devtools.ports import free_port
from node.errors import Conflict, ImportRejected, InvalidIdentifier, StoreUnavailable
from node.identifiers import make_uscc
from node.model import (
    ChangeKind,
    CreditLevel,
    CreditResult,
    ResultStatus,
    SubjectIdType,
    SubjectRef,
    SubjectType,
)
from node.store import ImportSummary, Store, head_revisions
from node.store.results import RESULTS
from node.store.schema import Base, ChangeRow, CreditResultRow, ImportBatchRow

EVALUATED = dt.datetime(2025, 3, 1, 8, 30, tzinfo=dt.UTC)
SCHEME = "zj-public-credit@2023"
MY_TABLES = {
    "credit_results",
    "import_batches",
    "changes",
    "deliveries",
    "revocation_notices",
    "notifier_state",
    "received_results",
    "revocation_cursors",
    "penalty_records",
}


def uscc(n: int) -> str:
    return make_uscc(f"91330500{n:09d}")


def result(n: int, *, rid: str | None = None, **changes: Any) -> CreditResult:
    base = CreditResult(
        result_id=rid or f"r-{n}",
        subject=SubjectRef(SubjectIdType.USCC, uscc(n)),
        subject_name=f"湖州测试企业{n}有限公司",
        subject_type=SubjectType.ENTERPRISE,
        issuer_node="cn-330500",
        scheme=SCHEME,
        native_level="A",
        level=CreditLevel.A,
        evaluated_at=EVALUATED,
        valid_until=EVALUATED + dt.timedelta(days=365),
        native_score=91.5,
        flags=("RED_LIST",),
        indicators={"green-credit": "G1"},
    )
    return dataclasses.replace(base, **changes)


def do_import(store: Store, results: list[CreditResult], source: str = "a.csv") -> ImportSummary:
    return store.results.import_results(results, source=source, file_sha256="0" * 64, fmt="csv")


def changes(store: Store) -> list[tuple[int, int, str]]:
    with store.connect() as conn:
        rows = conn.execute(select(ChangeRow.seq, ChangeRow.kind, ChangeRow.result_id))
        return [(r.seq, r.kind, r.result_id) for r in rows.all()]


def batch_count(store: Store) -> int:
    with store.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(ImportBatchRow)).scalar_one())


# --- schema -------------------------------------------------------------------------------------


def test_open_migrates_an_empty_database_to_head(db_url: str) -> None:
    with Store.open(db_url) as store:
        assert store.schema_revisions() == head_revisions()
        assert "0001_initial" in _revision_chain()
        tables = set(inspect(store.engine).get_table_names())
        assert tables >= MY_TABLES | {"alembic_version"}
    with Store.open(db_url) as again:  # opening a migrated database is a no-op
        assert again.schema_revisions() == head_revisions()
        assert again.results.count() == 0


def _revision_chain() -> list[str]:
    from alembic.script import ScriptDirectory

    from node.store.store import alembic_config

    script = ScriptDirectory.from_config(alembic_config())
    return [rev.revision for rev in script.walk_revisions()]


def test_models_match_the_migrated_schema(store: Store) -> None:
    with store.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diffs = compare_metadata(context, Base.metadata)
    mine = [d for d in diffs if _diff_table(d) in MY_TABLES]
    assert mine == []


def _diff_table(diff: Any) -> str | None:
    item = diff[0] if isinstance(diff, list) else diff
    for part in item[1:]:
        table = getattr(part, "table", None)
        name = getattr(table, "name", None) or getattr(part, "name", None)
        if isinstance(name, str):
            return name
        if isinstance(part, str):
            return part
    return None


def test_sqlite_is_durable_wal_with_foreign_keys(sqlite_url: str) -> None:
    with Store.open(sqlite_url) as store, store.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        busy_timeout_ms = conn.exec_driver_sql("PRAGMA busy_timeout").scalar()
        assert busy_timeout_ms is not None and busy_timeout_ms >= 1000


def test_one_active_result_per_subject_and_scheme_is_enforced_by_the_database(
    store: Store,
) -> None:
    do_import(store, [result(1)])
    with store.connect() as conn:
        current = conn.execute(select(RESULTS)).one()._asdict()
    twin = {**current, "result_id": "r-twin"}
    with pytest.raises(IntegrityError), store.begin() as conn:
        conn.execute(insert(RESULTS).values(twin))
    with store.begin() as conn:  # history rows beside the current one are fine
        conn.execute(insert(RESULTS).values({**twin, "status": 2}))
    assert store.results.count() == 2


# --- unreachable stores -------------------------------------------------------------------------


def test_unreachable_postgresql_raises_store_unavailable_naming_host_and_port() -> None:
    port = free_port()  # nothing listens there once the probe closed
    with pytest.raises(StoreUnavailable) as caught:
        Store.open(f"postgresql+psycopg://postgres:s3cret@127.0.0.1:{port}/node")
    assert f"127.0.0.1:{port}" in caught.value.message
    assert "s3cret" not in caught.value.message
    assert caught.value.reason == "STORE_UNAVAILABLE"


def test_sqlite_in_a_missing_directory_raises_store_unavailable_naming_the_file(
    tmp_path: Any,
) -> None:
    missing = tmp_path / "no-such-dir" / "node.db"
    with pytest.raises(StoreUnavailable) as caught:
        Store.open(f"sqlite:///{missing}")
    assert str(missing) in caught.value.message


# --- import -------------------------------------------------------------------------------------


def test_import_then_read_back_every_field(store: Store) -> None:
    plain = result(2, native_score=None, flags=(), indicators={})
    summary = do_import(store, [result(1), plain])
    assert summary == ImportSummary(inserted=2, updated=0, unchanged=0)
    assert store.results.get("r-1") == result(1)
    assert store.results.get("r-2") == plain
    got = store.results.get("r-1")
    assert got is not None and got.evaluated_at.tzinfo is dt.UTC
    assert store.results.get("r-404") is None
    assert store.results.count() == 2
    assert [(kind, rid) for _, kind, rid in changes(store)] == [
        (ChangeKind.UPSERT, "r-1"),
        (ChangeKind.UPSERT, "r-2"),
    ]


def test_reimporting_the_same_content_changes_nothing(store: Store) -> None:
    batch = [result(n) for n in range(1, 6)]
    assert do_import(store, batch) == ImportSummary(5, 0, 0)
    journal = changes(store)
    assert do_import(store, batch, "a-again.csv") == ImportSummary(0, 0, 5)
    # A re-export that renamed identical content is the same content.
    renamed = [dataclasses.replace(r, result_id=f"new-{r.result_id}") for r in batch]
    assert do_import(store, renamed, "renamed.csv") == ImportSummary(0, 0, 5)
    assert do_import(store, [], "empty.csv") == ImportSummary(0, 0, 0)
    assert changes(store) == journal
    assert store.results.count() == 5
    assert batch_count(store) == 4  # every import is recorded, even one that changed nothing


def test_reevaluation_supersedes_the_current_result_and_journals_it(store: Store) -> None:
    do_import(store, [result(1), result(2)])
    later = EVALUATED + dt.timedelta(days=90)
    downgraded = result(1, rid="r-1b", level=CreditLevel.C, native_level="C", evaluated_at=later)
    summary = do_import(store, [downgraded, result(2), result(3)], "b.csv")
    assert summary == ImportSummary(inserted=1, updated=1, unchanged=1)

    current = store.results.get_current(SubjectIdType.USCC, uscc(1))
    assert current == [dataclasses.replace(downgraded, supersedes="r-1")]
    old = store.results.get("r-1")
    assert old is not None and old.status is ResultStatus.SUPERSEDED
    assert store.results.count(ResultStatus.ACTIVE) == 3
    assert store.results.count(ResultStatus.SUPERSEDED) == 1

    journal = changes(store)
    assert [(kind, rid) for _, kind, rid in journal[2:]] == [
        (ChangeKind.REVOKE, "r-1"),  # the superseded result leaves the feed first
        (ChangeKind.UPSERT, "r-1b"),
        (ChangeKind.UPSERT, "r-3"),
    ]
    assert [seq for seq, _, _ in journal] == [1, 2, 3, 4, 5]  # no gap, no repeat
    assert store.changes.head() == 5
    read = store.changes.read(2, 2)
    assert [(c.seq, c.kind, c.result.result_id, c.result.status) for c in read] == [
        (3, ChangeKind.REVOKE, "r-1", ResultStatus.SUPERSEDED),
        (4, ChangeKind.UPSERT, "r-1b", ResultStatus.ACTIVE),
    ]
    # Re-importing the first file now changes nothing: its content is known history.
    assert do_import(store, [result(1), result(2)], "a-late.csv") == ImportSummary(0, 0, 2)
    assert store.results.get_current(SubjectIdType.USCC, uscc(1))[0].result_id == "r-1b"


def test_get_current_lists_one_result_per_scheme_and_checks_the_id(store: Store) -> None:
    other = result(1, rid="r-1-green", scheme="zj-green-credit@2024", native_level="G1")
    do_import(store, [result(1), other, result(2)])
    got = store.results.get_current(SubjectIdType.USCC, uscc(1).lower())  # normalised
    assert [r.result_id for r in got] == ["r-1-green", "r-1"]  # ordered by scheme
    assert store.results.get_current(SubjectIdType.USCC, uscc(99)) == []
    with pytest.raises(InvalidIdentifier):
        store.results.get_current(SubjectIdType.USCC, "91330500XXXXXXXXXI")


@pytest.mark.parametrize(
    ("stored", "incoming", "field"),
    [
        pytest.param([], [result(1), result(2, rid="r-1")], "result_id", id="duplicate-id"),
        pytest.param([], [result(1), result(1, rid="r-1x")], "subject", id="duplicate-subject"),
        pytest.param(
            [result(1)],
            [result(1, level=CreditLevel.B)],
            "result_id",
            id="id-reused-for-new-content",
        ),
        pytest.param(
            [result(1)],
            [result(1, rid="r-old", evaluated_at=EVALUATED - dt.timedelta(days=1))],
            "evaluated_at",
            id="older-than-current",
        ),
        pytest.param([], [result(1, status=ResultStatus.REVOKED)], "status", id="not-active"),
        pytest.param([], [result(1, zone="yrd")], "audience_node", id="bound-to-a-request"),
    ],
)
def test_a_rejected_import_names_the_row_and_imports_nothing(
    store: Store, stored: list[CreditResult], incoming: list[CreditResult], field: str
) -> None:
    if stored:
        do_import(store, stored)
    before = (changes(store), batch_count(store), store.results.count())
    # Good rows and a re-evaluation come first: the bad row is the last one.
    good = [result(10), result(11)]
    with pytest.raises(ImportRejected) as caught:
        do_import(store, [*good, *incoming], "bad.csv")
    assert [(p.row, p.field) for p in caught.value.problems] == [(len(good) + len(incoming), field)]
    assert "bad.csv" in caught.value.message and "nothing imported" in caught.value.message
    assert (changes(store), batch_count(store), store.results.count()) == before


_POISON = {
    "sqlite": [
        "CREATE TRIGGER poison BEFORE INSERT ON changes WHEN NEW.result_id = 'poison' "
        "BEGIN SELECT RAISE(ABORT, 'poisoned row'); END"
    ],
    "postgresql": [
        "CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "IF NEW.result_id = 'poison' THEN "
        "RAISE EXCEPTION 'poisoned row' USING ERRCODE = 'unique_violation'; END IF; "
        "RETURN NEW; END $$",
        "CREATE TRIGGER poison BEFORE INSERT ON changes FOR EACH ROW EXECUTE FUNCTION poison()",
    ],
}


def test_a_database_failure_mid_import_rolls_back_everything(store: Store) -> None:
    do_import(store, [result(1)])
    with store.begin() as conn:
        for statement in _POISON[store.dialect]:
            conn.exec_driver_sql(statement)
    before = (changes(store), batch_count(store), store.results.count())
    later = EVALUATED + dt.timedelta(days=30)
    # The supersede UPDATE and the result INSERTs have run when the journal insert fails.
    batch = [result(1, rid="r-1b", evaluated_at=later), result(2), result(3, rid="poison")]
    with pytest.raises(Conflict) as caught:
        do_import(store, batch, "poisoned.csv")
    assert "nothing was imported" in caught.value.message.lower()
    assert (changes(store), batch_count(store), store.results.count()) == before
    current = store.results.get_current(SubjectIdType.USCC, uscc(1))
    assert [r.result_id for r in current] == ["r-1"]
    # The failed import's seqs were not burnt (a database sequence would have been).
    do_import(store, [result(2)], "next.csv")
    assert [seq for seq, _, _ in changes(store)] == [1, 2]


def test_concurrent_imports_from_two_processes_both_land(db_url: str) -> None:
    """Issue 12 §1: two writers on one database, a reader polling beside them: the journal's
    seqs are 1..n with no gap and no repeat, and the reader never sees a later seq before an
    earlier one (it resumes after the last seq it saw)."""
    first, second, reader = Store.open(db_url), Store.open(db_url), Store.open(db_url)
    errors: list[BaseException] = []
    writing = threading.Event()
    writing.set()
    seen_prefixes: list[bool] = []

    def read() -> None:
        while writing.is_set():
            seqs = [seq for seq, _, _ in changes(reader)]
            seen_prefixes.append(seqs == list(range(1, len(seqs) + 1)))

    def run(store: Store, start: int) -> None:
        try:
            for n in range(start, start + 5):
                do_import(store, [result(n), result(n + 100)], f"{n}.csv")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(s, k)) for s, k in ((first, 0), (second, 10))]
    polling = threading.Thread(target=read)
    polling.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    writing.clear()
    polling.join()
    try:
        assert errors == []
        assert first.results.count() == 20
        assert [seq for seq, _, _ in changes(first)] == list(range(1, 21))
        assert seen_prefixes and all(seen_prefixes)
    finally:
        for store in (first, second, reader):
            store.close()


# --- transactions for other repositories --------------------------------------------------------


def test_begin_commits_on_success_and_rolls_back_on_error(store: Store) -> None:
    do_import(store, [result(1)])
    table = RESULTS
    with pytest.raises(RuntimeError), store.begin() as conn:
        conn.execute(update(table).values(subject_name="abandoned"))
        raise RuntimeError("abandon")
    got = store.results.get("r-1")
    assert got is not None and got.subject_name == result(1).subject_name
    with pytest.raises(IntegrityError), store.begin() as conn:  # foreign keys are enforced
        conn.execute(table.delete())  # the journal still refers to r-1
    with store.session() as session:
        row = session.get(CreditResultRow, "r-1")
        assert row is not None
        row.subject_name = "湖州改名企业有限公司"
    got = store.results.get("r-1")
    assert got is not None and got.subject_name == "湖州改名企业有限公司"
