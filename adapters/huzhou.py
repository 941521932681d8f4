"""The Huzhou public credit platform's export, as CSV (`huzhou-csv`) or JSON (`huzhou-json`).

Columns are the platform's pinyin initials; adapters/huzhou.md defines the format. A file is
read as a stream, in chunks of checked rows (adapters.streaming): every row is checked and every
problem reported, and whoever takes the chunks keeps the file all or nothing.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
import json
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from typing import BinaryIO, Literal

from adapters.decoding import CountingReader, OpenedText, open_text
from adapters.jsonstream import MAX_JSON_ELEMENT as MAX_JSON_ELEMENT
from adapters.jsonstream import JsonText as _JsonText
from adapters.jsonstream import LongInteger as _LongInteger
from adapters.jsonstream import RepeatedKeys as _RepeatedKeys
from adapters.jsonstream import record_array
from adapters.result_ids import result_id_for
from adapters.schemes import Scheme, builtin_schemes
from adapters.streaming import CHUNK_ROWS, Chunk, SeenSubjects, SubjectsInMemory, collect
from node.errors import InvalidIdentifier, InvalidInput, RowProblem
from node.identifiers import mask_resident_id
from node.model import CreditLevel, CreditResult, SubjectIdType, SubjectRef, SubjectType

# Dates in the export are calendar days in China Standard Time (UTC+8, no daylight saving).
CHINA_TZ = dt.timezone(dt.timedelta(hours=8), "CST")

SUBJECT_ID = "TYSHXYDM"  # 统一社会信用代码; a resident id when ZTLX is 自然人
SUBJECT_NAME = "QYMC"  # 企业名称 (a person's name for 自然人)
SUBJECT_TYPE = "ZTLX"  # 主体类型
SCHEME = "PJTX"  # 评价体系, scheme id with version
LEVEL = "PJDJ"  # 评价等级, in the scheme's own names
SCORE = "PJFS"  # 评价分数
EVALUATED = "PJRQ"  # 评价日期
VALID_UNTIL = "YXQZ"  # 有效期至, last valid day (inclusive)
FLAGS = "SXBZ"  # 失信/守信标识
INDICATOR_PREFIX = "ZB_"  # 指标: ZB_GREEN_RATING -> indicators["green_rating"]

REQUIRED_COLUMNS = (SUBJECT_ID, SUBJECT_NAME, SUBJECT_TYPE, SCHEME, EVALUATED)
COLUMN_ORDER = (
    SUBJECT_ID, SUBJECT_NAME, SUBJECT_TYPE, SCHEME, LEVEL, SCORE, EVALUATED, VALID_UNTIL, FLAGS,
)  # fmt: skip

SUBJECT_TYPE_LABELS: Mapping[SubjectType, str] = {
    SubjectType.ENTERPRISE: "企业",
    SubjectType.INDIVIDUAL_BUSINESS: "个体工商户",
    SubjectType.SOCIAL_ORGANIZATION: "社会组织",
    SubjectType.PUBLIC_INSTITUTION: "事业单位",
    SubjectType.GOVERNMENT_AGENCY: "机关",
    SubjectType.NATURAL_PERSON: "自然人",
}
_SUBJECT_TYPE_SPELLINGS: Mapping[str, SubjectType] = {
    **{label: t for t, label in SUBJECT_TYPE_LABELS.items()},
    **{t.name: t for t in SubjectType},
    "企业法人": SubjectType.ENTERPRISE,
    "个体户": SubjectType.INDIVIDUAL_BUSINESS,
    "社会团体": SubjectType.SOCIAL_ORGANIZATION,
    "民办非企业单位": SubjectType.SOCIAL_ORGANIZATION,
    "基金会": SubjectType.SOCIAL_ORGANIZATION,
    "机关单位": SubjectType.GOVERNMENT_AGENCY,
    "党政机关": SubjectType.GOVERNMENT_AGENCY,
}
_FLAG_ALIASES: Mapping[str, str] = {
    "红名单": "RED_LIST",
    "守信红名单": "RED_LIST",
    "严重失信": "SERIOUS_DISHONESTY",
    "严重失信主体": "SERIOUS_DISHONESTY",
    "信用修复中": "UNDER_REPAIR",
    "修复中": "UNDER_REPAIR",
}
_FLAG_SEPARATORS = re.compile(r"[;|；｜]")
_FLAG_RE = re.compile(r"^[A-Z][A-Z0-9_]*\Z")
_INDICATOR_COLUMN_RE = re.compile(r"^ZB_[A-Z0-9_]+\Z")
_INDICATOR_KEY_RE = re.compile(r"^[a-z0-9_]+\Z")
_DATE_RE = re.compile(r"^(\d{4})[-/](\d{1,2})[-/](\d{1,2})\Z|^(\d{4})(\d{2})(\d{2})\Z")
_SCORE_RE = re.compile(r"^[+-]?\d+(\.\d+)?\Z")
_SURROGATE_RE = re.compile("[\ud800-\udfff]")
# A NUL or a lone surrogate can enter a decoded JSON string only through a \u escape (a raw
# control character is not valid JSON; decoded bytes hold no surrogates): strings are looked
# at one by one only in a text with such an escape.
_SUSPECT_ESCAPE_RE = re.compile(r"\\u(0000|[dD][89a-fA-F])")
# The days a row's dates may name. Beyond them a date is a typo or a sentinel such as
# 9999-12-31 for "no end", and near datetime's own limits (years 1 and 9999) the conversion to
# UTC or the day after YXQZ overflows.
EARLIEST_DATE = dt.date(1900, 1, 1)
LATEST_DATE = dt.date(2199, 12, 31)
# How much of a bad cell a problem quotes: enough to find it, never the whole of a huge cell.
_QUOTED_CHARS = 40

_COLUMN_RANK = {column: rank for rank, column in enumerate(COLUMN_ORDER)}

Cell = str | list[str] | None
_Problem = Callable[[str, str], None]  # (field, reason) for the row being converted


@dataclasses.dataclass(frozen=True, slots=True)
class _Row:
    """One row read into cells, before any field is interpreted, with what reading found."""

    row: int
    cells: dict[str, Cell]
    indicator_columns: tuple[str, ...]
    problems: list[RowProblem]  # bad cells (a JSON number where text belongs, a NUL, ...)
    has_cells: bool = True  # False: no cells to convert (a JSON element that is no object)


@dataclasses.dataclass(frozen=True)
class HuzhouExport:
    """An ImportAdapter (adapters.registry) for one container of the Huzhou export."""

    name: str
    description: str
    container: Literal["csv", "json"]
    schemes: Mapping[str, Scheme] | None = None  # None: the tables shipped in adapters/schemes
    version: str = "1"  # adapters/huzhou.md's revision of the format

    def read(
        self,
        stream: BinaryIO,
        *,
        issuer_node: str,
        legacy_codes: AbstractSet[str] = frozenset(),
        subject_key: bytes | None = None,
        seen: SeenSubjects | None = None,
        chunk_rows: int = CHUNK_ROWS,
    ) -> Iterator[Chunk[CreditResult]]:
        opened = open_text(stream, self.name)
        if isinstance(opened, RowProblem):
            yield Chunk((), (opened,), 0, 0)
            return
        converter = _RowConverter(
            issuer_node=issuer_node,
            legacy_codes=legacy_codes,
            subject_key=subject_key,
            schemes=builtin_schemes() if self.schemes is None else self.schemes,
        )
        items = _csv_rows(opened) if self.container == "csv" else _json_rows(opened)
        yield from _chunks(items, converter, seen or SubjectsInMemory(), chunk_rows, opened.counter)

    def parse(
        self,
        data: bytes,
        *,
        issuer_node: str,
        legacy_codes: AbstractSet[str] = frozenset(),
        subject_key: bytes | None = None,
    ) -> list[CreditResult]:
        chunks = self.read(
            io.BytesIO(data),
            issuer_node=issuer_node,
            legacy_codes=legacy_codes,
            subject_key=subject_key,
        )
        return collect(chunks, self.name)

    def render(self, results: Sequence[CreditResult]) -> bytes:
        indicator_keys = sorted({key for r in results for key in r.indicators})
        for key in indicator_keys:
            if not _INDICATOR_KEY_RE.match(key):
                raise InvalidInput(
                    f"indicator {key!r} cannot be a {self.name} column: use a-z, 0-9 and _"
                )
        columns = [*COLUMN_ORDER, *(INDICATOR_PREFIX + key.upper() for key in indicator_keys)]
        rows = [_export_row(r) for r in results]
        if self.container == "csv":
            out = io.StringIO(newline="")
            writer = csv.writer(out, lineterminator="\r\n")
            writer.writerow(columns)
            for row in rows:
                writer.writerow([_csv_cell(row.get(column)) for column in columns])
            return out.getvalue().encode("utf-8")
        lines = [json.dumps(row, ensure_ascii=False) for row in rows]
        return ("[\n" + ",\n".join(lines) + "\n]\n").encode("utf-8")


HUZHOU_CSV = HuzhouExport(
    "huzhou-csv",
    "Huzhou public credit platform export, CSV with pinyin headers (UTF-8 or GB18030)",
    "csv",
)
HUZHOU_JSON = HuzhouExport(
    "huzhou-json",
    'Huzhou public credit platform export, JSON array (or {"records": [...]}) of pinyin-keyed '
    "objects",
    "json",
)


# --- reading ------------------------------------------------------------------------------


def _chunks(
    items: Iterable[_Row | RowProblem],
    converter: _RowConverter,
    seen: SeenSubjects,
    chunk_rows: int,
    counter: CountingReader,
) -> Iterator[Chunk[CreditResult]]:
    """Rows converted a chunk at a time; a subject named again is a problem of its row."""
    batch: list[tuple[_Row, CreditResult | list[RowProblem], SubjectRef | None]] = []
    file_problems: list[RowProblem] = []
    rows_read = 0

    def chunk() -> Chunk[CreditResult]:
        repeats = seen.first_rows([(row.row, s) for row, _, s in batch if s is not None])
        records: list[tuple[int, CreditResult]] = []
        problems = list(file_problems)
        for row, outcome, subject in batch:
            first = repeats.get(row.row)
            if isinstance(outcome, CreditResult):
                if not row.problems and first is None:
                    records.append((row.row, outcome))
                    continue
                outcome = []
            reported = {p.field for p in row.problems}
            found = row.problems + [p for p in outcome if p.field not in reported]
            if first is not None and subject is not None:
                shown = subject.id
                if subject.id_type is SubjectIdType.RESIDENT_ID:
                    shown = mask_resident_id(subject.id)  # a person's id is never shown in clear
                reason = f"subject {shown} already appears in row {first}"
                found.append(RowProblem(row.row, SUBJECT_ID, reason))
            found.sort(key=lambda p: _COLUMN_RANK.get(p.field, len(_COLUMN_RANK)))
            problems += found
        batch.clear()
        file_problems.clear()
        return Chunk(records, problems, rows_read, counter.consumed)

    for item in items:
        if isinstance(item, RowProblem):
            file_problems.append(item)
            continue
        rows_read += 1
        if item.has_cells:
            outcome, subject = converter.convert(item.row, item.cells, item.indicator_columns)
            batch.append((item, outcome, subject))
        else:
            batch.append((item, [], None))
        if len(batch) >= chunk_rows:
            yield chunk()
    yield chunk()  # the last, even if empty: it says where the file ended


def _csv_rows(opened: OpenedText) -> Iterator[_Row | RowProblem]:
    reader = csv.reader(opened.text, strict=True)
    try:
        header = next(reader, None)
        if header is None or not any(cell.strip() for cell in header):
            message = f"is empty; the first line must name the columns ({', '.join(COLUMN_ORDER)})"
            yield RowProblem(0, "file", message)
            return
        columns = [cell.strip().upper() for cell in header]
        for position, column in enumerate(columns, start=1):
            if "\x00" in column:
                yield RowProblem(0, "file", f"the header's column {position} {_NUL_PROBLEM}")
                return
        # A header that cannot be read has no columns to check: report only why.
        header_problems = _duplicate_column_problems(columns) or _column_problems(
            [c for c in columns if c]
        )
        if header_problems:
            yield from header_problems
            return
        indicator_columns = tuple(c for c in columns if c.startswith(INDICATOR_PREFIX))
        width = len(columns)
        for row_number, cells in enumerate(reader, start=1):
            if not any(cell.strip() for cell in cells):
                continue  # blank line: still counted, so row n stays spreadsheet line n+1
            problems = []
            if len(cells) > width and any(cell.strip() for cell in cells[width:]):
                problems.append(
                    RowProblem(row_number, "row", f"has {len(cells)} cells, the header {width}")
                )
            row = list(zip(columns, cells, strict=False))
            if opened.has_nul:
                nul_columns = [c for c, v in row if c and "\x00" in v]
                problems += [RowProblem(row_number, c, _NUL_PROBLEM) for c in nul_columns]
            yield _Row(row_number, {c: v for c, v in row if c}, indicator_columns, problems)
    except csv.Error as exc:
        yield RowProblem(0, "file", f"is not valid CSV near line {reader.line_num}: {exc}")


def _json_rows(opened: OpenedText) -> Iterator[_Row | RowProblem]:
    """The records of `[...]` or `{"records": [...]}`, element by element."""
    seen_columns: set[str] = set()  # of the columns checked at the end, those some record has
    whole = yield from record_array(
        _JsonText(opened.text), lambda text: _json_array(text, opened, seen_columns)
    )
    if not whole:
        return
    # A JSON file has no header: a column no record has is told once, beside each row's problem.
    for column in REQUIRED_COLUMNS:
        if column not in seen_columns:
            yield RowProblem(0, column, "required column is missing: no record has this key")
    if LEVEL not in seen_columns and SCORE not in seen_columns:
        yield RowProblem(0, LEVEL, "the file needs a PJDJ (level) or PJFS (score) key")


_INDICATOR_NAMES = "indicator columns are ZB_ then A-Z, 0-9 and _ only"
_CHECKED_COLUMNS = frozenset({*REQUIRED_COLUMNS, LEVEL})


def _json_array(
    text: _JsonText, opened: OpenedText, seen_columns: set[str]
) -> Iterator[_Row | RowProblem]:
    text.take("[", "'['")
    row_number = 0
    while text.peek() != "]":
        if row_number:
            text.take(",", "',' delimiter")
        item, start, end = text.value()
        row_number += 1
        check_text = _SUSPECT_ESCAPE_RE.search(text.buf, start, end) is not None
        yield _json_row(row_number, item, check_text, seen_columns)
    text.take("]", "']'")


def _json_row(row_number: int, item: object, check_text: bool, seen_columns: set[str]) -> _Row:
    members: Iterable[tuple[str, object]]
    if isinstance(item, dict):
        members = item.items()
    elif isinstance(item, _RepeatedKeys):
        members = item.members  # the repeat is reported below, as "is given twice"
    else:
        problem = RowProblem(row_number, "row", "must be a JSON object")
        return _Row(row_number, {}, (), [problem], has_cells=False)
    cells: dict[str, Cell] = {}
    problems: list[RowProblem] = []
    for raw_key, value in members:
        unreadable = _unstorable_text(raw_key) if check_text else None
        if unreadable is not None:
            problems.append(RowProblem(row_number, "row", f"has a key that {unreadable}"))
            continue
        key = raw_key.strip().upper()
        if key in cells:
            problems.append(RowProblem(row_number, key, "is given twice"))
            continue
        if key in _CHECKED_COLUMNS or key == SCORE:
            seen_columns.add(key)
        if key.startswith(INDICATOR_PREFIX) and not _INDICATOR_COLUMN_RE.match(key):
            problems.append(RowProblem(row_number, key, _INDICATOR_NAMES))
            continue
        try:
            cells[key] = _json_cell(key, value, check_text=check_text)
        except ValueError as exc:
            problems.append(RowProblem(row_number, key, str(exc)))
    indicators = tuple(c for c in cells if c.startswith(INDICATOR_PREFIX))
    return _Row(row_number, cells, indicators, problems)


def _json_cell(key: str, value: object, *, check_text: bool = True) -> Cell:
    """A JSON value as a cell, or ValueError saying what the field must be (or why its text
    cannot be stored, when `check_text`)."""
    if value is None:
        return value
    if isinstance(value, str):
        if check_text:
            _check_storable(value)
        return value
    numeric_ok = key == SCORE or key.startswith(INDICATOR_PREFIX)
    if isinstance(value, _LongInteger):
        raise ValueError(f"is a number of {value.digits:,} digits, too long for any field")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("is a JSON number out of range (it reads as infinite)")
    if isinstance(value, int | float) and not isinstance(value, bool) and numeric_ok:
        return repr(value) if isinstance(value, float) else str(value)
    if key == FLAGS and isinstance(value, list):
        flags = [v for v in value if isinstance(v, str)]
        if len(flags) == len(value):
            if check_text:
                for flag in flags:
                    _check_storable(flag)
            return flags
    expected = "a string or number" if numeric_ok else "a string"
    if key == FLAGS:
        expected = "a string or an array of strings"
    raise ValueError(f"must be {expected}, got JSON {_json_type(value)}")


def _json_type(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | _RepeatedKeys):
        return "object"
    if isinstance(value, list):
        return "array"
    return "number"


_NUL_PROBLEM = "contains a NUL character (U+0000), which no text field may hold"


def _unstorable_text(text: str) -> str | None:
    """Why `text` cannot be stored, or None. PostgreSQL refuses U+0000 in text where SQLite
    keeps it: refused here for both. A lone surrogate (JSON "\\ud800") is no character at all
    and fails when the text is encoded."""
    if "\x00" in text:
        return _NUL_PROBLEM
    if _SURROGATE_RE.search(text):
        return "contains a lone surrogate (U+D800-U+DFFF), which is not a Unicode character"
    return None


def _check_storable(text: str) -> None:
    unstorable = _unstorable_text(text)
    if unstorable is not None:
        raise ValueError(unstorable)


def _quoted(raw: str) -> str:
    """A cell's value for a problem's reason, cut short when long."""
    if len(raw) <= _QUOTED_CHARS:
        return repr(raw)
    return f"{raw[:_QUOTED_CHARS]!r}... ({len(raw):,} characters)"


def _duplicate_column_problems(columns: Sequence[str]) -> list[RowProblem]:
    seen: set[str] = set()
    problems = []
    for column in columns:
        if column and column in seen:
            problems.append(RowProblem(0, column, "column appears twice in the header"))
        seen.add(column)
    return problems


def _column_problems(columns: Sequence[str]) -> list[RowProblem]:
    present = set(columns)
    listing = ", ".join(columns) or "no columns"
    problems = [
        RowProblem(0, column, f"required column is missing (the file has: {listing})")
        for column in REQUIRED_COLUMNS
        if column not in present
    ]
    if LEVEL not in present and SCORE not in present:
        problems.append(
            RowProblem(0, LEVEL, "the file needs a PJDJ (level) or PJFS (score) column")
        )
    for column in columns:
        if column.startswith(INDICATOR_PREFIX) and not _INDICATOR_COLUMN_RE.match(column):
            problems.append(RowProblem(0, column, _INDICATOR_NAMES))
    return problems


# --- interpreting one row ---------------------------------------------------------------------


class _RowConverter:
    """Checks one row's cells and builds its result (a subject named twice is the caller's to
    find: see `_chunks`)."""

    def __init__(
        self,
        *,
        issuer_node: str,
        legacy_codes: AbstractSet[str],
        subject_key: bytes | None = None,
        schemes: Mapping[str, Scheme],
    ) -> None:
        self.issuer_node = issuer_node
        self.legacy_codes = legacy_codes
        self.subject_key = subject_key
        self.schemes = schemes
        self.dates: dict[str, dt.date | None] = {}  # exports repeat few dates: parse each once

    def convert(
        self, row: int, cells: Mapping[str, Cell], indicator_columns: Sequence[str]
    ) -> tuple[CreditResult | list[RowProblem], SubjectRef | None]:
        """The row's result or its problems, and its subject when the id could be read."""
        problems: list[RowProblem] = []

        def problem(field: str, reason: str) -> None:
            problems.append(RowProblem(row, field, reason))

        subject_type = self._subject_type(_text(cells, SUBJECT_TYPE), problem)
        subject = self._subject(_text(cells, SUBJECT_ID), subject_type, problem)
        name = _text(cells, SUBJECT_NAME)
        if not name:
            problem(SUBJECT_NAME, "is required")
        scheme = self._scheme(_text(cells, SCHEME), problem)
        evaluated = self._date(_text(cells, EVALUATED), EVALUATED, problem, required=True)
        valid_until = self._date(_text(cells, VALID_UNTIL), VALID_UNTIL, problem, required=False)
        if evaluated is not None and valid_until is not None and valid_until < evaluated:
            problem(VALID_UNTIL, f"{valid_until} is before the evaluation date {evaluated}")
        score = self._score(_text(cells, SCORE), scheme, problem)
        native_level = self._level(_text(cells, LEVEL), score, scheme, problem)
        flags = _flags(cells.get(FLAGS), problem)
        indicators = {
            column[len(INDICATOR_PREFIX) :].lower(): value
            for column in indicator_columns
            if (value := _text(cells, column))
        }
        if (
            problems
            or subject is None
            or subject_type is None
            or scheme is None
            or evaluated is None
            or native_level is None
        ):
            return problems, subject
        if valid_until is None:
            last_day = evaluated + dt.timedelta(days=scheme.validity_days - 1)
        else:
            last_day = valid_until
        evaluated_at = _start_of(evaluated)
        valid_until_at = _start_of(last_day + dt.timedelta(days=1))
        native, level = native_level
        result_id = result_id_for(
            issuer_node=self.issuer_node,
            subject=subject,
            subject_name=name,
            subject_type=subject_type,
            scheme=scheme.id,
            native_level=native,
            native_score=score,
            level=level,
            flags=flags,
            indicators=indicators,
            evaluated_at=evaluated_at,
            valid_until=valid_until_at,
            subject_key=self.subject_key,
        )
        try:
            result = CreditResult(
                result_id=result_id,
                subject=subject,
                subject_name=name,
                subject_type=subject_type,
                issuer_node=self.issuer_node,
                scheme=scheme.id,
                native_level=native,
                level=level,
                evaluated_at=evaluated_at,
                valid_until=valid_until_at,
                native_score=score,
                flags=flags,
                indicators=indicators,
            )
        except InvalidInput as exc:  # the model's own checks; the ones above should catch all
            return [RowProblem(row, "row", exc.message)], subject
        return result, subject

    def _subject_type(self, raw: str, problem: _Problem) -> SubjectType | None:
        if not raw:
            problem(SUBJECT_TYPE, "is required")
            return None
        found = _SUBJECT_TYPE_SPELLINGS.get(raw) or _SUBJECT_TYPE_SPELLINGS.get(raw.upper())
        if found is None:
            chinese = ", ".join(SUBJECT_TYPE_LABELS.values())
            english = ", ".join(SubjectType.__members__)
            problem(
                SUBJECT_TYPE,
                f"unknown subject type {_quoted(raw)}; use one of {chinese} ({english})",
            )
        return found

    def _subject(
        self, raw: str, subject_type: SubjectType | None, problem: _Problem
    ) -> SubjectRef | None:
        if not raw:
            problem(SUBJECT_ID, "is required")
            return None
        if subject_type is None:
            return None  # which identifier rules apply depends on the subject type
        try:
            # The model normalises and checks the identifier (once) on construction.
            if subject_type is SubjectType.NATURAL_PERSON:
                subject = SubjectRef(SubjectIdType.RESIDENT_ID, raw)
            else:
                subject = SubjectRef(SubjectIdType.USCC, raw, legacy_codes=self.legacy_codes)
        except InvalidIdentifier as exc:
            problem(SUBJECT_ID, exc.message)
            return None
        return subject

    def _scheme(self, raw: str, problem: _Problem) -> Scheme | None:
        if not raw:
            problem(SCHEME, "is required (a scheme id with version, e.g. zj-public-credit@2023)")
            return None
        scheme = self.schemes.get(raw)
        if scheme is None:
            problem(
                SCHEME, f"unknown scheme {_quoted(raw)}; known schemes: {', '.join(self.schemes)}"
            )
        return scheme

    def _date(self, raw: str, field: str, problem: _Problem, *, required: bool) -> dt.date | None:
        if not raw:
            if required:
                problem(field, "is required (YYYY-MM-DD or YYYYMMDD)")
            return None
        if raw not in self.dates:
            self.dates[raw] = _parse_date(raw)
        value = self.dates[raw]
        if value is None:
            problem(field, f"{_quoted(raw)} is not a calendar date; write YYYY-MM-DD or YYYYMMDD")
        elif not EARLIEST_DATE <= value <= LATEST_DATE:
            reason = f"{value} is outside the dates accepted ({EARLIEST_DATE} to {LATEST_DATE})"
            if field == VALID_UNTIL and value > LATEST_DATE:
                reason += "; a result's validity must end: leave YXQZ empty for the default"
            problem(field, reason)
            return None
        return value

    def _score(self, raw: str, scheme: Scheme | None, problem: _Problem) -> float | None:
        if not raw:
            return None
        if not _SCORE_RE.match(raw):
            problem(SCORE, f"{_quoted(raw)} is not a number")
            return None
        score = float(raw)
        if not math.isfinite(score):
            problem(SCORE, f"{_quoted(raw)} is not a finite number")
            return None
        if scheme is not None and not scheme.score_in_range(score):
            low = "" if scheme.score_min is None else f"{scheme.score_min:g}"
            high = "" if scheme.score_max is None else f"{scheme.score_max:g}"
            problem(SCORE, f"{_quoted(raw)} is outside {scheme.id}'s score range {low}-{high}")
            return None
        return score

    def _level(
        self, raw: str, score: float | None, scheme: Scheme | None, problem: _Problem
    ) -> tuple[str, CreditLevel] | None:
        if scheme is None:
            return None  # the level names depend on the scheme, already reported
        if raw:
            level = scheme.level_named(raw)
            if level is None:
                problem(
                    LEVEL,
                    f"unknown level {_quoted(raw)} in scheme {scheme.id}; "
                    f"known: {', '.join(scheme.spellings)}",
                )
                return None
            return level.name, level.canonical
        if score is not None:
            level = scheme.level_for_score(score)
            if level is not None:
                return level.name, level.canonical
            problem(LEVEL, f"is required: scheme {scheme.id} has no score band for {score:g}")
            return None
        problem(LEVEL, "is required (or give PJFS, a score, for a scheme with score bands)")
        return None


