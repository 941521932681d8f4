"""The results repository: bulk, idempotent, all-or-nothing import of published credit results.

A result id names one content forever (peers hold signed copies of it). Re-importing content the
store already holds changes nothing; a re-evaluation arrives under a new result id, becomes the
subject's ACTIVE result for its scheme, marks the previous one SUPERSEDED and links to it in
`supersedes`. Every new row appends an UPSERT to the changes journal in the same transaction
(a superseded row a REVOKE first). Deciding what an import does is a pure function
(`plan_import`); the repository only does I/O.

A file is imported through a `StagedImport`: its rows are staged chunk by chunk while it is read
(node.store.staging, no lock held), then planned and applied a chunk at a time in one
transaction holding the journal lock. Memory is bounded by the chunk, never the file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Row,
    String,
    Table,
    any_,
    bindparam,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from node.clock import SYSTEM
from node.errors import Conflict, ImportRejected, RowProblem
from node.identifiers import mask_resident_id
from node.model import (
    ChangeKind,
    CreditLevel,
    CreditResult,
    ResultStatus,
    SubjectIdType,
    SubjectRef,
    SubjectType,
)
from node.store.engine import SQLITE_BEGIN, Database
from node.store.journal import append_changes
from node.store.schema import CreditResultRow, ImportBatchRow
from node.store.staging import Staging

RESULTS = cast(Table, CreditResultRow.__table__)
IMPORT_BATCHES = cast(Table, ImportBatchRow.__table__)

# SQLite binds one parameter per value: stay below its historic limit of 999 per query.
_PREFETCH_CHUNK = 450
# Staged results planned and applied at a time.
APPLY_CHUNK = 5000
# The problems a rejected import lists; the rest are counted (ImportRejected.more).
MAX_PROBLEMS = 1000
_DIGEST_VERSION = 1

SubjectKey = tuple[int, str, str]  # (id type, subject id, scheme): one ACTIVE result each


@dataclasses.dataclass(frozen=True, slots=True)
class ImportSummary:
    """What an import did: new subjects/schemes, re-evaluations, and results already held."""

    inserted: int
    updated: int
    unchanged: int


def content_digest(result: CreditResult) -> str:
    """Hex SHA-256 of a result's published content, the key of idempotent re-import.

    Covers what the issuer asserts about the subject; leaves out the result id (a re-export
    that renames identical content is not a change), the status and supersedes link (the
    store's bookkeeping) and the per-request binding fields. Flags are a set.
    """
    content = {
        "v": _DIGEST_VERSION,
        "id_type": int(result.subject.id_type),
        "subject_id": result.subject.id,
        "subject_name": result.subject_name,
        "subject_type": int(result.subject_type),
        "issuer_node": result.issuer_node,
        "scheme": result.scheme,
        "native_level": result.native_level,
        "native_score": result.native_score,
        "level": int(result.level),
        "flags": sorted(result.flags),
        "indicators": dict(result.indicators),
        "evaluated_at": result.evaluated_at.isoformat(),
        "valid_until": result.valid_until.isoformat(),
    }
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def subject_key(result: CreditResult) -> SubjectKey:
    return (int(result.subject.id_type), result.subject.id, result.scheme)


# --- planning (pure) -----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class KnownResult:
    """What the store already holds about a result, as far as planning an import needs."""

    result_id: str
    key: SubjectKey
    digest: str
    status: ResultStatus
    evaluated_at: dt.datetime


@dataclasses.dataclass(frozen=True, slots=True)
class PlannedInsert:
    result: CreditResult
    digest: str
    supersedes: str | None


@dataclasses.dataclass(frozen=True, slots=True)
class ImportPlan:
    inserts: tuple[PlannedInsert, ...]
    superseded: tuple[str, ...]  # result ids that become SUPERSEDED
    unchanged: int

    @property
    def summary(self) -> ImportSummary:
        updated = len(self.superseded)
        return ImportSummary(len(self.inserts) - updated, updated, self.unchanged)


def check_batch(results: Sequence[CreditResult]) -> list[RowProblem]:
    """Problems visible in the batch alone; `row` is the 1-based position in `results`."""
    problems: list[RowProblem] = []
    first_by_id: dict[str, int] = {}
    first_by_key: dict[SubjectKey, int] = {}
    for row, result in enumerate(results, start=1):
        if result.status is not ResultStatus.ACTIVE or result.supersedes:
            problems.append(
                RowProblem(
                    row,
                    "status",
                    "an imported result is ACTIVE and supersedes nothing; "
                    "the store sets status and supersedes",
                )
            )
        if result.audience_node or result.zone or result.purpose or result.request_id:
            problems.append(
                RowProblem(
                    row,
                    "audience_node",
                    "an imported result is not yet bound to a "
                    "request: audience, zone, purpose and request id must be empty",
                )
            )
        earlier = first_by_id.setdefault(result.result_id, row)
        if earlier != row:
            problems.append(
                RowProblem(row, "result_id", f"{result.result_id!r} repeats row {earlier}")
            )
        key = subject_key(result)
        earlier = first_by_key.setdefault(key, row)
        if earlier != row:
            problems.append(
                RowProblem(
                    row,
                    "subject",
                    f"{_shown(result.subject)} already has a {result.scheme} "
                    f"result in row {earlier}; an import carries one per subject and "
                    "scheme",
                )
            )
    return problems


def _shown(subject: SubjectRef) -> str:
    """A subject as a message shows it: a resident id masked (it holds a birth date)."""
    if subject.id_type is SubjectIdType.RESIDENT_ID and not subject.is_pseudonymous:
        return mask_resident_id(subject.id)
    return subject.id


def plan_import(
    results: Sequence[CreditResult],
    digests: Sequence[str],
    known: Iterable[KnownResult],
) -> ImportPlan:
    """Decide what importing `results` (checked by `check_batch`) does to what is `known`.

    Raises ImportRejected listing every row that cannot be imported; then nothing is.
    """
    by_id: dict[str, KnownResult] = {}
    by_key: dict[SubjectKey, list[KnownResult]] = {}
    for item in known:
        by_id[item.result_id] = item
        by_key.setdefault(item.key, []).append(item)

    inserts: list[PlannedInsert] = []
    superseded: list[str] = []
    unchanged = 0
    problems: list[RowProblem] = []
    for row, (result, digest) in enumerate(zip(results, digests, strict=True), start=1):
        same_id = by_id.get(result.result_id)
        if same_id is not None:
            if same_id.digest == digest:
                unchanged += 1
            else:
                problems.append(
                    RowProblem(
                        row,
                        "result_id",
                        f"{result.result_id!r} is already stored with "
                        "different content; a re-evaluation or correction needs a new "
                        "result id",
                    )
                )
            continue
        history = by_key.get(subject_key(result), [])
        if any(item.digest == digest for item in history):
            unchanged += 1  # same content under another id: already held (maybe revoked)
            continue
        current = next((i for i in history if i.status is ResultStatus.ACTIVE), None)
        if current is None:
            inserts.append(PlannedInsert(result, digest, None))
        elif result.evaluated_at < current.evaluated_at:
            problems.append(
                RowProblem(
                    row,
                    "evaluated_at",
                    f"{result.evaluated_at.isoformat()} is before "
                    f"the current result {current.result_id} (evaluated "
                    f"{current.evaluated_at.isoformat()}); an older evaluation cannot "
                    "replace a newer one",
                )
            )
        else:
            inserts.append(PlannedInsert(result, digest, current.result_id))
            superseded.append(current.result_id)
    if problems:
        raise ImportRejected(
            f"{len(problems)} of {len(results)} results cannot be imported", problems
        )
    return ImportPlan(tuple(inserts), tuple(superseded), unchanged)


# --- rows <-> domain ---------------------------------------------------------------------------


def result_row_values(planned: PlannedInsert, now: dt.datetime) -> dict[str, Any]:
    result = planned.result
    return {
        "result_id": result.result_id,
        "id_type": int(result.subject.id_type),
        "subject_id": result.subject.id,
        "subject_name": result.subject_name,
        "subject_type": int(result.subject_type),
        "issuer_node": result.issuer_node,
        "scheme": result.scheme,
        "native_level": result.native_level,
        "native_score": result.native_score,
        "level": int(result.level),
        "flags": json.dumps(list(result.flags)),
        "indicators": json.dumps(dict(result.indicators), ensure_ascii=False, sort_keys=True),
        "evaluated_at": result.evaluated_at,
        "valid_until": result.valid_until,
        "status": int(ResultStatus.ACTIVE),
        "supersedes": planned.supersedes,
        "content_digest": planned.digest,
        "created_at": now,
        "updated_at": now,
    }


# Enum members by wire number: a dict lookup is several times faster than calling the enum.
_ID_TYPES = {int(t): t for t in SubjectIdType}
_SUBJECT_TYPES = {int(t): t for t in SubjectType}
_LEVELS = {int(level): level for level in CreditLevel}
_STATUSES = {int(s): s for s in ResultStatus}
# The columns a CreditResult is rebuilt from (not the store's bookkeeping).
RESULT_COLUMNS = (
    "result_id",
    "id_type",
    "subject_id",
    "subject_name",
    "subject_type",
    "issuer_node",
    "scheme",
    "native_level",
    "native_score",
    "level",
    "flags",
    "indicators",
    "evaluated_at",
    "valid_until",
    "status",
    "supersedes",
)


def result_from_row(row: Row[Any] | Mapping[str, Any]) -> CreditResult:
    """The domain result for a `credit_results` row (binding fields empty).

    Rows were checked on import (`import_results`), so they are rebuilt without checking again.
    """
    m = row._mapping if isinstance(row, Row) else row
    flags, indicators = m["flags"], m["indicators"]
    return CreditResult.trusted(
        result_id=m["result_id"],
        subject=SubjectRef.trusted(_ID_TYPES[m["id_type"]], m["subject_id"]),
        subject_name=m["subject_name"],
        subject_type=_SUBJECT_TYPES[m["subject_type"]],
        issuer_node=m["issuer_node"],
        scheme=m["scheme"],
        native_level=m["native_level"],
        native_score=m["native_score"],
        level=_LEVELS[m["level"]],
        flags=() if flags == "[]" else tuple(json.loads(flags)),
        indicators={} if indicators == "{}" else json.loads(indicators),
        evaluated_at=m["evaluated_at"],
        valid_until=m["valid_until"],
        status=_STATUSES[m["status"]],
        supersedes=m["supersedes"] or "",
    )


def _prefetch_chunks(
    conn: Connection, results: Sequence[CreditResult]
) -> Iterator[tuple[list[str], list[str]]]:
    """(subject ids, result ids) to look up: all at once on PostgreSQL, which takes each list as
    one array parameter; in chunks on SQLite, which binds one parameter per value. A chunk holds
    the same results' subjects and ids, so a stored row is mostly fetched once."""
    size = max(1, len(results)) if conn.dialect.name == "postgresql" else _PREFETCH_CHUNK
    for start in range(0, len(results), size):
        chunk = results[start : start + size]
        yield sorted({r.subject.id for r in chunk}), sorted({r.result_id for r in chunk})


def _one_of(conn: Connection, column: ColumnElement[str], values: list[str]) -> ColumnElement[bool]:
    if conn.dialect.name == "postgresql":
        # `= ANY(array)`: the array is one value the planner can hash; an IN list of thousands
        # of separate parameters is compared one by one on every row scanned.
        return column == any_(bindparam(None, values, type_=postgresql.ARRAY(String)))
    return column.in_(values)


# --- the repository ----------------------------------------------------------------------------


class ResultRepository:
    """Credit results of local subjects: `Store.results`."""

    def __init__(self, store: Database) -> None:
        self._store = store

    def import_results(
        self,
        results: Sequence[CreditResult],
        *,
        source: str,
        file_sha256: str,
        fmt: str,
        now: dt.datetime | None = None,
    ) -> ImportSummary:
        """Import one file's results in one transaction: all of them, or none.

        Raises ImportRejected (listing every bad row; `row` = 1-based position in `results`)
        or Conflict when a concurrent writer changed the same results (retry the import).
        """
        problems = check_batch(results)
        if problems:
            raise ImportRejected(
                f"{source} rejected, nothing imported: {len(problems)} problems", problems
            )
        with self.staged_import(source=source, fmt=fmt, now=now) as staged:
            for start in range(0, len(results), APPLY_CHUNK):
                chunk = results[start : start + APPLY_CHUNK]
                staged.add(list(enumerate(chunk, start=start + 1)), ())
            return staged.commit(file_sha256)

    def staged_import(
        self, *, source: str, fmt: str, now: dt.datetime | None = None
    ) -> StagedImport:
        """An import to feed a file's chunks into (`with repo.staged_import(...) as staged`)."""
        return StagedImport(self, source=source, fmt=fmt, now=now)

    def _prefetch(self, conn: Connection, results: Sequence[CreditResult]) -> list[KnownResult]:
        """Every stored row sharing a subject or a result id with the batch."""
        columns = (
            RESULTS.c.result_id,
            RESULTS.c.id_type,
            RESULTS.c.subject_id,
            RESULTS.c.scheme,
            RESULTS.c.content_digest,
            RESULTS.c.status,
            RESULTS.c.evaluated_at,
        )
        seen: dict[str, KnownResult] = {}
        for subject_chunk, id_chunk in _prefetch_chunks(conn, results):
            query = select(*columns).where(
                or_(
                    _one_of(conn, RESULTS.c.subject_id, subject_chunk),
                    _one_of(conn, RESULTS.c.result_id, id_chunk),
                )
            )
            for row in conn.execute(query):
                seen[row.result_id] = KnownResult(
                    row.result_id,
                    (row.id_type, row.subject_id, row.scheme),
                    row.content_digest,
                    ResultStatus(row.status),
                    row.evaluated_at,
                )
        return list(seen.values())

    def _apply(self, conn: Connection, plan: ImportPlan, at: dt.datetime) -> None:
        # Supersede first: the partial unique index allows one ACTIVE row per subject+scheme.
        if plan.superseded:
            conn.execute(
                update(RESULTS)
                .where(RESULTS.c.result_id == bindparam("old_id"))
                .values(status=int(ResultStatus.SUPERSEDED), updated_at=at),
                [{"old_id": result_id} for result_id in plan.superseded],
            )
        if plan.inserts:
            conn.execute(insert(RESULTS), [result_row_values(p, at) for p in plan.inserts])
        # A superseded result is revoked in the feed before its successor arrives, so a
        # consumer keeping one current result per subject and scheme never holds two.
        changes: list[tuple[ChangeKind, str]] = []
        for p in plan.inserts:
            if p.supersedes is not None:
                changes.append((ChangeKind.REVOKE, p.supersedes))
            changes.append((ChangeKind.UPSERT, p.result.result_id))
        append_changes(conn, changes, at)

    def _apply_staged(
        self, conn: Connection, staging: Staging, problems: _ProblemList, at: dt.datetime
    ) -> tuple[ImportSummary, int]:
        """Plan and apply the staged results a chunk at a time (the caller's transaction holds
        the journal lock). After a problem, chunks are still planned, to list every problem,
        but no longer applied. Returns what was done and how many rows were staged."""
        inserted = updated = unchanged = rows = 0
        after = 0
        while staged := staging.staged(after, APPLY_CHUNK):
            after = staged[-1]["row_number"]
            rows += len(staged)
            active = {"status": int(ResultStatus.ACTIVE), "supersedes": None}
            results = [result_from_row({**r, **active}) for r in staged]
            digests = [r["content_digest"] for r in staged]
            try:
                plan = plan_import(results, digests, self._prefetch(conn, results))
            except ImportRejected as exc:  # rows are positions in the chunk: name the file's
                problems.add(
                    [
                        RowProblem(staged[p.row - 1]["row_number"], p.field, p.reason)
                        for p in exc.problems
                    ]
                )
                continue
            if not problems.count:
                self._apply(conn, plan, at)
                summary = plan.summary
                inserted += summary.inserted
                updated += summary.updated
                unchanged += summary.unchanged
        return ImportSummary(inserted, updated, unchanged), rows

    # --- reads ----------------------------------------------------------------------------------

    def get(self, result_id: str) -> CreditResult | None:
        """The result with this id, whatever its status; None if there is none."""
        with self._store.connect() as conn:
            row = conn.execute(select(RESULTS).where(RESULTS.c.result_id == result_id)).first()
        return None if row is None else result_from_row(row)

    def get_current(self, id_type: SubjectIdType, subject_id: str) -> list[CreditResult]:
        """The subject's ACTIVE results, one per scheme, ordered by scheme.

        `subject_id` is normalised and checked first (InvalidIdentifier when malformed).
        """
        subject = SubjectRef(id_type, subject_id, admitted=True)  # a lookup: stored or not
        query = (
            select(RESULTS)
            .where(
                RESULTS.c.subject_id == subject.id,
                RESULTS.c.id_type == int(subject.id_type),
                RESULTS.c.status == int(ResultStatus.ACTIVE),
            )
            .order_by(RESULTS.c.scheme)
        )
        with self._store.connect() as conn:
            return [result_from_row(row) for row in conn.execute(query)]

    def count(self, status: ResultStatus | None = None) -> int:
        """How many results are stored (of one status, when given)."""
        query = select(func.count()).select_from(RESULTS)
        if status is not None:
            query = query.where(RESULTS.c.status == int(status))
        with self._store.connect() as conn:
            return int(conn.execute(query).scalar_one())


# --- a file's import, staged -----------------------------------------------------------------


class _ProblemList:
    """A rejected file's problems in row order (whole-file ones first), the first
    MAX_PROBLEMS of them kept and the rest counted."""

    def __init__(self, cap: int = MAX_PROBLEMS) -> None:
        self._cap = cap
        self._file: list[RowProblem] = []
        self._rows: list[RowProblem] = []
        self.count = 0
        self.bad_rows = 0
        self._last_row = -1

    def add(self, problems: Iterable[RowProblem]) -> None:
        for problem in problems:
            self.count += 1
            if problem.row == 0:
                if len(self._file) < self._cap:
                    self._file.append(problem)
                continue
            if problem.row != self._last_row:
                self.bad_rows += 1
                self._last_row = problem.row
            if len(self._rows) < self._cap:
                self._rows.append(problem)

    def extend(self, later: _ProblemList) -> None:
        """Add `later`'s problems, all of rows after this list's (the next part of a file
        read in parts): as if added one by one, those it kept and those it counted."""
        self._file += later._file[: self._cap - len(self._file)]
        self._rows += later._rows[: self._cap - len(self._rows)]
        self.count += later.count
        self.bad_rows += later.bad_rows
        if later.bad_rows:
            self._last_row = later._last_row

    def rejected(self, source: str) -> ImportRejected:
        # Problems the store finds come after the file's: listed in row order all the same.
        listed = (self._file + sorted(self._rows, key=lambda p: p.row))[: self._cap]
        noun = "problem" if self.count == 1 else "problems"
        rows = f"{self.bad_rows:,} row{'s' if self.bad_rows != 1 else ''}"
        return ImportRejected(
            f"{source} rejected, nothing imported: {self.count:,} {noun} in {rows}; "
            f"first: {listed[0]}",
            listed,
            more=self.count - len(listed),
        )


ProblemList = _ProblemList  # what node.store.record_import keeps of a rejected file, too


class StagedImport:
    """One file's import, fed chunk by chunk and applied all or nothing by `commit`.

    While the file is read (`add`), its rows go into temporary tables on one connection of
    the store, holding no lock on the store's tables; `first_rows` is the adapters' memory of
    the subjects named so far. `commit` then plans and applies the staged rows in one
    transaction that holds the journal lock (node.store.journal), writes the import batch,
    and commits, or raises ImportRejected listing the problems (at most MAX_PROBLEMS, the
    rest counted) with nothing written. Leaving the block without `commit` imports nothing.
    """

    def __init__(
        self, repository: ResultRepository, *, source: str, fmt: str, now: dt.datetime | None
    ) -> None:
        self._repository = repository
        self._source = source
        self._fmt = fmt
        self._now = now
        self._problems = _ProblemList()
        self._stack = contextlib.ExitStack()
        self._conn: Connection | None = None
        self._staging: Staging | None = None

    def __enter__(self) -> StagedImport:
        conn = self._stack.enter_context(self._repository._store.connect())
        staging = Staging(conn)
        staging.create()
        self._stack.callback(self._drop, conn, staging)
        self._conn, self._staging = conn, staging
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stack.close()

    @staticmethod
    def _drop(conn: Connection, staging: Staging) -> None:
        if conn.in_transaction():
            conn.rollback()
        with contextlib.suppress(Exception):  # a broken connection takes its tables with it
            staging.drop()
            conn.commit()

    @property
    def problem_count(self) -> int:
        return self._problems.count

    def first_rows(self, subjects: Sequence[tuple[int, SubjectRef]]) -> Mapping[int, int]:
        """adapters.streaming.SeenSubjects, in the staging table."""
        return self._staged().first_rows(subjects)

    def add(
        self, records: Sequence[tuple[int, CreditResult]], problems: Sequence[RowProblem]
    ) -> None:
        """The next chunk: results by row number, and problems of the rows between. Once the
        file has a problem its results are no longer staged: it will be rejected."""
        self._problems.add(problems)
        if not self._problems.count:
            self._staged().stage([(row, r, content_digest(r)) for row, r in records])

    def commit(self, file_sha256: str) -> ImportSummary:
        """Apply every staged row in one transaction, or raise ImportRejected (Conflict when
        a concurrent writer changed the same subjects: run the import again)."""
        staging, conn = self._staged(), self._conn
        assert conn is not None
        if self._problems.count:
            raise self._problems.rejected(self._source)
        conn.commit()  # the staged rows; the store's tables are untouched so far
        at = (self._now or SYSTEM.now()).astimezone(dt.UTC)
        conn.execution_options(**{SQLITE_BEGIN: "IMMEDIATE"})
        try:
            with conn.begin():
                self._repository._store.lock_changes(conn)
                summary, rows = self._repository._apply_staged(conn, staging, self._problems, at)
                if self._problems.count:
                    raise self._problems.rejected(self._source)
                conn.execute(
                    insert(IMPORT_BATCHES).values(
                        source=self._source,
                        file_sha256=file_sha256,
                        format=self._fmt,
                        row_count=rows,
                        inserted=summary.inserted,
                        updated=summary.updated,
                        unchanged=summary.unchanged,
                        imported_at=at,
                    )
                )
        except IntegrityError as exc:
            raise Conflict(
                f"{self._source}: the store refused the import "
                f"({str(exc.orig).splitlines()[0]}); another import may have changed the same "
                "subjects at the same time. Nothing was imported; run the import again."
            ) from exc
        finally:
            conn.execution_options(**{SQLITE_BEGIN: "DEFERRED"})
        return summary

    def _staged(self) -> Staging:
        if self._staging is None:
            raise RuntimeError("a StagedImport is used inside its with block")
        return self._staging
