"""The government exchange formats: 双公示 administrative penalties (行政处罚, `CF_*`) and
licences (行政许可, `XK_*`), and the serious-dishonesty list (严重失信主体名单), each in CSV,
JSON and the XML exchange wrapper. Columns are named by data (adapters.fieldmaps), the class of
a penalty by a rule kept as data (adapters.penalty_class); adapters/shuanggongshi.md defines
the formats.

A penalty becomes a `PenaltyRecord` (class, decision date, announced publicity end), a list
row a `PenaltyRecord` of the list kind (an entry) or a `ListRemoval`; a licence a `Licence`,
which the node checks and counts but does not store. A file is read as a stream in chunks of
checked rows, like the results exports (adapters.streaming): every problem of every row is
reported, and whoever takes the chunks keeps the file all or nothing.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import hashlib
import hmac
import io
import pathlib
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from typing import Any, BinaryIO, Generic, Protocol, TypeVar

from adapters.containers import CONTAINERS, Container, Row, read_rows, write
from adapters.decoding import CountingReader, open_text
from adapters.fieldmaps import FieldMap, builtin_field_maps, load_field_maps
from adapters.penalty_class import ClassProblem, ClassRule, builtin_rule, classify
from adapters.splitting import CsvPart
from adapters.streaming import CHUNK_ROWS, Chunk, collect
from node.errors import InvalidIdentifier, InvalidInput, RowProblem
from node.model import RevocationReason, SubjectIdType, SubjectRef
from node.public_records import ListChange, ListRemoval, PenaltyRecord, RecordKind
from node.repair import Severity

R = TypeVar("R")

EARLIEST_DATE = dt.date(1900, 1, 1)
LATEST_DATE = dt.date(2199, 12, 31)
DEFAULT_LIST = "严重失信主体名单"
_DATE_RE = re.compile(r"^(\d{4})[-/](\d{1,2})[-/](\d{1,2})\Z|^(\d{4})(\d{2})(\d{2})\Z")
_AMOUNT_RE = re.compile(r"^\d{1,12}(\.\d{1,6})?\Z")
_QUOTED_CHARS = 40
_SUBJECTS_REMEMBERED = 10_000
_ID_TYPE_NAMES = {t: t.name for t in SubjectIdType}  # Enum.name is a descriptor: slower

# 行政相对人类别: who the subject is. A natural person is named by a resident id; every other
# category by a USCC.
PERSON_CATEGORIES = frozenset({"自然人", "NATURAL_PERSON"})
ORGANISATION_CATEGORIES = frozenset(
    {"法人及非法人组织", "法人", "非法人组织", "个体工商户", "LEGAL_PERSON", "INDIVIDUAL_BUSINESS"}
)
OPEN_ENDED = frozenset({"长期", "永久", "长期有效"})  # a licence's XK_YXQZI with no end
RESIDENT_ID_TYPES = frozenset({"身份证", "居民身份证", "RESIDENT_ID"})
ORGANISATION_LABEL = "法人及非法人组织"
PERSON_LABEL = "自然人"
RESIDENT_ID_LABEL = "身份证"

LIST_ACTIONS: Mapping[str, bool] = {"列入": True, "ADD": True, "移出": False, "REMOVE": False}
REMOVAL_REASONS: Mapping[str, RevocationReason] = {
    "信用修复": RevocationReason.CREDIT_REPAIRED,
    "修复": RevocationReason.CREDIT_REPAIRED,
    "CREDIT_REPAIRED": RevocationReason.CREDIT_REPAIRED,
    "期满": RevocationReason.EXPIRED,
    "到期": RevocationReason.EXPIRED,
    "EXPIRED": RevocationReason.EXPIRED,
    "撤销": RevocationReason.CORRECTED,
    "更正": RevocationReason.CORRECTED,
    "CORRECTED": RevocationReason.CORRECTED,
}
_REASON_LABELS = {
    RevocationReason.CREDIT_REPAIRED: "信用修复",
    RevocationReason.EXPIRED: "期满",
    RevocationReason.CORRECTED: "撤销",
}


@dataclasses.dataclass(frozen=True, slots=True)
class Licence:
    """A 双公示 licence (行政许可): public information, checked and counted, not stored."""

    licence_id: str
    subject: SubjectRef
    subject_name: str
    decided_on: dt.date
    valid_from: dt.date
    valid_to: dt.date | None
    content: Mapping[str, str] = dataclasses.field(default_factory=dict)


class SeenKeys(Protocol):
    """Memory of the records a file has named so far (once per file). `deferred`: it finds
    repeats itself later (the store, set-based), so no keys need be handed over."""

    deferred: bool

    def first_rows(self, keys: Sequence[tuple[int, str]]) -> Mapping[int, int]:
        """Remember `(row, key)` pairs (rows ascending); {row: first row with the same key}
        for each repeat."""
        ...


class KeysInMemory:
    deferred = False

    def __init__(self) -> None:
        self._first: dict[str, int] = {}

    def first_rows(self, keys: Sequence[tuple[int, str]]) -> Mapping[int, int]:
        repeats = {}
        for row, key in keys:
            first = self._first.setdefault(key, row)
            if first != row:
                repeats[row] = first
        return repeats


def record_id_for(
    prefix: str, subject: SubjectRef, parts: Sequence[str], subject_key: bytes | None = None
) -> str:
    """A record id from what names the record (`cf`: subject and CF_WSH; `sd`: subject, list
    and listing date; `xk`: subject, XK_WSH and XK_XKBH): the same row, the same id, every
    time. A person's id is keyed (HMAC with the node's subject key) where the key is given,
    so the id does not reveal it."""
    text = "\x1f".join((_ID_TYPE_NAMES[subject.id_type], subject.id, *parts)).encode()
    if subject.id_type is SubjectIdType.RESIDENT_ID and subject_key is not None:
        return f"{prefix}-{hmac.new(subject_key, text, hashlib.sha256).hexdigest()[:32]}"
    return f"{prefix}-{hashlib.sha256(text).hexdigest()[:32]}"


# --- converting one row -----------------------------------------------------------------------

_Problem = Callable[[str, str], None]  # (field, reason) for the row being converted


class _Converter(Generic[R]):
    """Checks one row's cells and builds its record; the record's key says what "the same
    record" is (a file names each once)."""

    key_field: str
    repeat_reason: str

    def __init__(
        self,
        field_map: FieldMap,
        *,
        legacy_codes: AbstractSet[str],
        subject_key: bytes | None,
        rule: ClassRule,
    ) -> None:
        self.field_map = field_map
        self.legacy_codes = legacy_codes
        self.subject_key = subject_key
        self.rule = rule
        self.dates: dict[str, dt.date | None] = {}
        self.classes: dict[str, tuple[Severity, bool] | ClassProblem] = {}
        self.required = tuple(
            f for f, spec in field_map.fields.items() if spec.required and f != "subject_name"
        )
        self.required_set = frozenset(self.required)
        self.kept = frozenset(f for f, spec in field_map.fields.items() if spec.keep)
        # Exports name a subject several times: each id is checked once (bounded, for memory).
        self.subjects: dict[tuple[bool, str], SubjectRef | InvalidIdentifier] = {}

    def convert(self, row: Row) -> tuple[R | list[RowProblem], str | None]:
        problems: list[RowProblem] = []
        names = row.names
        spelling = self.field_map.spelling

        def problem(field: str, reason: str) -> None:
            problems.append(RowProblem(row.row, names.get(field) or spelling[field], reason))

        cells = row.cells
        if not self.required_set <= cells.keys():
            for field in self.required:
                if field not in cells:
                    problem(field, "is required")
        name = cells.get("subject_name", "")
        if not name:
            problem("subject_name", "is required")
        subject = self._subject(cells, problem)
        record, key = self.build(cells, subject, name, problem)
        if problems or record is None:
            return problems, key
        return record, key

    def build(
        self, cells: Mapping[str, str], subject: SubjectRef | None, name: str, problem: _Problem
    ) -> tuple[R | None, str | None]:
        raise NotImplementedError

    def _subject(self, cells: Mapping[str, str], problem: _Problem) -> SubjectRef | None:
        category = cells.get("subject_category", "")
        person = category.upper() in PERSON_CATEGORIES
        if category and not person and category.upper() not in ORGANISATION_CATEGORIES:
            known = ", ".join(sorted(PERSON_CATEGORIES | ORGANISATION_CATEGORIES))
            problem(
                "subject_category", f"unknown subject category {_quoted(category)}; use {known}"
            )
            return None
        if person:
            id_type = cells.get("person_id_type", "")
            if id_type and id_type.upper() not in RESIDENT_ID_TYPES:
                problem(
                    "person_id_type",
                    f"{_quoted(id_type)}: only a resident id (身份证) names a person here",
                )
                return None
            raw = cells.get("person_id", "")
            if not raw:
                problem("person_id", "is required for a natural person (自然人)")
                return None
        else:
            raw = cells.get("uscc", "")
            if not raw:
                problem("uscc", "is required (a person is named by 证件号码 when 类别 is 自然人)")
                return None
        subject = self.subjects.get((person, raw))
        if subject is None:
            try:
                if person:
                    subject = SubjectRef(SubjectIdType.RESIDENT_ID, raw)
                else:
                    subject = SubjectRef(SubjectIdType.USCC, raw, legacy_codes=self.legacy_codes)
            except InvalidIdentifier as exc:
                subject = exc
            if len(self.subjects) >= _SUBJECTS_REMEMBERED:
                self.subjects.clear()
            self.subjects[(person, raw)] = subject
        if isinstance(subject, InvalidIdentifier):
            problem("person_id" if person else "uscc", subject.message)
            return None
        return subject

    def date(self, cells: Mapping[str, str], field: str, problem: _Problem) -> dt.date | None:
        raw = cells.get(field, "")
        if not raw:
            return None  # a required one is reported as such
        if raw not in self.dates:
            self.dates[raw] = _parse_date(raw)
        value = self.dates[raw]
        if value is None:
            problem(field, f"{_quoted(raw)} is not a calendar date; write YYYY-MM-DD or YYYYMMDD")
        elif not EARLIEST_DATE <= value <= LATEST_DATE:
            problem(
                field, f"{value} is outside the dates accepted ({EARLIEST_DATE} to {LATEST_DATE})"
            )
            return None
        return value

    def amount(
        self, cells: Mapping[str, str], field: str, problem: _Problem
    ) -> decimal.Decimal | None:
        raw = cells.get(field, "")
        if not raw:
            return None
        if not _AMOUNT_RE.match(raw):
            problem(field, f"{_quoted(raw)} is not an amount in 万元 (e.g. 0.5)")
            return None
        return decimal.Decimal(raw)

    def content(self, cells: Mapping[str, str]) -> dict[str, str]:
        kept = self.kept
        return {f: v for f, v in cells.items() if f in kept}

    def digest(self, prefix: str, subject: SubjectRef, *parts: str) -> str:
        return record_id_for(prefix, subject, parts, self.subject_key)


