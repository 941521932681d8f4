"""Rows of a government export, whatever its container: CSV, JSON, or the XML exchange wrapper
`<ExchangeMessage><Header/><Body/></ExchangeMessage>`, with columns named by a field map
(adapters.fieldmaps). Each row comes out as text cells keyed by canonical field, with the
problems found reading it; a whole-file problem (row 0) ends the reading.

XML is parsed by defusedxml with DTDs forbidden: no entity is declared, so none is expanded
(no "billion laughs"), and nothing is fetched (no external entity or DTD). A cell is at most
MAX_CELL_CHARS characters; a problem never quotes more than 40 of them.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import operator
import re
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Literal, cast
from xml.sax.saxutils import escape

import defusedxml
import defusedxml.ElementTree as SafeElementTree

from adapters.decoding import OpenedText
from adapters.fieldmaps import FieldMap
from adapters.jsonstream import (
    JsonText,
    LongInteger,
    RepeatedKeys,
    record_array,
)
from node.errors import RowProblem

Container = Literal["csv", "json", "xml"]
CONTAINERS: tuple[Container, ...] = ("csv", "json", "xml")
MAX_CELL_CHARS = 65536
XML_ROOT = "ExchangeMessage"
XML_RECORD = "Record"  # how render names a record element; any name is read
NUL_PROBLEM = "contains a NUL character (U+0000), which no text field may hold"
_SURROGATE_RE = re.compile("[\ud800-\udfff]")
_SUSPECT_ESCAPE_RE = re.compile(r"\\u(0000|[dD][89a-fA-F])")
_XML_BLOCK = 1 << 16


@dataclasses.dataclass(frozen=True, slots=True)
class Row:
    """One record's cells by canonical field (trimmed text; absent when empty), the column
    name the file used for each field (problems name it), and what reading found."""

    row: int
    cells: dict[str, str]
    names: Mapping[str, str]
    problems: list[RowProblem]


def read_rows(
    opened: OpenedText,
    container: Container,
    field_map: FieldMap,
    *,
    first_row: int = 1,
    lines_before: int = 0,
) -> Iterator[Row | RowProblem]:
    """`first_row` and `lines_before`: where the text's first record is in the file it was
    cut from (a CSV part, adapters.splitting): the header, then that part."""
    if container == "csv":
        return _csv_rows(opened, field_map, first_row, lines_before)
    if container == "json":
        return _json_rows(opened, field_map)
    return _xml_rows(opened, field_map)


# --- CSV --------------------------------------------------------------------------------------


def _csv_rows(
    opened: OpenedText, field_map: FieldMap, first_row: int = 1, lines_before: int = 0
) -> Iterator[Row | RowProblem]:
    reader = csv.reader(opened.text, strict=True)
    try:
        header = next(reader, None)
        if header is None or not any(cell.strip() for cell in header):
            yield RowProblem(0, "file", "is empty; the first line must name the columns")
            return
        fields: list[str | None] = []
        names: dict[str, str] = {}
        problems: list[RowProblem] = []
        for position, raw in enumerate(header, start=1):
            column = raw.strip()
            if "\x00" in column:
                yield RowProblem(0, "file", f"the header's column {position} {NUL_PROBLEM}")
                return
            field = field_map.field_of(column)
            fields.append(field)
            if field is None:
                continue  # a column this format does not read
            if field in names:
                problems.append(
                    RowProblem(0, column[:64], f"gives {field} again (so does {names[field]})")
                )
            names[field] = column
        problems += [
            RowProblem(0, field_map.spelling[field], f"required column is missing ({field})")
            for field, spec in field_map.fields.items()
            if spec.required and field not in names
        ]
        if problems:
            yield from problems
            return
        width = len(header)
        mapped = [(position, field) for position, field in enumerate(fields) if field is not None]
        mapped_fields = [field for _, field in mapped]
        positions = [position for position, _ in mapped]
        # itemgetter of one position gives the item, not a tuple: ask for it twice (zip below
        # stops at the fields).
        pick = cast(
            Callable[[list[str]], tuple[str, ...]],
            operator.itemgetter(*positions, *positions[:1] if len(positions) == 1 else ()),
        )
        check_all = opened.has_nul
        for row_number, cells in enumerate(reader, start=first_row):
            found: list[RowProblem] = []
            if len(cells) != width:
                if not any(cell.strip() for cell in cells):
                    continue  # blank line: still counted, so row n stays spreadsheet line n+1
                if len(cells) > width and any(cell.strip() for cell in cells[width:]):
                    found.append(
                        RowProblem(row_number, "row", f"has {len(cells)} cells, the header {width}")
                    )
                cells += [""] * (width - len(cells))
            picked = pick(cells)
            # Most cells are empty or bare: strip the rest, drop those that were only spaces.
            values = {
                f: cell.strip() for f, cell in zip(mapped_fields, picked, strict=False) if cell
            }
            if "" in values.values():
                values = {f: text for f, text in values.items() if text}
            if check_all or sum(map(len, picked)) > 1000:
                for field, text in list(values.items()):
                    reason = _unstorable(text)
                    if reason is not None:
                        found.append(RowProblem(row_number, names[field], reason))
                        del values[field]
            if not values and not found and not any(cell.strip() for cell in cells):
                continue  # blank line of the header's width (",,,,")
            yield Row(row_number, values, names, found)
    except csv.Error as exc:
        line = reader.line_num + lines_before
        yield RowProblem(0, "file", f"is not valid CSV near line {line}: {exc}")


def write_csv(columns: Sequence[str], rows: Sequence[Mapping[str, str]]) -> bytes:
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([row.get(column, "") for column in columns])
    return out.getvalue().encode("utf-8")


# --- JSON -------------------------------------------------------------------------------------


def _json_rows(opened: OpenedText, field_map: FieldMap) -> Iterator[Row | RowProblem]:
    """The records of `[...]` or `{"records": [...]}`, element by element."""
    yield from record_array(JsonText(opened.text), lambda text: _json_array(text, field_map))


def _json_array(text: JsonText, field_map: FieldMap) -> Iterator[Row]:
    text.take("[", "'['")
    row_number = 0
    while text.peek() != "]":
        if row_number:
            text.take(",", "',' delimiter")
        item, start, end = text.value()
        row_number += 1
        suspect = _SUSPECT_ESCAPE_RE.search(text.buf, start, end) is not None
        yield _json_row(row_number, item, suspect, field_map)
    text.take("]", "']'")


def _json_row(row_number: int, item: object, suspect: bool, field_map: FieldMap) -> Row:
    members: Sequence[tuple[str, object]]
    if isinstance(item, dict):
        members = list(item.items())
    elif isinstance(item, RepeatedKeys):
        members = item.members
    else:
        return Row(row_number, {}, {}, [RowProblem(row_number, "row", "must be a JSON object")])
    cells: dict[str, str] = {}
    names: dict[str, str] = {}
    problems: list[RowProblem] = []
    for key, value in members:
        if suspect and _unstorable(key) is not None:
            problems.append(RowProblem(row_number, "row", f"has a key that {_unstorable(key)}"))
            continue
        field = field_map.field_of(key)
        if field is None:
            continue
        shown = key.strip()[:64]
        if field in names:
            again = "is given twice" if names[field] == shown else f"gives {field} again"
            problems.append(RowProblem(row_number, shown, again))
            continue
        names[field] = shown
        try:
            cell = _json_cell(value, suspect)
        except ValueError as exc:
            problems.append(RowProblem(row_number, shown, str(exc)))
            continue
        if cell:
            cells[field] = cell
    return Row(row_number, cells, names, problems)


def _json_cell(value: object, suspect: bool) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        text = value.strip()
        reason = _unstorable(text) if suspect or len(text) > 1000 else None
        if reason is not None:
            raise ValueError(reason)
        return text
    if isinstance(value, LongInteger):
        raise ValueError(f"is a number of {value.digits:,} digits, too long for any field")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("is a JSON number out of range (it reads as infinite)")
    if isinstance(value, int | float) and not isinstance(value, bool):
        return repr(value) if isinstance(value, float) else str(value)
    kind = "object" if isinstance(value, dict | RepeatedKeys) else type(value).__name__
    raise ValueError(f"must be a string or number, got JSON {_JSON_TYPES.get(kind, kind)}")


_JSON_TYPES = {"list": "array", "bool": "true/false", "object": "object"}


def write_json(rows: Sequence[Mapping[str, str]]) -> bytes:
    lines = [json.dumps(dict(row), ensure_ascii=False) for row in rows]
    return ("[\n" + ",\n".join(lines) + "\n]\n").encode("utf-8")


# --- XML --------------------------------------------------------------------------------------


class _Utf8Stream(io.RawIOBase):
    """The export's text (already decoded, UTF-8 or GB18030) as UTF-8 bytes for the parser,
    which is told the encoding instead of trusting the file's declaration."""

    def __init__(self, text: io.TextIOBase) -> None:
        self._text = text
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._pending:
            block = self._text.read(_XML_BLOCK)
            if not block:
                return 0
            self._pending = block.encode("utf-8", "surrogatepass")
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]  # `{namespace}name` -> name


