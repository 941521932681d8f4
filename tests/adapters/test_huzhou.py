"""The Huzhou export format's own rules (adapters/huzhou.md), beyond the conformance suite."""

from __future__ import annotations

import datetime as dt
import json
import pathlib

import pytest

from adapters.huzhou import HUZHOU_CSV, HUZHOU_JSON
from adapters.registry import ADAPTERS, get_adapter
from node import identifiers
from node.errors import ImportRejected, InvalidInput
from node.model import CreditLevel, SubjectIdType, SubjectType
from tests.adapters.huzhou_export import CITY, HEADER, USCC, huzhou_csv

VECTORS = pathlib.Path(__file__).parent.parent / "vectors" / "imports" / "huzhou-csv"
OTHER_USCC = identifiers.make_uscc("91330502MA2B3C4D2")


def _problems(data: bytes, adapter: object = HUZHOU_CSV) -> list[tuple[int, str]]:
    with pytest.raises(ImportRejected) as caught:
        get_adapter(adapter.name).parse(data, issuer_node=CITY)  # type: ignore[attr-defined]
    return [(p.row, p.field) for p in caught.value.problems]


@pytest.mark.parametrize(
    "vector", ["good.csv", "good_gb18030.csv", "good_bom.csv"], ids=["utf8", "gb18030", "bom"]
)
def test_encodings_read_the_same(vector: str) -> None:
    data = (VECTORS / vector).read_bytes()
    if vector == "good_gb18030.csv":
        with pytest.raises(UnicodeDecodeError):
            data.decode("utf-8")  # the vector really needs the GB18030 fallback
    expected = HUZHOU_CSV.parse((VECTORS / "good.csv").read_bytes(), issuer_node=CITY)
    assert HUZHOU_CSV.parse(data, issuer_node=CITY) == expected


def test_fields_become_the_canonical_result() -> None:
    [result] = HUZHOU_CSV.parse(
        huzhou_csv(
            f"{USCC},湖州华达有限公司,企业,zj-public-credit@2023,优秀,912.5,20240301,"
            "2025-02-28,红名单|esg_leader"
        ),
        issuer_node=CITY,
    )
    assert result.subject.id == USCC and result.subject.id_type is SubjectIdType.USCC
    assert result.subject_type is SubjectType.ENTERPRISE
    assert (result.native_level, result.level) == ("A", CreditLevel.A)  # alias -> scheme spelling
    assert result.native_score == 912.5
    assert result.flags == ("RED_LIST", "ESG_LEADER")
    china = dt.timezone(dt.timedelta(hours=8))
    assert result.evaluated_at == dt.datetime(2024, 3, 1, tzinfo=china)
    # YXQZ names the last valid day: valid until the start of the next one.
    assert result.valid_until == dt.datetime(2025, 3, 1, tzinfo=china)
    assert result.result_id.startswith("cn-330500:")


@pytest.mark.parametrize(
    ("score", "native", "level"),
    [("95", "AAA", CreditLevel.A), ("80", "AA", CreditLevel.A), ("79.9", "A", CreditLevel.B),
     ("60", "B", CreditLevel.C), ("12", "D", CreditLevel.D)],
)  # fmt: skip
def test_missing_level_comes_from_the_score_band(
    score: str, native: str, level: CreditLevel
) -> None:
    [result] = HUZHOU_CSV.parse(
        huzhou_csv(f"{USCC},某公司,企业,hz-enterprise-credit@2021,,{score},2024-03-01,,"),
        issuer_node=CITY,
    )
    assert (result.native_level, result.level) == (native, level)
    # No YXQZ: the scheme's validity (730 days) applies.
    assert result.valid_until - result.evaluated_at == dt.timedelta(days=730)