class _PenaltyConverter(_Converter[PenaltyRecord]):
    key_field = "case_number"
    repeat_reason = "the same penalty (subject and decision number)"

    def build(
        self, cells: Mapping[str, str], subject: SubjectRef | None, name: str, problem: _Problem
    ) -> tuple[PenaltyRecord | None, str | None]:
        case_number = cells.get("case_number", "")
        fine = self.amount(cells, "fine", problem)
        self.amount(cells, "confiscated", problem)
        severity: Severity | None = None
        if "category" in cells or "severity" in cells:
            try:
                severity = classify(
                    self.rule,
                    cells.get("severity", ""),
                    cells.get("category", ""),
                    fine,
                    self.classes,
                )
            except ClassProblem as exc:
                problem(exc.field, exc.reason)
        decided = self.date(cells, "decided_on", problem)
        ends = self.date(cells, "publicity_ends_on", problem)
        self.date(cells, "valid_until", problem)
        if decided is not None and ends is not None and ends < decided:
            problem("publicity_ends_on", f"{ends} is before the decision date {decided}")
            ends = None
        if subject is None or not case_number:
            return None, None
        record_id = self.digest("cf", subject, case_number)
        if severity is None or decided is None or ends is None or not name:
            return None, record_id
        record = PenaltyRecord(
            record_id=record_id,
            subject=subject,
            subject_name=name,
            severity=severity,
            decided_on=decided,
            content=self.content(cells),
            publicity_ends_on=ends,
        )
        return record, record_id