def _xml_rows(opened: OpenedText, field_map: FieldMap) -> Iterator[Row | RowProblem]:
    parser = SafeElementTree.DefusedXMLParser(
        encoding="utf-8", forbid_dtd=True, forbid_entities=True, forbid_external=True
    )
    source = io.BufferedReader(_Utf8Stream(opened.text), buffer_size=_XML_BLOCK)
    events = ElementTree.iterparse(source, events=("start", "end"), parser=parser)
    depth = 0
    body: ElementTree.Element | None = None
    in_body = False
    row_number = 0
    try:
        for event, element in events:
            if event == "start":
                depth += 1
                name = _local(element.tag)
                if depth == 1 and name != XML_ROOT:
                    yield RowProblem(0, "file", f"must be an <{XML_ROOT}>, not <{name[:64]}>")
                    return
                if depth == 2:
                    in_body = name == "Body"
                    body = element if in_body else None
                continue
            depth -= 1
            if depth == 2 and in_body:
                row_number += 1
                yield _xml_row(row_number, element, field_map)
                if body is not None:
                    body.clear()  # forget the record: memory holds one at a time
            elif depth == 1 and not in_body:
                element.clear()  # the Header, or an element this format does not read
        if body is None and row_number == 0:
            yield RowProblem(0, "file", f"has no <Body> in its <{XML_ROOT}>")
    except defusedxml.DTDForbidden:
        yield RowProblem(
            0,
            "file",
            "declares a DTD (<!DOCTYPE>): refused, so that no entity is expanded and nothing "
            "is fetched (XML bombs, external entities)",
        )
    except defusedxml.DefusedXmlException as exc:
        yield RowProblem(0, "file", f"is refused: {type(exc).__name__} (entities are not allowed)")
    except ElementTree.ParseError as exc:
        yield RowProblem(0, "file", f"is not valid XML: {exc}")


