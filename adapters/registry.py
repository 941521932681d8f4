"""The import adapters this node knows, by format name, and the interface each one offers.

An adapter reads one export file as a stream and yields its rows as canonical results, or the
problems of the rows that are not, a chunk at a time (adapters.streaming); the store's staged
import keeps the file all or nothing, in memory bounded by the chunk. `parse` is the same for
a file held whole: every row, or ImportRejected listing every bad row, never part of a file.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from types import MappingProxyType
from typing import BinaryIO, Protocol

from adapters.huzhou import HUZHOU_CSV, HUZHOU_JSON
from adapters.shuanggongshi import RECORD_FORMATS
from adapters.streaming import CHUNK_ROWS, Chunk, SeenSubjects
from node.errors import InvalidInput
from node.model import CreditResult


class ImportAdapter(Protocol):
    """One external export format.

    Row numbers in the RowProblems it raises count data rows from 1 (a CSV header is not a
    row: row 1 is the first line after it); row 0 is a whole-file problem such as a missing
    column or an undecodable file.
    """

    @property
    def name(self) -> str: ...

    @property
    def description(self) -> str: ...

    @property
    def version(self) -> str:
        """The format's revision as its documentation defines it (e.g. adapters/huzhou.md)."""
        ...

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
        """The file's rows in chunks of at most `chunk_rows`, in row order: results issued by
        `issuer_node`, and the problem of every bad row. Nothing but chunks comes out, whatever
        the bytes; a whole-file problem (row 0) ends the reading.

        `stream`: seekable binary (a file, BytesIO). `legacy_codes`: the known legacy register
        codes, admitted though their check character is wrong (DESIGN.md §9; the node's
        legacy-uscc.txt); any other such code is a row problem. `subject_key` (the node's
        pseudonymisation key) keys resident ids inside result ids; ingest always passes it.
        `seen` remembers the subjects of earlier rows (in memory when not given).
        """
        ...

    def parse(
        self,
        data: bytes,
        *,
        issuer_node: str,
        legacy_codes: AbstractSet[str] = frozenset(),
        subject_key: bytes | None = None,
    ) -> list[CreditResult]:
        """`read` on a file held whole: every row as a result, or ImportRejected with every
        problem (in row order)."""
        ...

    def render(self, results: Sequence[CreditResult]) -> bytes:
        """The export file that `parse` reads back as `results` (gen-data, conformance)."""
        ...


ADAPTERS: Mapping[str, ImportAdapter] = MappingProxyType(
    {adapter.name: adapter for adapter in (HUZHOU_CSV, HUZHOU_JSON)}
)


def get_adapter(name: str) -> ImportAdapter:
    """The adapter for a format name, or InvalidInput naming the known formats."""
    try:
        return ADAPTERS[name]
    except KeyError:
        known = ", ".join(sorted(ADAPTERS))
        raise InvalidInput(f"unknown import format {name!r}; known formats: {known}") from None


def format_listing() -> list[tuple[str, str, str]]:
    """(name, version, description) of every format `creditnode ingest` reads: the results
    exports, then the government formats (adapters.shuanggongshi)."""
    return [(a.name, a.version, a.description) for a in ADAPTERS.values()] + [
        (f.name, f.version, f.description) for f in RECORD_FORMATS.values()
    ]