def _text(cells: Mapping[str, Cell], column: str) -> str:
    value = cells.get(column)
    if value is None:
        return ""
    if isinstance(value, list):
        return ";".join(value).strip()
    return value.strip()


def _flags(cell: Cell, problem: _Problem) -> tuple[str, ...]:
    parts: Iterable[str]
    if cell is None:
        return ()
    parts = cell if isinstance(cell, list) else _FLAG_SEPARATORS.split(cell)
    flags: list[str] = []
    for part in parts:
        raw = part.strip()
        if not raw:
            continue
        flag = _FLAG_ALIASES.get(raw, raw.upper())
        if not _FLAG_RE.match(flag):
            problem(
                FLAGS,
                f"unknown flag {_quoted(raw)}; use UPPER_SNAKE names like SERIOUS_DISHONESTY or "
                f"one of {', '.join(_FLAG_ALIASES)}",
            )
        elif flag not in flags:
            flags.append(flag)
    return tuple(flags)


def _parse_date(raw: str) -> dt.date | None:
    match = _DATE_RE.match(raw)
    if match is None:
        return None
    year, month, day = (int(g) for g in match.groups() if g is not None)
    try:
        return dt.date(year, month, day)
    except ValueError:
        return None


def _start_of(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=CHINA_TZ)


# --- writing ----------------------------------------------------------------------------------


def _export_row(result: CreditResult) -> dict[str, object]:
    evaluated = result.evaluated_at.astimezone(CHINA_TZ).date()
    # valid_until is the first instant no longer valid; the export names the last valid day.
    last_day = (result.valid_until.astimezone(CHINA_TZ) - dt.timedelta(microseconds=1)).date()
    row: dict[str, object] = {
        SUBJECT_ID: result.subject.id,
        SUBJECT_NAME: result.subject_name,
        SUBJECT_TYPE: SUBJECT_TYPE_LABELS[result.subject_type],
        SCHEME: result.scheme,
        LEVEL: result.native_level,
    }
    if result.native_score is not None:
        score = result.native_score
        row[SCORE] = int(score) if score.is_integer() else score
    row[EVALUATED] = evaluated.isoformat()
    row[VALID_UNTIL] = last_day.isoformat()
    if result.flags:
        row[FLAGS] = list(result.flags)
    for key, value in sorted(result.indicators.items()):
        row[INDICATOR_PREFIX + key.upper()] = value
    return row


def _csv_cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return ";".join(value)
    return str(value)