class _ListConverter(_Converter[ListChange]):
    key_field = "listed_on"
    repeat_reason = "the same entry or removal (subject, list and listing date)"

    def build(
        self, cells: Mapping[str, str], subject: SubjectRef | None, name: str, problem: _Problem
    ) -> tuple[ListChange | None, str | None]:
        raw_action = cells.get("action", "")
        adding = LIST_ACTIONS.get(raw_action.upper()) if raw_action else None
        if raw_action and adding is None:
            problem(
                "action", f"unknown action {_quoted(raw_action)}; use 列入 or 移出 (ADD, REMOVE)"
            )
        listed = self.date(cells, "listed_on", problem)
        removed = self.date(cells, "removed_on", problem)
        reason = RevocationReason.CREDIT_REPAIRED
        if adding is False:
            if "removed_on" not in cells:
                problem("removed_on", "is required for a removal (移出)")
            elif listed is not None and removed is not None and removed < listed:
                problem("removed_on", f"{removed} is before the listing date {listed}")
            raw_reason = cells.get("removal_reason", "")
            if raw_reason:
                found = REMOVAL_REASONS.get(raw_reason.upper())
                if found is None:
                    known = ", ".join(REMOVAL_REASONS)
                    problem("removal_reason", f"unknown reason {_quoted(raw_reason)}; use {known}")
                else:
                    reason = found
        elif adding is True and "removed_on" in cells:
            problem("removed_on", "is given for an entry (列入); a removal is its own row")
        if subject is None or listed is None or adding is None:
            return None, None
        list_name = cells.get("list_name", DEFAULT_LIST)
        record_id = self.digest("sd", subject, list_name, listed.isoformat())
        key = ("+" if adding else "-") + record_id
        if not name:
            return None, key
        if adding:
            content = self.content(cells) | {"list_name": list_name}
            entry = PenaltyRecord(
                record_id=record_id,
                subject=subject,
                subject_name=name,
                severity=Severity.SERIOUS,
                decided_on=listed,
                content=content,
                kind=RecordKind.SERIOUS_DISHONESTY_LIST,
            )
            return entry, key
        if removed is None:
            return None, key
        removal = ListRemoval(
            record_id=record_id,
            subject=subject,
            subject_name=name,
            removed_on=removed,
            reason=reason,
            content=self.content(cells) | {"list_name": list_name, "listed_on": listed.isoformat()},
        )
        return removal, key


