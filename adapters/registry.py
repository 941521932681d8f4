"""The import adapters this node knows, by format name, and the interface each one offers.

An adapter turns one export file into canonical results all or nothing: it returns every row,
or raises ImportRejected listing every bad row; it never returns part of a file.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from types import MappingProxyType
from typing import Protocol

from adapters.huzhou import HUZHOU_CSV, HUZHOU_JSON
from node.errors import InvalidInput
from node.model import CreditResult

# Called with (rows done, rows in the file) while parsing, for a progress bar.
Progress = Callable[[int, int], None]


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

    def parse(
        self,
        data: bytes,
        *,
        issuer_node: str,
        legacy_codes: AbstractSet[str] = frozenset(),
        progress: Progress | None = None,
        subject_key: bytes | None = None,
    ) -> list[CreditResult]:
        """Every row as a result issued by `issuer_node`, or ImportRejected with every problem.

        `legacy_codes`: the known legacy register codes, admitted though their check character
        is wrong (DESIGN.md §9; the node's legacy-uscc.txt); any other such code is a row problem.
        `subject_key` (the node's pseudonymisation key) keys resident ids inside result ids;
        ingest always passes it.
        """
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