def test_english_subject_type_names_and_slash_dates() -> None:
    pid = identifiers.make_resident_id("33050219800101123")
    [person] = HUZHOU_CSV.parse(
        huzhou_csv(f"{pid},张三,natural_person,zj-public-credit@2023,c,,2024/3/1,,"),
        issuer_node=CITY,
    )
    assert person.subject.id_type is SubjectIdType.RESIDENT_ID
    assert person.level is CreditLevel.C


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (",B,", ",C,"),
        ("2024-03-01", "2024-09-01"),
        ("某公司", "某有限公司"),
        (",,,", ",,RED_LIST,"),
    ],
    ids=["level", "evaluation-date", "name", "flags"],
)
def test_result_id_follows_content(before: str, after: str) -> None:
    """Same content, same id (re-import is a no-op); changed content, a new id (peers hold
    signed copies under the old one)."""
    row = f"{USCC},某公司,企业,zj-public-credit@2023,B,,2024-03-01,,,"
    header = HEADER + ",ZB_ESG_SCORE"
    [first] = HUZHOU_CSV.parse(huzhou_csv(row, header=header), issuer_node=CITY)
    [again] = HUZHOU_CSV.parse(huzhou_csv(row, header=header), issuer_node=CITY)
    [changed] = HUZHOU_CSV.parse(
        huzhou_csv(row.replace(before, after), header=header), issuer_node=CITY
    )
    assert first.result_id == again.result_id
    assert changed.result_id != first.result_id


def test_result_id_ignores_flag_order() -> None:
    rows = [f"{USCC},某公司,企业,zj-public-credit@2023,C,,2024-03-01,,{flags}"
            for flags in ("RED_LIST;UNDER_REPAIR", "UNDER_REPAIR|RED_LIST")]  # fmt: skip
    ids = {HUZHOU_CSV.parse(huzhou_csv(row), issuer_node=CITY)[0].result_id for row in rows}
    assert len(ids) == 1


def test_header_names_are_case_insensitive_and_other_columns_ignored() -> None:
    header = "tyshxydm,qymc,ztlx,pjtx,pjdj,CF_XZJDSWH,zb_green_rating,pjrq"
    [result] = HUZHOU_CSV.parse(
        huzhou_csv(
            f"{USCC},某公司,企业,zj-public-credit@2023,A,湖市监罚〔2024〕1号,深绿,2024-03-01",
            header=header,
        ),
        issuer_node=CITY,
    )
    assert dict(result.indicators) == {"green_rating": "深绿"}


def test_blank_lines_are_skipped_but_counted() -> None:
    good = f"{USCC},某公司,企业,zj-public-credit@2023,A,,2024-03-01,,"
    bad = good.replace(USCC, OTHER_USCC).replace(",A,", ",Z,")
    assert _problems(huzhou_csv("", good, ",,,,,,,,", bad)) == [(4, "PJDJ")]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", [(0, "file")]),
        (huzhou_csv("91,x", header="TYSHXYDM,QYMC,ZTLX,PJTX,PJDJ,PJRQ,PJDJ"), [(0, "PJDJ")]),
        (huzhou_csv(header="TYSHXYDM,QYMC,ZTLX,PJTX,PJRQ"), [(0, "PJDJ")]),
        (huzhou_csv(header=HEADER + ",ZB_绿色"), [(0, "ZB_绿色")]),
        (
            huzhou_csv(f"{USCC},某公司,企业,zj-public-credit@2023,A,,2024-03-01,,,extra"),
            [(1, "row")],
        ),
        (huzhou_csv(f"{USCC},某公司,企业,zj-public-credit@2023,A,abc,2024-03-01,,"), [(1, "PJFS")]),
        (huzhou_csv(f"{USCC},某公司,企业,zj-public-credit@2023,A,nan,2024-03-01,,"), [(1, "PJFS")]),
        (huzhou_csv(f"{USCC},某公司,企业,zj-public-credit@2023,,,2024-03-01,,"), [(1, "PJDJ")]),
        (huzhou_csv(f"{USCC},,企业,,A,,,,"), [(1, "QYMC"), (1, "PJTX"), (1, "PJRQ")]),
        (huzhou_csv(f"{USCC[:17]},某公司,企业,zj-public-credit@2023,A,,2024-03-01,,"),
         [(1, "TYSHXYDM")]),
    ],
    ids=["empty", "duplicate-column", "no-level-or-score", "bad-indicator-column", "extra-cell",
         "score-not-number", "score-nan", "no-level", "required-fields", "short-uscc"],
)  # fmt: skip
def test_csv_problems(data: bytes, expected: list[tuple[int, str]]) -> None:
    assert _problems(data) == expected