class _LicenceConverter(_Converter[Licence]):
    key_field = "document_number"
    repeat_reason = "the same licence (subject, decision and licence number)"

    def build(
        self, cells: Mapping[str, str], subject: SubjectRef | None, name: str, problem: _Problem
    ) -> tuple[Licence | None, str | None]:
        decided = self.date(cells, "decided_on", problem)
        valid_from = self.date(cells, "valid_from", problem)
        valid_to = None
        if cells.get("valid_to", "") not in OPEN_ENDED:
            valid_to = self.date(cells, "valid_to", problem)
        if valid_from is not None and valid_to is not None and valid_to < valid_from:
            problem("valid_to", f"{valid_to} is before the start of validity {valid_from}")
            return None, None
        number = cells.get("document_number", "")
        if subject is None or not number:
            return None, None
        licence_id = self.digest("xk", subject, number, cells.get("licence_number", ""))
        if decided is None or valid_from is None or not name:
            return None, licence_id
        licence = Licence(
            licence_id=licence_id,
            subject=subject,
            subject_name=name,
            decided_on=decided,
            valid_from=valid_from,
            valid_to=valid_to,
            content=self.content(cells),
        )
        return licence, licence_id


# --- writing one record -----------------------------------------------------------------------


def _subject_cells(subject: SubjectRef, name: str) -> dict[str, str]:
    if subject.id_type is SubjectIdType.RESIDENT_ID:
        return {
            "subject_name": name,
            "subject_category": PERSON_LABEL,
            "person_id_type": RESIDENT_ID_LABEL,
            "person_id": subject.id,
        }
    return {"subject_name": name, "subject_category": ORGANISATION_LABEL, "uscc": subject.id}