def _xml_row(row_number: int, element: ElementTree.Element, field_map: FieldMap) -> Row:
    cells: dict[str, str] = {}
    names: dict[str, str] = {}
    problems: list[RowProblem] = []
    for child in element:
        tag = _local(child.tag)
        field = field_map.field_of(tag)
        if field is None:
            continue
        shown = tag[:64]
        if field in names:
            again = "is given twice" if names[field] == shown else f"gives {field} again"
            problems.append(RowProblem(row_number, shown, again))
            continue
        names[field] = shown
        if len(child):
            problems.append(RowProblem(row_number, shown, "must hold text, not elements"))
            continue
        text = (child.text or "").strip()
        reason = _unstorable(text)
        if reason is not None:
            problems.append(RowProblem(row_number, shown, reason))
        elif text:
            cells[field] = text
    return Row(row_number, cells, names, problems)


def write_xml(kind: str, rows: Sequence[Mapping[str, str]]) -> bytes:
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>\n',
        f"<{XML_ROOT}><Header><DataType>{escape(kind)}</DataType>"
        f"<RecordCount>{len(rows)}</RecordCount></Header>\n<Body>\n",
    ]
    for row in rows:
        fields = "".join(f"<{c}>{escape(v)}</{c}>" for c, v in row.items() if v)
        parts.append(f"<{XML_RECORD}>{fields}</{XML_RECORD}>\n")
    parts.append(f"</Body></{XML_ROOT}>\n")
    return "".join(parts).encode("utf-8")


def write(
    container: Container, kind: str, columns: Sequence[str], rows: Sequence[Mapping[str, str]]
) -> bytes:
    """An export of `rows` (column -> text) in `container`."""
    if container == "csv":
        return write_csv(columns, rows)
    ordered = [{c: row[c] for c in columns if row.get(c)} for row in rows]
    if container == "json":
        return write_json(ordered)
    return write_xml(kind, ordered)


# --- cells ------------------------------------------------------------------------------------


def _unstorable(text: str) -> str | None:
    """Why `text` cannot be stored, or None. PostgreSQL refuses U+0000 in text where SQLite
    keeps it: refused here for both. A lone surrogate is no character at all."""
    if len(text) > MAX_CELL_CHARS:
        return f"is {len(text):,} characters long; a cell holds at most {MAX_CELL_CHARS:,}"
    if "\x00" in text:
        return NUL_PROBLEM
    if _SURROGATE_RE.search(text):
        return "contains a lone surrogate (U+D800-U+DFFF), which is not a Unicode character"
    return None