def _record(**fields: object) -> dict[str, object]:
    base: dict[str, object] = {
        "TYSHXYDM": USCC, "QYMC": "某公司", "ZTLX": "企业", "PJTX": "zj-public-credit@2023",
        "PJDJ": "A", "PJRQ": "2024-03-01",
    }  # fmt: skip
    return {k: v for k, v in {**base, **fields}.items() if v is not ...}


def test_json_accepts_records_wrapper_numbers_and_flag_arrays() -> None:
    record = _record(
        PJDJ=..., PJFS=701, SXBZ=["RED_LIST", "严重失信"], ZB_ESG_SCORE=71.5, YXQZ=None
    )
    data = json.dumps({"records": [record]}, ensure_ascii=False).encode()
    [result] = HUZHOU_JSON.parse(data, issuer_node=CITY)
    assert (result.native_level, result.native_score) == ("B", 701.0)
    assert result.flags == ("RED_LIST", "SERIOUS_DISHONESTY")
    assert dict(result.indicators) == {"esg_score": "71.5"}


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ("{", [(0, "file")]),
        ('{"rows": []}', [(0, "file")]),
        ([_record(TYSHXYDM=913305)], [(1, "TYSHXYDM")]),
        ([_record(), 7], [(2, "row")]),
        ([_record(), {"QYMC": "y"}], [(2, "TYSHXYDM"), (2, "ZTLX"), (2, "PJTX"), (2, "PJRQ")]),
        ([_record(), _record(TYSHXYDM=OTHER_USCC, QYMC=True)], [(2, "QYMC")]),
        ("[" * 100_000, [(0, "file")]),
    ],
    ids=["truncated", "wrong-wrapper", "id-as-number", "not-an-object", "row-missing-keys",
         "name-as-bool", "deep-nesting"],
)  # fmt: skip
def test_json_problems(document: object, expected: list[tuple[int, str]]) -> None:
    text = document if isinstance(document, str) else json.dumps(document, ensure_ascii=False)
    assert _problems(text.encode(), HUZHOU_JSON) == expected


def test_header_only_file_imports_nothing() -> None:
    assert HUZHOU_CSV.parse(huzhou_csv(), issuer_node=CITY) == []


def test_unknown_format_names_the_known_ones() -> None:
    with pytest.raises(InvalidInput, match="known formats: huzhou-csv, huzhou-json"):
        get_adapter("huzhou-xml")
    assert set(ADAPTERS) == {"huzhou-csv", "huzhou-json"}


def test_render_refuses_an_indicator_it_cannot_name() -> None:
    [result] = HUZHOU_CSV.parse((VECTORS / "good.csv").read_bytes(), issuer_node=CITY)[:1]
    odd = result.bound(indicators={"Green Rating": "x"})
    with pytest.raises(InvalidInput, match="cannot be a huzhou-csv column"):
        HUZHOU_CSV.render([odd])


def test_legacy_uscc_is_accepted_only_when_listed() -> None:
    """issue 9 §6: a wrong check character is a row problem unless legacy_codes lists it."""
    legacy = USCC[:17] + ("0" if USCC[17] != "0" else "1")
    data = huzhou_csv(f"{legacy},某公司,企业,zj-public-credit@2023,A,,2024-03-01,,")
    assert _problems(data) == [(1, "TYSHXYDM")]
    with pytest.raises(ImportRejected):
        HUZHOU_CSV.parse(data, issuer_node=CITY, legacy_codes={OTHER_USCC[:17] + legacy[17]})
    [result] = HUZHOU_CSV.parse(data, issuer_node=CITY, legacy_codes={legacy})
    assert result.subject.id == legacy
