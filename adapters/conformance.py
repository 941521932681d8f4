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
import re
import time
import tomllib
from collections.abc import Iterator, Sequence
from typing import Any, BinaryIO, Protocol, TypeVar

from adapters.streaming import Chunk
from node.errors import ImportRejected, InvalidIdentifier, RowProblem
from node.identifiers import mask_resident_id, validate_resident_id
from node.public_records import ListRemoval

R = TypeVar("R")


class Adapter(Protocol[R]):
    """What the suite needs of an adapter: the results exports (adapters.registry) and the
    government formats (adapters.shuanggongshi) alike."""

    @property
    def name(self) -> str: ...

    def parse(self, data: bytes, *, issuer_node: str) -> list[R]: ...

    def read(
        self, stream: BinaryIO, *, issuer_node: str, chunk_rows: int = ...
    ) -> Iterator[Chunk[R]]: ...

    def render(self, records: Sequence[R], /) -> bytes: ...


# Every results adapter keeps a named vector of each kind in its vector directory.
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


# Every government format (adapters.shuanggongshi) has a vector of each of these kinds, and of
# its own kind's (tests/vectors/imports/shuanggongshi/vectors.toml), in each container.
RECORD_VECTOR_KINDS = (
    "bad_uscc_check",
    "uscc_forbidden_letter",
    "bad_resident_id",
    "bad_date",
    "date_year_9999",
    "duplicate_record",
    "missing_field",
    "nul_in_name",
    "many_problems",
    "unknown_subject_category",
)
RECORD_KIND_VECTORS = {
    "penalty": ("unknown_category", "publicity_before_decision", "bad_amount", "unknown_class"),
    "serious-dishonesty": ("unknown_action", "removal_without_date", "removal_before_listing"),
    "licence": ("validity_reversed",),
}

