"""The checks every registered import adapter must pass (run by tests/adapters/).

Each check raises ConformanceFailure saying what the adapter did wrong. The checks state the
registry's contract: render/parse round-trip exactly, output is deterministic, a file is taken
whole or rejected whole with every problem listed, and nothing but ImportRejected escapes; read
as a stream in chunks of any size, a file gives the same results and problems.
"""

from __future__ import annotations

import dataclasses
import io
import pathlib
import random
import tomllib
from collections.abc import Sequence

from adapters.registry import ImportAdapter
from node.errors import ImportRejected, RowProblem
from node.model import CreditResult

# Every adapter keeps a named vector of each kind in its vector directory.
REQUIRED_VECTOR_KINDS = (
    "bad_uscc_check",
    "uscc_forbidden_letter",
    "bad_resident_id",
    "unknown_subject_type",
    "bad_date",
    "duplicate_subject",
    "missing_column",
    "unknown_scheme",
    "unknown_level",
    "undecodable",
    "many_problems",
    # issue 9 §6: each once raised instead of being a row problem
    "valid_until_year_9999",
    "evaluated_year_1",
    "nul_in_name",
)


class ConformanceFailure(AssertionError):
    """An adapter broke the registry's contract."""


@dataclasses.dataclass(frozen=True, slots=True)
class ExpectedProblem:
    row: int
    field: str
    reason: str  # a substring the problem's reason must contain


@dataclasses.dataclass(frozen=True, slots=True)
class BadFileVector:
    name: str
    path: pathlib.Path
    why: str
    problems: tuple[ExpectedProblem, ...]


def load_vectors(directory: pathlib.Path) -> list[BadFileVector]:
    """The named bad files listed in `directory/vectors.toml`."""
    table = tomllib.loads((directory / "vectors.toml").read_text(encoding="utf-8"))
    return [
        BadFileVector(
            name=name,
            path=directory / entry["file"],
            why=entry["why"],
            problems=tuple(
                ExpectedProblem(p["row"], p["field"], p["reason"]) for p in entry["problems"]
            ),
        )
        for name, entry in table.items()
    ]


def check_vector_kinds(adapter: ImportAdapter, vectors: Sequence[BadFileVector]) -> None:
    missing = sorted(set(REQUIRED_VECTOR_KINDS) - {v.name for v in vectors})
    if missing:
        raise ConformanceFailure(f"{adapter.name} has no vector for: {', '.join(missing)}")


def check_round_trip(
    adapter: ImportAdapter, results: Sequence[CreditResult], issuer_node: str
) -> None:
    """parse(render(results)) gives back exactly `results`, in order."""
    parsed = adapter.parse(adapter.render(results), issuer_node=issuer_node)
    if len(parsed) != len(results):
        raise ConformanceFailure(
            f"{adapter.name}: rendered {len(results)} results, parsed {len(parsed)}"
        )
    for index, (want, got) in enumerate(zip(results, parsed, strict=True), start=1):
        if want != got:
            diff = [
                f"{f.name}: {getattr(want, f.name)!r} != {getattr(got, f.name)!r}"
                for f in dataclasses.fields(want)
                if getattr(want, f.name) != getattr(got, f.name)
            ]
            raise ConformanceFailure(f"{adapter.name}: row {index} changed: {'; '.join(diff)}")


def check_deterministic(adapter: ImportAdapter, data: bytes, issuer_node: str) -> None:
    """The same bytes parse to the same results (ids included); rendering them is stable."""
    first = adapter.parse(data, issuer_node=issuer_node)
    second = adapter.parse(data, issuer_node=issuer_node)
    if first != second:
        raise ConformanceFailure(f"{adapter.name}: two parses of one file differ")
    if adapter.render(first) != adapter.render(second):
        raise ConformanceFailure(f"{adapter.name}: rendering the same results differs")
    ids = [r.result_id for r in first]
    if len(set(ids)) != len(ids):
        raise ConformanceFailure(f"{adapter.name}: two rows of one file got the same result_id")


