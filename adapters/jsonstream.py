"""JSON read one element at a time (shared by the JSON containers of every adapter).

`JsonText` holds about one element of text: it decodes the next value with the json module and
forgets the text before it. Objects that repeat a key come out as `RepeatedKeys` (a dict would
keep only the last value and the repeat would pass unseen), and integers too long for any field
as `LongInteger` (past 4,300 digits int() refuses them).
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Generator, Iterator
from typing import TextIO, TypeVar

from node.errors import RowProblem

_JSON_SPACE_RE = re.compile(r"[ \t\n\r]*")
_JSON_BLOCK = 1 << 16  # characters read at a time
# A JSON element (one record, or a value beside "records") longer than this is refused rather
# than buffered: a record is a few hundred characters.
MAX_JSON_ELEMENT = 4 << 20
# A JSON integer longer than this is no score or indicator; past 4,300 digits int() refuses it.
MAX_JSON_INTEGER_DIGITS = 40


@dataclasses.dataclass(frozen=True, slots=True)
class RepeatedKeys:
    """A JSON object that names a key more than once, as its members in order: a dict keeps
    only the last value, and the repeat would pass unseen."""

    members: list[tuple[str, object]]


def json_object(members: list[tuple[str, object]]) -> dict[str, object] | RepeatedKeys:
    """object_pairs_hook: a dict, as json makes it, unless a key repeats."""
    obj = dict(members)
    return obj if len(obj) == len(members) else RepeatedKeys(members)


@dataclasses.dataclass(frozen=True, slots=True)
class LongInteger:
    """A JSON integer too long to convert (see MAX_JSON_INTEGER_DIGITS): only its length."""

    digits: int


def json_integer(literal: str) -> int | LongInteger:
    if len(literal.lstrip("-")) > MAX_JSON_INTEGER_DIGITS:
        return LongInteger(len(literal.lstrip("-")))
    return int(literal)


class JsonSyntaxError(Exception):
    """Where the JSON stops being JSON, as the problem's reason words it."""


class JsonText:
    """JSON text read a block at a time; `value()` decodes one element with the json module
    and forgets the text before it, so memory holds about one element."""

    def __init__(self, text: TextIO) -> None:
        self._text = text
        self._decoder = json.JSONDecoder(object_pairs_hook=json_object, parse_int=json_integer)
        self.buf = ""
        self.pos = 0
        self._eof = False
        self._line = 1  # line of buf[0]
        self._column = 1  # column of buf[0]

    def _more(self) -> bool:
        if self._eof:
            return False
        block = self._text.read(_JSON_BLOCK)
        if not block:
            self._eof = True
            return False
        consumed = self.buf[: self.pos]
        newlines = consumed.count("\n")
        if newlines:
            self._line += newlines
            self._column = len(consumed) - consumed.rfind("\n")
        else:
            self._column += len(consumed)
        self.buf = self.buf[self.pos :] + block
        self.pos = 0
        return True

    def where(self, pos: int) -> str:
        """`line 3 column 7` of the file for `buf[pos]`."""
        newlines = self.buf.count("\n", 0, pos)
        if newlines:
            line_start = self.buf.rfind("\n", 0, pos)
            return f"line {self._line + newlines} column {pos - line_start}"
        return f"line {self._line} column {self._column + pos}"

    def peek(self) -> str | None:
        """The next character after white space (not consumed), None at the end."""
        while True:
            match = _JSON_SPACE_RE.match(self.buf, self.pos)
            self.pos = match.end() if match else self.pos
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self._more():
                return None

    def take(self, expected: str, what: str) -> None:
        if self.peek() != expected:
            raise JsonSyntaxError(f"Expecting {what} at {self.where(self.pos)}")
        self.pos += 1

    def value(self) -> tuple[object, int, int]:
        """The next element, decoded, and where its text lies in `buf`."""
        if self.peek() is None:
            raise JsonSyntaxError(f"Expecting value at {self.where(self.pos)}")
        while True:
            try:
                value, end = self._decoder.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as exc:
                # Maybe cut off by the end of the block: read on, up to one element's worth.
                if len(self.buf) - self.pos < MAX_JSON_ELEMENT and self._more():
                    continue
                if not self._eof:
                    raise JsonSyntaxError(
                        f"has an element longer than {MAX_JSON_ELEMENT:,} characters "
                        f"at {self.where(self.pos)}"
                    ) from None
                raise JsonSyntaxError(f"{exc.msg} at {self.where(exc.pos)}") from None
            # A number that ends the buffer may go on in the next block ("12" of "123").
            if end == len(self.buf) and self._more():
                continue
            start, self.pos = self.pos, end
            return value, start, end


_Item = TypeVar("_Item")
NOT_AN_ARRAY = 'must be a JSON array of objects, or {"records": [...]}'


def record_array(
    text: JsonText, read_array: Callable[[JsonText], Iterator[_Item]]
) -> Generator[_Item | RowProblem, None, bool]:
    """The records of a file that is `[...]` or `{"records": [...]}`: `read_array` reads the
    array from its `[`. Whatever is wrong with the file as a whole (no such array, a key twice
    in the top object, invalid or too deeply nested JSON, data after it) comes out as a file
    problem, after the records read before it. Returns whether the file was whole."""
    try:
        first = text.peek()
        if first == "{":
            text.take("{", "'{'")
            keys: set[str] = set()
            found = False
            while text.peek() != "}":
                if keys:
                    text.take(",", "',' delimiter")
                key, _, _ = text.value()
                if not isinstance(key, str):
                    raise JsonSyntaxError(f"Expecting property name at {text.where(text.pos)}")
                if key in keys:
                    yield RowProblem(0, "file", "names a key twice in its top object")
                    return False
                keys.add(key)
                text.take(":", "':' delimiter")
                if key == "records" and text.peek() == "[":
                    found = True
                    yield from read_array(text)
                else:
                    text.value()  # not ours to read
            text.take("}", "'}'")
            if not found:
                yield RowProblem(0, "file", NOT_AN_ARRAY)
                return False
        elif first == "[":
            yield from read_array(text)
        else:
            text.value()  # valid JSON, but no array of records; or the syntax error
            yield RowProblem(0, "file", NOT_AN_ARRAY)
            return False
        if text.peek() is not None:
            raise JsonSyntaxError(f"Extra data at {text.where(text.pos)}")
    except JsonSyntaxError as exc:
        yield RowProblem(0, "file", f"is not valid JSON: {exc}")
    except RecursionError:
        yield RowProblem(0, "file", "is JSON nested too deeply")
    else:
        return True
    return False