def _penalty_cells(record: PenaltyRecord, rule: ClassRule) -> dict[str, str]:
    cells = _subject_cells(record.subject, record.subject_name) | dict(record.content)
    cells["decided_on"] = record.decided_on.isoformat()
    if record.publicity_ends_on is None:
        raise InvalidInput(f"penalty {record.record_id} has no publicity end (CF_GSJZQ)")
    cells["publicity_ends_on"] = record.publicity_ends_on.isoformat()
    fine = decimal.Decimal(cells["fine"]) if cells.get("fine") else None
    try:
        derived: Severity | None = classify(rule, "", cells.get("category", ""), fine)
    except ClassProblem:
        derived = None
    if derived is not record.severity:  # the rule would read another class: say it
        cells["severity"] = record.severity.name
    return cells


def _list_cells(change: ListChange) -> dict[str, str]:
    cells = _subject_cells(change.subject, change.subject_name) | dict(change.content)
    if isinstance(change, PenaltyRecord):
        cells["action"] = "列入"
        cells["listed_on"] = change.decided_on.isoformat()
    else:
        cells["action"] = "移出"
        cells["removed_on"] = change.removed_on.isoformat()
        cells["removal_reason"] = _REASON_LABELS[change.reason]
    if cells.get("list_name") == DEFAULT_LIST:
        del cells["list_name"]
    return cells


def _licence_cells(licence: Licence) -> dict[str, str]:
    cells = _subject_cells(licence.subject, licence.subject_name) | dict(licence.content)
    cells["decided_on"] = licence.decided_on.isoformat()
    cells["valid_from"] = licence.valid_from.isoformat()
    if licence.valid_to is not None:
        cells["valid_to"] = licence.valid_to.isoformat()
    return cells


# --- the formats ------------------------------------------------------------------------------

_KINDS: Mapping[str, tuple[type[_Converter[object]], str]] = {
    "penalty": (_PenaltyConverter, "shuanggongshi-cf"),  # type: ignore[dict-item]
    "licence": (_LicenceConverter, "shuanggongshi-xk"),  # type: ignore[dict-item]
    "serious-dishonesty": (_ListConverter, "serious-dishonesty"),  # type: ignore[dict-item]
}