def check_rejects(adapter: ImportAdapter, vector: BadFileVector, issuer_node: str) -> None:
    """The vector is rejected whole, with exactly its expected (row, field) problems."""
    try:
        results = adapter.parse(vector.path.read_bytes(), issuer_node=issuer_node)
    except ImportRejected as exc:
        problems = exc.problems
    else:
        raise ConformanceFailure(
            f"{adapter.name} accepted {vector.name} ({vector.why}) and returned "
            f"{len(results)} results"
        ) from None
    got = [(p.row, p.field) for p in problems]
    want = [(p.row, p.field) for p in vector.problems]
    if sorted(got) != sorted(want):
        raise ConformanceFailure(
            f"{adapter.name} on {vector.name}: problems at {got}, expected {want}: "
            + "; ".join(str(p) for p in problems)
        )
    for expected in vector.problems:
        reasons = [p.reason for p in problems if (p.row, p.field) == (expected.row, expected.field)]
        if not any(expected.reason in reason for reason in reasons):
            raise ConformanceFailure(
                f"{adapter.name} on {vector.name}: row {expected.row} {expected.field} says "
                f"{reasons}, expected it to mention {expected.reason!r}"
            )
    if [p.row for p in problems] != sorted(p.row for p in problems):
        raise ConformanceFailure(f"{adapter.name} on {vector.name}: problems not in row order")
    streamed = _streamed_problems(adapter, vector.path.read_bytes(), issuer_node)
    if sorted((p.row, p.field) for p in streamed) != sorted(got):
        raise ConformanceFailure(
            f"{adapter.name} on {vector.name}: read a row per chunk, problems at "
            f"{[(p.row, p.field) for p in streamed]}, parsed whole {got}"
        )


def check_damage_is_rejected_or_whole(
    adapter: ImportAdapter, data: bytes, issuer_node: str, *, seed: int = 0, trials: int = 60
) -> None:
    """Truncated or byte-damaged files either parse (to a list) or raise ImportRejected:
    no other exception escapes, so a caller never sees a half-read file as a crash."""
    rng = random.Random(seed)
    damaged = [data[: rng.randrange(len(data) + 1)] for _ in range(trials // 2)]
    for _ in range(trials - len(damaged)):
        buffer = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            buffer[rng.randrange(len(buffer))] = rng.randrange(256)
        damaged.append(bytes(buffer))
    for sample in damaged:
        try:
            parsed = adapter.parse(sample, issuer_node=issuer_node)
        except ImportRejected as exc:
            if not exc.problems:
                raise ConformanceFailure(
                    f"{adapter.name}: rejected a file naming no problem"
                ) from exc
        except Exception as exc:
            raise ConformanceFailure(
                f"{adapter.name}: damaged input raised {type(exc).__name__}: {exc} "
                f"(first bytes {sample[:60]!r})"
            ) from exc
        else:
            if not isinstance(parsed, list):
                raise ConformanceFailure(f"{adapter.name}: parse returned {type(parsed)}")


def check_streaming(adapter: ImportAdapter, data: bytes, issuer_node: str) -> None:
    """Read as a stream in chunks of any size, the file gives what `parse` gives: the same
    results in row order, no chunk over its size, and progress (rows, bytes) that counts up to
    the whole file."""
    whole = adapter.parse(data, issuer_node=issuer_node)
    for size in (1, 7, 1000):
        chunks = list(adapter.read(io.BytesIO(data), issuer_node=issuer_node, chunk_rows=size))
        records = [record for chunk in chunks for record in chunk.records]
        if [result for _, result in records] != whole:
            raise ConformanceFailure(f"{adapter.name}: chunks of {size} differ from parse")
        rows = [row for row, _ in records]
        if rows != sorted(set(rows)):
            raise ConformanceFailure(f"{adapter.name}: chunks of {size} out of row order")
        for chunk in chunks:
            bad_rows = {p.row for p in chunk.problems if p.row}
            if len(chunk.records) + len(bad_rows) > size:
                raise ConformanceFailure(f"{adapter.name}: a chunk holds more than {size} rows")
        progress = [(chunk.rows_read, chunk.bytes_read) for chunk in chunks]
        if progress != sorted(progress) or progress[-1] != (len(whole), len(data)):
            raise ConformanceFailure(
                f"{adapter.name}: progress {progress[-3:]} does not end at "
                f"({len(whole)} rows, {len(data)} bytes)"
            )


def _streamed_problems(adapter: ImportAdapter, data: bytes, issuer_node: str) -> list[RowProblem]:
    """The problems of reading `data` one row per chunk (rows seen across chunks)."""
    chunks = adapter.read(io.BytesIO(data), issuer_node=issuer_node, chunk_rows=1)
    return [problem for chunk in chunks for problem in chunk.problems]
