"""Turning an export into text: UTF-8 (with or without BOM), else GB18030.

Local platforms export from Excel and legacy systems in either encoding; anything that neither
decodes is rejected as a whole-file problem (row 0) instead of being guessed at. A stream is
settled first by one pass over its bytes (a block at a time), so a file is read as one encoding
throughout, never switched half-way, and then read again as text.
"""

from __future__ import annotations

import codecs
import dataclasses
import io
from typing import BinaryIO

from node.errors import InvalidInput, RowProblem

_BLOCK = 1 << 20
_TEXT_BUFFER = 1 << 16


class CountingReader(io.RawIOBase):
    """A binary stream that counts the bytes read through it (progress)."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self.consumed = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self._stream.read(len(buffer))
        buffer[: len(data)] = data
        self.consumed += len(data)
        return len(data)


@dataclasses.dataclass(frozen=True, slots=True)
class OpenedText:
    """An export opened as text: `text` reads it (newlines untranslated, as csv wants);
    `counter.consumed` is how far into the bytes it has read; `has_nul`: whether any U+0000
    is in it (rare: only then is every cell looked at for one)."""

    text: io.TextIOWrapper
    counter: CountingReader
    has_nul: bool


@dataclasses.dataclass(frozen=True, slots=True)
class Settled:
    """What the one pass over an export's bytes found: the encoding it is read in, and
    whether a NUL byte occurs."""

    encoding: str  # "utf-8-sig" (a BOM is dropped) or "gb18030"
    has_nul: bool


def settle(stream: BinaryIO, format_name: str) -> Settled | RowProblem:
    """The stream's one encoding, or the whole-file problem saying why it has none. Its
    bytes are read from where it stands, which it is put back to (it must be seekable)."""
    if not stream.seekable():
        raise InvalidInput(f"{format_name}: an export is read from a seekable stream (a file)")
    start = stream.tell()
    utf8_error, has_nul = _check(stream, "utf-8")
    encoding = "utf-8-sig"
    if utf8_error is not None:
        stream.seek(start)
        gb_error, _ = _check(stream, "gb18030")
        if gb_error is not None:
            return _undecodable(*utf8_error)
        encoding = "gb18030"
    stream.seek(start)
    return Settled(encoding, has_nul)


def open_text(
    stream: BinaryIO, format_name: str, settled: Settled | None = None
) -> OpenedText | RowProblem:
    """The stream as text in its one encoding, or the whole-file problem saying why not.

    The stream must be seekable (a file, BytesIO): its bytes are checked first, from where it
    stands, and read again as text. `settled`: checked already (a part of a file cut by
    adapters.splitting is read in the encoding of the whole).
    """
    if settled is None:
        found = settle(stream, format_name)
        if isinstance(found, RowProblem):
            return found
        settled = found
    counter = CountingReader(stream)
    buffered = io.BufferedReader(counter, buffer_size=_TEXT_BUFFER)
    text = io.TextIOWrapper(buffered, encoding=settled.encoding, newline="")
    return OpenedText(text, counter, settled.has_nul)


def _check(stream: BinaryIO, encoding: str) -> tuple[tuple[int, int] | None, bool]:
    """((bad byte, its offset) or None, whether a NUL byte occurs), a block at a time."""
    decoder = codecs.getincrementaldecoder(encoding)()
    offset = 0
    has_nul = False
    while True:
        block = stream.read(_BLOCK)
        try:
            decoder.decode(block, final=not block)
        except UnicodeDecodeError as exc:
            # exc.object is what the decoder held back from the last block, then this one.
            held = len(exc.object) - len(block)
            return (exc.object[exc.start], offset - held + exc.start), has_nul
        if not block:
            return None, has_nul
        has_nul = has_nul or b"\x00" in block
        offset += len(block)


def _undecodable(byte: int, offset: int) -> RowProblem:
    return RowProblem(
        0,
        "file",
        f"is neither UTF-8 nor GB18030 (bad UTF-8 byte 0x{byte:02x} at offset {offset}); "
        "re-save the export as UTF-8",
    )
