"""The government formats (adapters.shuanggongshi) pass the conformance suite in every container,
their field maps are data (a variant added at run time is read), and the class rule holds."""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import pathlib
import tomllib
from collections.abc import Mapping
from typing import Any

import pytest

from adapters import conformance
from adapters.containers import CONTAINERS, write
from adapters.fieldmaps import builtin_field_maps, load_field_maps
from adapters.penalty_class import ClassProblem, builtin_rule, classify
from adapters.shuanggongshi import (
    LICENCE_FORMATS,
    LIST_FORMATS,
    PENALTY_FORMATS,
    RECORD_FORMATS,
    Licence,
    RecordFormat,
)
from node.errors import ConfigError, ImportRejected
from node.gendata import generate_list_changes, generate_penalties
from node.model import RevocationReason, SubjectIdType, SubjectRef
from node.public_records import ListRemoval, PenaltyRecord, RecordKind
from node.repair import Severity

VECTORS = pathlib.Path(__file__).parent.parent / "vectors" / "imports" / "shuanggongshi"
CITY = "cn-330500"
AS_OF = dt.date(2030, 6, 1)
FIELDS = {  # placeholder -> canonical field, per kind (vectors.toml)
    "{ID}": "uscc",
    "{PERSON_ID}": "person_id",
    "{PERSON_ID_TYPE}": "person_id_type",
    "{NAME}": "subject_name",
    "{CATEGORY}": "subject_category",
}
KIND_FIELDS = {
    "penalty": {"{DATE}": "decided_on", "{KEY}": "case_number", "{DISTINCT}": "case_number"},
    "serious-dishonesty": {"{DATE}": "listed_on", "{KEY}": "listed_on", "{DISTINCT}": "list_name"},
    "licence": {
        "{DATE}": "decided_on",
        "{KEY}": "document_number",
        "{DISTINCT}": "document_number",
    },
}
format_param = pytest.mark.parametrize(
    "adapter", list(RECORD_FORMATS.values()), ids=list(RECORD_FORMATS)
)


def _licences(count: int) -> list[Licence]:
    """Licences of the subjects of generated penalties (one each)."""
    records = generate_penalties(CITY, count, 4, AS_OF, subjects=count)
    found: dict[SubjectRef, Licence] = {}
    for n, record in enumerate(records):
        number = f"湖市监许〔2029〕{n}号"
        from adapters.shuanggongshi import record_id_for

        found.setdefault(
            record.subject,
            Licence(
                record_id_for("xk", record.subject, (number, f"JY{n:08d}")),
                record.subject,
                record.subject_name,
                record.decided_on,
                record.decided_on,
                None if n % 3 == 0 else record.decided_on + dt.timedelta(days=1825),
                {
                    "document_number": number,
                    "licence_number": f"JY{n:08d}",
                    "authority": "湖州市市场监督管理局",
                },
            ),
        )
    return list(found.values())


def _records(adapter: RecordFormat[Any], count: int, seed: int) -> list[Any]:
    if adapter.kind == "penalty":
        return list(generate_penalties(CITY, count, seed, AS_OF))
    if adapter.kind == "serious-dishonesty":
        return generate_list_changes(CITY, count, seed, AS_OF)
    return _licences(count)


# --- the conformance suite --------------------------------------------------------------------


@format_param
@pytest.mark.parametrize("seed", [1, 2])
def test_records_round_trip(adapter: RecordFormat[Any], seed: int) -> None:
    conformance.check_round_trip(adapter, _records(adapter, 150, seed), CITY)


@format_param
def test_parse_is_deterministic_and_streams_in_chunks_of_any_size(
    adapter: RecordFormat[Any],
) -> None:
    data = adapter.render(_records(adapter, 1200, 3))
    conformance.check_deterministic(adapter, data, CITY)
    conformance.check_streaming(adapter, data, CITY)


@format_param
def test_utf8_with_bom_and_gb18030_read_alike(adapter: RecordFormat[Any]) -> None:
    conformance.check_encodings(adapter, adapter.render(_records(adapter, 40, 5)), CITY)