@dataclasses.dataclass(frozen=True)
class RecordFormat(Generic[R]):
    """One government format in one container: reads records of one kind (adapters.registry
    RecordAdapter). `field_maps` None: the shipped maps (adapters/fieldmaps)."""

    name: str
    description: str
    kind: str  # "penalty" | "licence" | "serious-dishonesty" (adapters.fieldmaps.KIND_FIELDS)
    container: Container
    field_maps: Mapping[str, FieldMap] | None = None
    rule: ClassRule | None = None  # None: adapters/penalty-classes.toml
    version: str = "1"  # adapters/shuanggongshi.md's revision of the format

    @property
    def field_map(self) -> FieldMap:
        return (self.field_maps or builtin_field_maps())[self.kind]

    @property
    def repeat(self) -> tuple[str, str]:
        """The column a record named twice is reported at, and what "the same" means."""
        converter = _KINDS[self.kind][0]
        return self.field_map.spelling[converter.key_field], converter.repeat_reason

    def with_field_maps(self, field_maps: Mapping[str, FieldMap]) -> RecordFormat[R]:
        """The same format reading the columns of `field_maps` (a node's own variants)."""
        return dataclasses.replace(self, field_maps=field_maps)

    def read(
        self,
        stream: BinaryIO,
        *,
        issuer_node: str = "",
        legacy_codes: AbstractSet[str] = frozenset(),
        subject_key: bytes | None = None,
        seen: SeenKeys | None = None,
        chunk_rows: int = CHUNK_ROWS,
        part: CsvPart | None = None,
    ) -> Iterator[Chunk[R]]:
        """The file's records in chunks of at most `chunk_rows` rows, in row order, and the
        problems of every bad row (row 0: the whole file, which ends the reading). `seen`
        remembers the records of earlier chunks (in memory when not given). `issuer_node`
        is accepted for the registry's sake: these records are this node's own. `part`:
        read only that part of the file (a CSV cut by adapters.splitting), numbering its rows
        as in the whole; `seen` then knows only that part's records."""
        del issuer_node
        if part is None:
            opened = open_text(stream, self.name)
        elif self.container != "csv":
            raise InvalidInput(f"{self.name}: only a CSV export is read in parts")
        else:
            opened = open_text(part.open(stream), self.name, part.settled)
        if isinstance(opened, RowProblem):
            yield Chunk((), (opened,), 0, 0)
            return
        converter_type, _ = _KINDS[self.kind]
        converter = converter_type(
            self.field_map,
            legacy_codes=legacy_codes,
            subject_key=subject_key,
            rule=self.rule or builtin_rule(),
        )
        first_row, lines_before = (1, 0) if part is None else (part.first_row, part.lines_before)
        rows = read_rows(
            opened, self.container, self.field_map, first_row=first_row, lines_before=lines_before
        )
        chunks = _chunks(rows, converter, seen or KeysInMemory(), chunk_rows, opened.counter)
        yield from chunks  # type: ignore[misc]

    def parse(
        self,
        data: bytes,
        *,
        issuer_node: str = "",
        legacy_codes: AbstractSet[str] = frozenset(),
        subject_key: bytes | None = None,
    ) -> list[R]:
        chunks = self.read(
            io.BytesIO(data),
            issuer_node=issuer_node,
            legacy_codes=legacy_codes,
            subject_key=subject_key,
        )
        return collect(chunks, self.name)

    def render(self, records: Sequence[R]) -> bytes:
        """The export that `parse` reads back as `records` (column names of the primary map)."""
        field_map = self.field_map
        rule = self.rule or builtin_rule()
        rows: list[dict[str, str]] = []
        for record in records:
            if isinstance(record, PenaltyRecord) and self.kind == "penalty":
                cells = _penalty_cells(record, rule)
            elif isinstance(record, PenaltyRecord | ListRemoval):
                cells = _list_cells(record)
            elif isinstance(record, Licence):
                cells = _licence_cells(record)
            else:
                raise InvalidInput(f"{self.name} cannot write a {type(record).__name__}")
            rows.append({field_map.spelling[f]: v for f, v in cells.items()})
        columns = [field_map.spelling[f] for f in field_map.fields]
        return write(self.container, field_map.kind, columns, rows)


