"""The Huzhou public credit platform's export, as CSV (`huzhou-csv`) or JSON (`huzhou-json`).

Columns are the platform's pinyin initials; adapters/huzhou.md defines the format. Parsing is all
or nothing: every row is checked and every problem collected before any result is returned.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from typing import TYPE_CHECKING, Literal

from adapters.decoding import decode_export
from adapters.problems import rejected
from adapters.result_ids import result_id_for
from adapters.schemes import Scheme, builtin_schemes
from node.errors import InvalidIdentifier, InvalidInput, RowProblem
from node.identifiers import mask_resident_id
from node.model import CreditLevel, CreditResult, SubjectIdType, SubjectRef, SubjectType

if TYPE_CHECKING:
    from adapters.registry import Progress

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
_PROGRESS_EVERY = 2000
# The days a row's dates may name. Beyond them a date is a typo or a sentinel such as
# 9999-12-31 for "no end", and near datetime's own limits (years 1 and 9999) the conversion to
# UTC or the day after YXQZ overflows.
EARLIEST_DATE = dt.date(1900, 1, 1)
LATEST_DATE = dt.date(2199, 12, 31)
# A JSON integer longer than this is no score or indicator; past 4,300 digits int() refuses it.
_MAX_JSON_INTEGER_DIGITS = 40
# How much of a bad cell a problem quotes: enough to find it, never the whole of a huge cell.
_QUOTED_CHARS = 40

_COLUMN_RANK = {column: rank for rank, column in enumerate(COLUMN_ORDER)}

Cell = str | list[str] | None
_Problem = Callable[[str, str], None]  # (field, reason) for the row being converted


@dataclasses.dataclass(frozen=True, slots=True)
class _Records:
    """A file read into cells, before any field is interpreted."""

    columns: tuple[str, ...]
    rows: list[tuple[int, dict[str, Cell]]]
    problems: list[RowProblem]  # from reading (bad cells, non-object items); row 0 = file


@dataclasses.dataclass(frozen=True)
class HuzhouExport:
    """An ImportAdapter (adapters.registry) for one container of the Huzhou export."""

    name: str
    description: str
    container: Literal["csv", "json"]
    schemes: Mapping[str, Scheme] | None = None  # None: the tables shipped in adapters/schemes
    version: str = "1"  # adapters/huzhou.md's revision of the format

    def parse(
        self,
        data: bytes,
        *,
        issuer_node: str,
        legacy_codes: AbstractSet[str] = frozenset(),
        progress: Progress | None = None,
        subject_key: bytes | None = None,
    ) -> list[CreditResult]:
        text = decode_export(data, self.name)
        records = _read_csv(text) if self.container == "csv" else _read_json(text)
        # A file that could not be read has no columns to check: report only why.
        file_problems = [p for p in records.problems if p.row == 0]
        if not file_problems:
            file_problems = _column_problems(records.columns)
        if file_problems:
            raise rejected(self.name, file_problems)
        converter = _RowConverter(
            issuer_node=issuer_node,
            legacy_codes=legacy_codes,
            subject_key=subject_key,
            schemes=builtin_schemes() if self.schemes is None else self.schemes,
            indicator_columns=tuple(c for c in records.columns if c.startswith(INDICATOR_PREFIX)),
        )
        problems = list(records.problems)
        bad_rows = {p.row for p in problems}
        reported = {(p.row, p.field) for p in problems}  # e.g. a JSON number where text belongs
        results: list[CreditResult] = []
        total = len(records.rows)
        for done, (row, cells) in enumerate(records.rows, start=1):
            outcome = converter.convert(row, cells)
            if isinstance(outcome, CreditResult):
                if row not in bad_rows:
                    results.append(outcome)
            else:
                problems += [p for p in outcome if (p.row, p.field) not in reported]
            if progress is not None and (done % _PROGRESS_EVERY == 0 or done == total):
                progress(done, total)
        if problems:
            problems.sort(key=lambda p: (p.row, _COLUMN_RANK.get(p.field, len(_COLUMN_RANK))))
            raise rejected(self.name, problems)
        return results

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


def _read_csv(text: str) -> _Records:
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    rows: list[tuple[int, dict[str, Cell]]] = []
    problems: list[RowProblem] = []
    columns: list[str] = []
    try:
        header = next(reader, None)
        if header is None or not any(cell.strip() for cell in header):
            message = f"is empty; the first line must name the columns ({', '.join(COLUMN_ORDER)})"
            return _Records((), [], [RowProblem(0, "file", message)])
        columns = [cell.strip().upper() for cell in header]
        for position, column in enumerate(columns, start=1):
            if "\x00" in column:
                message = f"the header's column {position} {_NUL_PROBLEM}"
                return _Records((), [], [RowProblem(0, "file", message)])
        problems += _duplicate_column_problems(columns)
        width = len(columns)
        has_nul = "\x00" in text  # rare: look for it cell by cell only then
        for row_number, cells in enumerate(reader, start=1):
            if not any(cell.strip() for cell in cells):
                continue  # blank line: still counted, so row n stays spreadsheet line n+1
            if len(cells) > width and any(cell.strip() for cell in cells[width:]):
                problems.append(
                    RowProblem(row_number, "row", f"has {len(cells)} cells, the header {width}")
                )
            row = list(zip(columns, cells, strict=False))
            if has_nul:
                nul_columns = [c for c, v in row if c and "\x00" in v]
                problems += [RowProblem(row_number, c, _NUL_PROBLEM) for c in nul_columns]
            rows.append((row_number, {c: v for c, v in row if c}))
    except csv.Error as exc:
        problems.append(
            RowProblem(0, "file", f"is not valid CSV near line {reader.line_num}: {exc}")
        )
    return _Records(tuple(c for c in columns if c), rows, problems)


@dataclasses.dataclass(frozen=True, slots=True)
class _RepeatedKeys:
    """A JSON object that names a key more than once, as its members in order: a dict keeps
    only the last value, and the repeat would pass unseen."""

    members: list[tuple[str, object]]


def _json_object(members: list[tuple[str, object]]) -> dict[str, object] | _RepeatedKeys:
    """object_pairs_hook: a dict, as json makes it, unless a key repeats."""
    obj = dict(members)
    return obj if len(obj) == len(members) else _RepeatedKeys(members)


@dataclasses.dataclass(frozen=True, slots=True)
class _LongInteger:
    """A JSON integer too long to convert (see _MAX_JSON_INTEGER_DIGITS): only its length."""

    digits: int


def _json_integer(literal: str) -> int | _LongInteger:
    if len(literal.lstrip("-")) > _MAX_JSON_INTEGER_DIGITS:
        return _LongInteger(len(literal.lstrip("-")))
    return int(literal)


def _read_json(text: str) -> _Records:
    try:
        document = json.loads(text, object_pairs_hook=_json_object, parse_int=_json_integer)
    except json.JSONDecodeError as exc:
        message = f"is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        return _Records((), [], [RowProblem(0, "file", message)])
    except RecursionError:
        return _Records((), [], [RowProblem(0, "file", "is JSON nested too deeply")])
    if isinstance(document, _RepeatedKeys):
        return _Records((), [], [RowProblem(0, "file", "names a key twice in its top object")])
    if isinstance(document, dict) and "records" in document:
        document = document["records"]
    if not isinstance(document, list):
        message = 'must be a JSON array of objects, or {"records": [...]}'
        return _Records((), [], [RowProblem(0, "file", message)])
    check_text = _SUSPECT_ESCAPE_RE.search(text) is not None
    columns: dict[str, None] = {}  # ordered set: the union of keys stands for a header
    rows: list[tuple[int, dict[str, Cell]]] = []
    problems: list[RowProblem] = []
    for row_number, item in enumerate(document, start=1):
        members: Iterable[tuple[str, object]]
        if isinstance(item, dict):
            members = item.items()
        elif isinstance(item, _RepeatedKeys):
            members = item.members  # the repeat is reported below, as "is given twice"
        else:
            problems.append(RowProblem(row_number, "row", "must be a JSON object"))
            continue
        cells: dict[str, Cell] = {}
        for raw_key, value in members:
            unreadable = _unstorable_text(raw_key) if check_text else None
            if unreadable is not None:
                problems.append(RowProblem(row_number, "row", f"has a key that {unreadable}"))
                continue
            key = raw_key.strip().upper()
            if key in cells:
                problems.append(RowProblem(row_number, key, "is given twice"))
                continue
            columns[key] = None
            try:
                cells[key] = _json_cell(key, value, check_text=check_text)
            except ValueError as exc:
                problems.append(RowProblem(row_number, key, str(exc)))
        rows.append((row_number, cells))
    return _Records(tuple(columns), rows, problems)


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
            problems.append(
                RowProblem(0, column, "indicator columns are ZB_ then A-Z, 0-9 and _ only")
            )
    return problems


# --- interpreting one row ---------------------------------------------------------------------


class _RowConverter:
    """Checks one row's cells and builds its result; remembers subjects to catch duplicates."""

    def __init__(
        self,
        *,
        issuer_node: str,
        legacy_codes: AbstractSet[str],
        subject_key: bytes | None = None,
        schemes: Mapping[str, Scheme],
        indicator_columns: tuple[str, ...],
    ) -> None:
        self.issuer_node = issuer_node
        self.legacy_codes = legacy_codes
        self.subject_key = subject_key
        self.schemes = schemes
        self.indicator_columns = indicator_columns
        self.first_row_of: dict[SubjectRef, int] = {}
        self.dates: dict[str, dt.date | None] = {}  # exports repeat few dates: parse each once

    def convert(self, row: int, cells: Mapping[str, Cell]) -> CreditResult | list[RowProblem]:
        problems: list[RowProblem] = []

        def problem(field: str, reason: str) -> None:
            problems.append(RowProblem(row, field, reason))

        subject_type = self._subject_type(_text(cells, SUBJECT_TYPE), problem)
        subject = self._subject(row, _text(cells, SUBJECT_ID), subject_type, problem)
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
            for column in self.indicator_columns
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
            return problems
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
            return CreditResult(
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
            return [RowProblem(row, "row", exc.message)]

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
        self, row: int, raw: str, subject_type: SubjectType | None, problem: _Problem
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
        first = self.first_row_of.setdefault(subject, row)
        if first != row:
            shown = subject.id
            if subject.id_type is SubjectIdType.RESIDENT_ID:
                shown = mask_resident_id(subject.id)  # a person's id is never shown in clear
            problem(SUBJECT_ID, f"subject {shown} already appears in row {first}")
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