@format_param
def test_damaged_files_raise_only_import_rejected(adapter: RecordFormat[Any]) -> None:
    data = adapter.render(_records(adapter, 12, 6))
    conformance.check_damage_is_rejected_or_whole(adapter, data, CITY, seed=6, trials=80)


@pytest.mark.parametrize("adapter", [a for a in RECORD_FORMATS.values() if a.container == "xml"])
def test_xml_bombs_and_external_entities_are_refused(adapter: RecordFormat[Any]) -> None:
    conformance.check_refuses_xml_attacks(adapter, CITY)


def _cases() -> list[tuple[RecordFormat[Any], str, dict[str, Any]]]:
    table = tomllib.loads((VECTORS / "vectors.toml").read_text(encoding="utf-8"))
    cases = []
    for adapter in RECORD_FORMATS.values():
        kind_cases = {**table["common"], **table[adapter.kind]}
        del kind_cases["base"]
        for name, case in kind_cases.items():
            cases.append((adapter, name, case))
    return cases


def test_every_format_has_a_vector_of_every_kind() -> None:
    names: dict[str, set[str]] = {}
    for adapter, name, _ in _cases():
        names.setdefault(adapter.name, set()).add(name)
    for adapter in RECORD_FORMATS.values():
        wanted = {*conformance.RECORD_VECTOR_KINDS, *conformance.RECORD_KIND_VECTORS[adapter.kind]}
        assert wanted <= names[adapter.name], adapter.name


def _placeholders(kind: str) -> dict[str, str]:
    spelling = builtin_field_maps()[kind].spelling
    return {mark: spelling[field] for mark, field in {**FIELDS, **KIND_FIELDS[kind]}.items()}