def _chunks(
    rows: Iterable[Row | RowProblem],
    converter: _Converter[R],
    seen: SeenKeys,
    chunk_rows: int,
    counter: CountingReader,
) -> Iterator[Chunk[R]]:
    """Rows converted a chunk at a time; a record named again is a problem of its row."""
    rank = {field: n for n, field in enumerate(converter.field_map.fields)}
    spelling = converter.field_map.spelling
    batch: list[tuple[Row, R | list[RowProblem], str | None]] = []
    file_problems: list[RowProblem] = []
    rows_read = 0

    def order(problem: RowProblem) -> int:
        field = converter.field_map.field_of(problem.field)
        return rank.get(field, len(rank)) if field is not None else len(rank)

    def chunk() -> Chunk[R]:
        repeats: Mapping[int, int] = {}
        if not seen.deferred:
            repeats = seen.first_rows([(row.row, k) for row, _, k in batch if k is not None])
        records: list[tuple[int, R]] = []
        problems = list(file_problems)
        for row, outcome, _ in batch:
            first = repeats.get(row.row)
            if not isinstance(outcome, list) and not row.problems and first is None:
                records.append((row.row, outcome))
                continue
            reported = {p.field for p in row.problems}
            found = list(row.problems)
            if isinstance(outcome, list):
                found += [p for p in outcome if p.field not in reported]
            if first is not None:
                field = row.names.get(converter.key_field) or spelling[converter.key_field]
                found.append(
                    RowProblem(row.row, field, f"{converter.repeat_reason} is in row {first}")
                )
            found.sort(key=order)
            problems += found
        batch.clear()
        file_problems.clear()
        return Chunk(records, problems, rows_read, counter.consumed)

    for item in rows:
        if isinstance(item, RowProblem):
            file_problems.append(item)
            continue
        rows_read += 1
        if item.names or item.cells:
            outcome, key = converter.convert(item)
        else:
            outcome, key = [], None
        batch.append((item, outcome, key))
        if len(batch) >= chunk_rows:
            yield chunk()
    yield chunk()


_TITLES = {
    "penalty": "双公示 administrative penalties (CF_*)",
    "licence": "双公示 administrative licences (XK_*), checked and counted, not stored",
    "serious-dishonesty": "serious-dishonesty list (严重失信主体名单): entries and removals",
}
_WRAPPERS = {"csv": "CSV", "json": "JSON array", "xml": "XML <ExchangeMessage>"}


def _formats(kind: str, record_type: type[R]) -> dict[str, RecordFormat[R]]:
    del record_type  # for the type checker: what the formats read
    stem = _KINDS[kind][1]
    return {
        f"{stem}-{c}": RecordFormat(f"{stem}-{c}", f"{_TITLES[kind]}, {_WRAPPERS[c]}", kind, c)
        for c in CONTAINERS
    }


PENALTY_FORMATS: Mapping[str, RecordFormat[PenaltyRecord]] = _formats("penalty", PenaltyRecord)
LIST_FORMATS: Mapping[str, RecordFormat[ListChange]] = _formats(
    "serious-dishonesty",
    PenaltyRecord | ListRemoval,  # type: ignore[arg-type]
)
LICENCE_FORMATS: Mapping[str, RecordFormat[Licence]] = _formats("licence", Licence)
RECORD_FORMATS: Mapping[str, RecordFormat[Any]] = {
    **PENALTY_FORMATS,
    **LIST_FORMATS,
    **LICENCE_FORMATS,
}


def record_format(name: str, variants: pathlib.Path | None = None) -> RecordFormat[Any]:
    """The format `name`, reading the shipped column names and those of the field maps in
    the directory `variants` where it exists (a node's own variants)."""
    adapter = RECORD_FORMATS[name]
    if variants is not None and variants.is_dir():
        adapter = adapter.with_field_maps(load_field_maps(variants))
    return adapter


def _parse_date(raw: str) -> dt.date | None:
    match = _DATE_RE.match(raw)
    if match is None:
        return None
    year, month, day = (int(g) for g in match.groups() if g is not None)
    try:
        return dt.date(year, month, day)
    except ValueError:
        return None


def _quoted(raw: str) -> str:
    if len(raw) <= _QUOTED_CHARS:
        return repr(raw)
    return f"{raw[:_QUOTED_CHARS]!r}... ({len(raw):,} characters)"
