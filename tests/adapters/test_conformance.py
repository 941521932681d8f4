"""Every registered import adapter passes the conformance suite (adapters/conformance.py)."""

from __future__ import annotations

import datetime as dt
import pathlib

import pytest

from adapters import conformance
from adapters.registry import ADAPTERS, ImportAdapter
from node.gendata import generate_results

VECTORS = pathlib.Path(__file__).parent.parent / "vectors" / "imports"
CITY = "cn-330500"
AS_OF = dt.date(2030, 6, 1)  # generated data are current on this date

adapter_param = pytest.mark.parametrize("adapter", list(ADAPTERS.values()), ids=list(ADAPTERS))


def _vectors() -> list[tuple[ImportAdapter, conformance.BadFileVector]]:
    return [
        (adapter, vector)
        for adapter in ADAPTERS.values()
        for vector in conformance.load_vectors(VECTORS / adapter.name)
    ]


@adapter_param
def test_adapter_has_a_vector_of_every_kind(adapter: ImportAdapter) -> None:
    conformance.check_vector_kinds(adapter, conformance.load_vectors(VECTORS / adapter.name))


@pytest.mark.parametrize(
    ("adapter", "vector"), _vectors(), ids=[f"{a.name}-{v.name}" for a, v in _vectors()]
)
def test_bad_file_is_rejected_whole_with_every_problem(
    adapter: ImportAdapter, vector: conformance.BadFileVector
) -> None:
    conformance.check_rejects(adapter, vector, CITY)


@adapter_param
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_generated_results_round_trip(adapter: ImportAdapter, seed: int) -> None:
    conformance.check_round_trip(adapter, generate_results(CITY, 300, seed, AS_OF), CITY)


@adapter_param
def test_parse_is_deterministic(adapter: ImportAdapter) -> None:
    data = adapter.render(generate_results(CITY, 200, 11, AS_OF))
    conformance.check_deterministic(adapter, data, CITY)


@adapter_param
def test_damaged_files_raise_only_import_rejected(adapter: ImportAdapter) -> None:
    data = adapter.render(generate_results(CITY, 15, 5, AS_OF))
    conformance.check_damage_is_rejected_or_whole(adapter, data, CITY, seed=5, trials=120)


@adapter_param
def test_streamed_in_chunks_of_any_size_reads_as_parsed(adapter: ImportAdapter) -> None:
    data = adapter.render(generate_results(CITY, 2500, 8, AS_OF))
    conformance.check_streaming(adapter, data, CITY)


@adapter_param
def test_good_vector_imports(adapter: ImportAdapter) -> None:
    good = next((VECTORS / adapter.name).glob("good.*"))
    results = adapter.parse(good.read_bytes(), issuer_node=CITY)
    assert [r.subject_name for r in results] == [
        "湖州华达新材料有限公司",
        "德清县王记五金店",
        "沈建华",
    ]


def test_conformance_catches_an_adapter_that_returns_part_of_a_file() -> None:
    """The suite itself can fail: an adapter that drops bad rows instead of rejecting is caught."""

    class DropsBadRows:
        name = "drops-bad-rows"
        description = "returns the good rows of a bad file"

        def __init__(self) -> None:
            self.inner = ADAPTERS["huzhou-csv"]

        def parse(self, data: bytes, **kwargs: object) -> list[object]:
            try:
                return list(self.inner.parse(data, **kwargs))  # type: ignore[arg-type]
            except Exception:
                return []

        def render(self, results: object) -> bytes:
            return self.inner.render(results)  # type: ignore[arg-type]

    vector = conformance.load_vectors(VECTORS / "huzhou-csv")[0]
    with pytest.raises(conformance.ConformanceFailure, match="accepted"):
        conformance.check_rejects(DropsBadRows(), vector, CITY)  # type: ignore[arg-type]


@adapter_param
def test_utf8_with_bom_and_gb18030_read_alike(adapter: ImportAdapter) -> None:
    data = adapter.render(generate_results(CITY, 40, 12, AS_OF))
    conformance.check_encodings(adapter, data, CITY)