def _fill(value: Any, marks: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        return marks.get(value, value)
    if isinstance(value, list):
        return [_fill(v, marks) for v in value]
    if isinstance(value, dict):
        return {_fill(k, marks): _fill(v, marks) for k, v in value.items()}
    return value


def _vector_file(adapter: RecordFormat[Any], case: dict[str, Any]) -> bytes:
    table = tomllib.loads((VECTORS / "vectors.toml").read_text(encoding="utf-8"))
    marks = _placeholders(adapter.kind)
    base: dict[str, str] = table[adapter.kind]["base"]
    rows = [base | _fill(overrides, marks) for overrides in case["rows"]]
    drop = set(_fill(case.get("drop", []), marks))
    columns = [c for c in dict.fromkeys(c for row in rows for c in row) if c not in drop]
    return write(
        adapter.container,
        adapter.kind,
        columns,
        [{c: row.get(c, "") for c in columns} for row in rows],
    )


@pytest.mark.parametrize(
    ("adapter", "name", "case"), _cases(), ids=[f"{a.name}-{n}" for a, n, _ in _cases()]
)
def test_bad_file_is_rejected_whole_with_every_problem(
    adapter: RecordFormat[Any], name: str, case: dict[str, Any]
) -> None:
    marks = _placeholders(adapter.kind)
    expected = _fill(case.get(adapter.container, case["problems"]), marks)
    vector = conformance.BadFileVector(
        name=name,
        path=VECTORS / "vectors.toml",
        why=case["why"],
        problems=tuple(
            conformance.ExpectedProblem(p["row"], p["field"], p["reason"]) for p in expected
        ),
    )
    conformance.check_rejects(adapter, vector, CITY, data=_vector_file(adapter, case))


def test_undecodable_file_is_refused_as_a_whole() -> None:
    for adapter in RECORD_FORMATS.values():
        with pytest.raises(ImportRejected) as caught:
            adapter.parse(b"\xff\xfe\x00bad" * 10, issuer_node=CITY)
        assert [(p.row, p.field) for p in caught.value.problems] == [(0, "file")]


# --- what a row becomes -----------------------------------------------------------------------


PENALTY_CSV = (
    "CF_XDR_MC,CF_XDR_LB,CF_XDR_SHXYM,CF_XDR_ZJLX,CF_XDR_ZJHM,CF_FR_ZJHM,CF_WSH,CF_CFLB,CF_NR_FK,"
    "CF_JDRQ,CF_GSJZQ,CF_CFJG\n"
    "湖州华达新材料有限公司,法人及非法人组织,91330502MA2B3C4D1U,,,330522198503142034,"
    "湖市监罚〔2025〕12号,罚款,5,2025-03-01,2026-02-28,湖州市市场监督管理局\n"
    "沈建华,自然人,,身份证,330522198503142034,,湖公罚〔2025〕3号,警告,,20250401,2025-06-30,"
    "湖州市公安局\n"
)


def test_a_penalty_row_becomes_a_record_with_class_dates_and_no_person_id() -> None:
    company, person = PENALTY_FORMATS["shuanggongshi-cf-csv"].parse(
        PENALTY_CSV.encode(), subject_key=b"k" * 32
    )
    assert company.subject == SubjectRef(SubjectIdType.USCC, "91330502MA2B3C4D1U")
    assert (company.severity, company.decided_on, company.publicity_ends_on) == (
        Severity.GENERAL,
        dt.date(2025, 3, 1),
        dt.date(2026, 2, 28),
    )
    assert company.kind is RecordKind.PENALTY
    assert company.content["case_number"] == "湖市监罚〔2025〕12号"
    assert person.subject.id_type is SubjectIdType.RESIDENT_ID
    assert person.severity is Severity.MINOR
    # A person's id is the subject alone: not in the content (the legal representative's id
    # is dropped too) and not readable from the record id (keyed by the node's subject key).
    for record in (company, person):
        assert "330522198503142034" not in repr(dict(record.content))
        assert "330522198503142034" not in record.record_id


@pytest.mark.parametrize(
    ("explicit", "categories", "fine", "expected"),
    [
        ("", "警告", None, Severity.MINOR),
        ("", "通报批评", None, Severity.MINOR),
        ("", "罚款", "2.99", Severity.MINOR),  # 较低数额罚款
        ("", "罚款", "3", Severity.GENERAL),
        ("", "警告;罚款", "1", Severity.MINOR),
        ("", "罚款、没收违法所得", "1", Severity.GENERAL),  # more than a fine
        ("", "罚款", "100", Severity.SERIOUS),
        ("", "吊销许可证件", None, Severity.SERIOUS),
        ("", "责令停产停业;警告", None, Severity.SERIOUS),
        ("严重", "警告", None, Severity.SERIOUS),  # the explicit class wins
        ("minor", "吊销许可证件", None, Severity.MINOR),
    ],
)
def test_penalty_class_rule(
    explicit: str, categories: str, fine: str | None, expected: Severity
) -> None:
    amount = None if fine is None else decimal.Decimal(fine)
    assert classify(builtin_rule(), explicit, categories, amount) is expected


def test_penalty_class_rule_names_what_it_does_not_know() -> None:
    with pytest.raises(ClassProblem, match="unknown penalty category '打板子'"):
        classify(builtin_rule(), "", "罚款;打板子", None)


def test_list_rows_become_entries_and_removals() -> None:
    csv = (
        "SX_ZTMC,SX_TYSHXYDM,SX_CZLX,SX_LRRQ,SX_YCRQ,SX_YCYY\n"
        "湖州华达新材料有限公司,91330502MA2B3C4D1U,列入,2025-03-01,,\n"
        "湖州华达新材料有限公司,91330502MA2B3C4D1U,移出,2025-03-01,2026-03-02,期满\n"
    )
    entry, removal = LIST_FORMATS["serious-dishonesty-csv"].parse(csv.encode())
    assert isinstance(entry, PenaltyRecord) and isinstance(removal, ListRemoval)
    assert entry.kind is RecordKind.SERIOUS_DISHONESTY_LIST
    assert entry.flag == "SERIOUS_DISHONESTY"
    assert removal.record_id == entry.record_id  # the removal names the entry it closes
    assert (removal.removed_on, removal.reason) == (dt.date(2026, 3, 2), RevocationReason.EXPIRED)


def test_licences_are_read_with_open_ended_validity() -> None:
    csv = (
        "XK_XDR_MC,XK_XDR_SHXYM,XK_WSH,XK_XKBH,XK_JDRQ,XK_YXQZ,XK_YXQZI,XK_XKJG\n"
        "湖州华达新材料有限公司,91330502MA2B3C4D1U,许〔2025〕8号,JY1,2025-03-01,2025-03-01,,湖州市局\n"
    )
    (licence,) = LICENCE_FORMATS["shuanggongshi-xk-csv"].parse(csv.encode())
    assert (licence.valid_from, licence.valid_to) == (dt.date(2025, 3, 1), None)


# --- field maps are data ----------------------------------------------------------------------

VARIANT = """
id = "shuanggongshi-cf@zj-legacy"
kind = "penalty"
title = "an older provincial export: other names for the same fields"

[fields]
subject_name = ["XZXDRMC"]
uscc = ["TYSHXYDM"]
case_number = ["CFJDSWH"]
category = ["CFLB"]
fine = ["FKJE"]
decided_on = ["CFJDRQ"]
publicity_ends_on = ["GSJZRQ"]
authority = ["CFJGMC"]
"""


def test_a_variant_added_as_a_data_file_at_run_time_is_read(tmp_path: pathlib.Path) -> None:
    """Issue 11 Must show: a new 双公示 variant is a data file, not code."""
    (tmp_path / "shuanggongshi-cf@zj-legacy.toml").write_text(VARIANT, encoding="utf-8")
    national = PENALTY_FORMATS["shuanggongshi-cf-csv"]
    variant_file = (
        "XZXDRMC,TYSHXYDM,CFJDSWH,CFLB,FKJE,CFJDRQ,GSJZRQ,CFJGMC\n"
        "湖州华达新材料有限公司,91330502MA2B3C4D1U,湖市监罚〔2025〕12号,罚款,5,2025-03-01,"
        "2026-02-28,湖州市市场监督管理局\n"
    ).encode()
    with pytest.raises(ImportRejected, match="required column is missing"):
        national.parse(variant_file)  # the shipped maps do not know these names
    with_variant = national.with_field_maps(load_field_maps(tmp_path))
    (record,) = with_variant.parse(variant_file)
    national_file = (
        "CF_XDR_MC,CF_XDR_SHXYM,CF_WSH,CF_CFLB,CF_NR_FK,CF_JDRQ,CF_GSJZQ,CF_CFJG\n"
        + variant_file.decode().split("\n", 1)[1]
    ).encode()
    assert [record] == national.parse(national_file)  # the same record, id included
    assert "shuanggongshi-cf@zj-legacy" in with_variant.field_map.variants


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (VARIANT.replace('fine = ["FKJE"]', 'fine = ["CF_WSH"]'), "would mean fine"),
        (VARIANT.replace('fine = ["FKJE"]', 'fines = ["FKJE"]'), "has no field 'fines'"),
        (VARIANT.replace('kind = "penalty"', 'kind = "tax"'), "`kind` must be one of"),
        (
            VARIANT.replace('kind = "penalty"', 'kind = "penalty"\nprimary = true'),
            "a primary map names every field",
        ),
    ],
)
def test_a_variant_that_contradicts_the_maps_is_refused(
    tmp_path: pathlib.Path, text: str, message: str
) -> None:
    (tmp_path / "shuanggongshi-cf@zj-legacy.toml").write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        load_field_maps(tmp_path)


def test_rendering_names_every_field_by_its_national_column() -> None:
    record = next(iter(generate_penalties(CITY, 1, 9, AS_OF)))
    header = PENALTY_FORMATS["shuanggongshi-cf-csv"].render([record]).decode().splitlines()[0]
    for column in ("CF_XDR_MC", "CF_XDR_SHXYM", "CF_WSH", "CF_CFLB", "CF_NR_FK", "CF_JDRQ"):
        assert column in header.split(",")
    assert dataclasses.replace(record).publicity_ends_on is not None


def test_every_container_is_offered_for_every_kind() -> None:
    for stem in ("shuanggongshi-cf", "shuanggongshi-xk", "serious-dishonesty"):
        assert {f"{stem}-{c}" for c in CONTAINERS} <= set(RECORD_FORMATS)