# XML that a safe parser refuses before anything is expanded or fetched (issue 11 §6).
XML_ATTACKS: dict[str, bytes] = {
    "billion_laughs": b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
<!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
<!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
<!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
<!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
<!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
<!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">]>
<ExchangeMessage><Header/><Body><Record><NAME>&lol9;</NAME></Record></Body></ExchangeMessage>
""",
    "quadratic_blowup": b'<?xml version="1.0"?>\n<!DOCTYPE m [<!ENTITY a "'
    + b"x" * 50_000
    + b'">]>\n<ExchangeMessage><Body><Record><NAME>'
    + b"&a;" * 5_000
    + b"</NAME></Record></Body></ExchangeMessage>",
    "external_entity_file": b"""<?xml version="1.0"?>
<!DOCTYPE m [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<ExchangeMessage><Body><Record><NAME>&secret;</NAME></Record></Body></ExchangeMessage>
""",
    "external_entity_url": b"""<?xml version="1.0"?>
<!DOCTYPE m [<!ENTITY remote SYSTEM "http://192.0.2.1/x">]>
<ExchangeMessage><Body><Record><NAME>&remote;</NAME></Record></Body></ExchangeMessage>
""",
    "external_dtd": b"""<?xml version="1.0"?>
<!DOCTYPE ExchangeMessage SYSTEM "http://192.0.2.1/exchange.dtd">
<ExchangeMessage><Body/></ExchangeMessage>
""",
    "parameter_entity": b"""<?xml version="1.0"?>
<!DOCTYPE m [<!ENTITY % p SYSTEM "http://192.0.2.1/p.dtd"> %p;]>
<ExchangeMessage><Body/></ExchangeMessage>
""",
    "undeclared_entity": b"""<?xml version="1.0"?>
<ExchangeMessage><Body><Record><NAME>&undeclared;</NAME></Record></Body></ExchangeMessage>
""",
}
_RESIDENT_ID_RE = re.compile(rb"(?<![0-9])[1-8][0-9]{16}[0-9Xx](?![0-9A-Za-z])")


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


def check_vector_kinds(adapter: Adapter[Any], vectors: Sequence[BadFileVector]) -> None:
    missing = sorted(set(REQUIRED_VECTOR_KINDS) - {v.name for v in vectors})
    if missing:
        raise ConformanceFailure(f"{adapter.name} has no vector for: {', '.join(missing)}")


def check_round_trip(adapter: Adapter[R], results: Sequence[R], issuer_node: str) -> None:
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
                for f in dataclasses.fields(want)  # type: ignore[arg-type]
                if getattr(want, f.name) != getattr(got, f.name)
            ]
            raise ConformanceFailure(f"{adapter.name}: row {index} changed: {'; '.join(diff)}")


def check_deterministic(adapter: Adapter[R], data: bytes, issuer_node: str) -> None:
    """The same bytes parse to the same results (ids included); rendering them is stable."""
    first = adapter.parse(data, issuer_node=issuer_node)
    second = adapter.parse(data, issuer_node=issuer_node)
    if first != second:
        raise ConformanceFailure(f"{adapter.name}: two parses of one file differ")
    if adapter.render(first) != adapter.render(second):
        raise ConformanceFailure(f"{adapter.name}: rendering the same results differs")
    ids = [_id_of(r) for r in first]
    if len(set(ids)) != len(ids):
        raise ConformanceFailure(f"{adapter.name}: two rows of one file got the same result_id")


def check_rejects(
    adapter: Adapter[R], vector: BadFileVector, issuer_node: str, data: bytes | None = None
) -> None:
    """The vector (its file, or `data` made from it) is rejected whole, with exactly its
    expected (row, field) problems; a resident id in the file is never quoted in clear."""
    data = vector.path.read_bytes() if data is None else data
    try:
        results = adapter.parse(data, issuer_node=issuer_node)
    except ImportRejected as exc:
        problems = exc.problems
        message = exc.message
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
    check_person_ids_not_shown(adapter, data, [message, *(p.reason for p in problems)])
    streamed = _streamed_problems(adapter, data, issuer_node)
    if sorted((p.row, p.field) for p in streamed) != sorted(got):
        raise ConformanceFailure(
            f"{adapter.name} on {vector.name}: read a row per chunk, problems at "
            f"{[(p.row, p.field) for p in streamed]}, parsed whole {got}"
        )


def check_damage_is_rejected_or_whole(
    adapter: Adapter[R], data: bytes, issuer_node: str, *, seed: int = 0, trials: int = 60
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


def check_streaming(adapter: Adapter[R], data: bytes, issuer_node: str) -> None:
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


def _streamed_problems(adapter: Adapter[R], data: bytes, issuer_node: str) -> list[RowProblem]:
    """The problems of reading `data` one row per chunk (rows seen across chunks)."""
    chunks = adapter.read(io.BytesIO(data), issuer_node=issuer_node, chunk_rows=1)
    return [problem for chunk in chunks for problem in chunk.problems]


def check_encodings(adapter: Adapter[R], data: bytes, issuer_node: str) -> None:
    """A UTF-8 file reads the same with a BOM, and saved as GB18030 (what Excel on a Chinese
    Windows writes)."""
    want = adapter.parse(data, issuer_node=issuer_node)
    variants = {
        "UTF-8 with BOM": b"\xef\xbb\xbf" + data,
        "GB18030": data.decode("utf-8").encode("gb18030"),
    }
    for label, variant in variants.items():
        if adapter.parse(variant, issuer_node=issuer_node) != want:
            raise ConformanceFailure(f"{adapter.name}: the file as {label} reads differently")


def check_refuses_xml_attacks(adapter: Adapter[R], issuer_node: str) -> None:
    """Every XML_ATTACKS file is refused as a whole-file problem, at once: no entity is
    expanded (bombs) and nothing is fetched (external entities and DTDs)."""
    for name, data in XML_ATTACKS.items():
        started = time.perf_counter()
        try:
            adapter.parse(data, issuer_node=issuer_node)
        except ImportRejected as exc:
            if not any(p.row == 0 for p in exc.problems):
                raise ConformanceFailure(
                    f"{adapter.name} on {name}: refused by rows, not as a file: {exc.message}"
                ) from None
        else:
            raise ConformanceFailure(f"{adapter.name} accepted the XML attack {name}")
        if time.perf_counter() - started > 2.0:
            raise ConformanceFailure(f"{adapter.name} on {name}: took over 2 s to refuse")


def check_person_ids_not_shown(adapter: Adapter[R], data: bytes, texts: Sequence[str]) -> None:
    """No resident id of `data` appears in clear in `texts` (problems, messages): a person's
    id leaves the node only where a purpose allows it, never in an error."""
    for match in _RESIDENT_ID_RE.finditer(data):
        raw = match.group().decode("ascii").upper()
        try:
            validate_resident_id(raw)
        except InvalidIdentifier:
            continue
        for text in texts:
            if raw in text.upper():
                raise ConformanceFailure(
                    f"{adapter.name}: a resident id ({mask_resident_id(raw)}) is quoted in clear"
                )


def _id_of(record: object) -> str:
    if isinstance(record, ListRemoval):
        return f"removal of {record.record_id}"  # an entry's removal names the entry
    for attribute in ("result_id", "record_id", "licence_id"):
        value = getattr(record, attribute, None)
        if isinstance(value, str):
            return value
    raise ConformanceFailure(f"{type(record).__name__} has no id")
