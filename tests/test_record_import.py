"""Government records into the store (issue 11 §5-§6), on SQLite and PostgreSQL: penalties and
serious-dishonesty list changes imported all or nothing, a re-import that changes nothing, and
the flags of the subjects' current results re-issued (never changed under an id)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
from typing import Any

import pytest

from adapters.shuanggongshi import LIST_FORMATS, PENALTY_FORMATS, RecordFormat, record_id_for
from node import credit_repair
from node.clock import ManualClock
from node.errors import ImportRejected, InvalidInput
from node.identifiers import make_uscc
from node.model import ResultStatus, RevocationReason, SubjectIdType, SubjectRef
from node.public_records import ListRemoval, PenaltyRecord, RecordKind
from node.repair import CHINA, PenaltyStatus, Severity
from node.store import Store
from node.store.record_import import RecordImportSummary, staged_records
from tests.results import make_result

NOW = dt.datetime(2030, 6, 1, 10, tzinfo=CHINA)
TODAY = NOW.date()
S1, S2, S3, S4 = (
    SubjectRef(SubjectIdType.USCC, make_uscc(f"91330502MA2B3C4D{n}")) for n in range(4)
)
CF_CSV = PENALTY_FORMATS["shuanggongshi-cf-csv"]
CF_XML = PENALTY_FORMATS["shuanggongshi-cf-xml"]
LIST_JSON = LIST_FORMATS["serious-dishonesty-json"]


def _penalty(
    subject: SubjectRef, number: str, severity: Severity, decided: dt.date, ends: dt.date
) -> PenaltyRecord:
    category = {Severity.MINOR: "警告", Severity.GENERAL: "罚款", Severity.SERIOUS: "责令关闭"}
    content = {"case_number": number, "category": category[severity], "authority": "湖州市局"}
    if severity is Severity.GENERAL:
        content["fine"] = "5"
    return PenaltyRecord(
        record_id_for("cf", subject, (number,)), subject, "湖州测试", severity, decided, content,
        publicity_ends_on=ends,
    )  # fmt: skip


def _entry(subject: SubjectRef, listed: dt.date) -> PenaltyRecord:
    record_id = record_id_for("sd", subject, ("严重失信主体名单", listed.isoformat()))
    content = {"list_name": "严重失信主体名单", "list_reason": "虚假材料"}
    return PenaltyRecord(
        record_id, subject, "湖州测试", Severity.SERIOUS, listed, content,
        kind=RecordKind.SERIOUS_DISHONESTY_LIST,
    )  # fmt: skip


def _removal(entry: PenaltyRecord, removed: dt.date, reason: RevocationReason) -> ListRemoval:
    content = {"list_name": "严重失信主体名单", "listed_on": entry.decided_on.isoformat()}
    return ListRemoval(entry.record_id, entry.subject, "湖州测试", removed, reason, content)


def _import(
    store: Store, adapter: RecordFormat[Any], data: bytes, kind: RecordKind, now: dt.datetime = NOW
) -> RecordImportSummary:
    staged_import = staged_records(
        store, source="f", fmt=adapter.name, kind=kind, now=now, repeat=adapter.repeat
    )
    with staged_import as staged:
        for chunk in adapter.read(io.BytesIO(data), seen=staged, chunk_rows=2):
            staged.add(chunk.records, chunk.problems)
        return staged.commit("0" * 64)


def _results(store: Store) -> None:
    results = [
        make_result(result_id="cn-330500:r1", subject=S1, flags=("RED_LIST",)),
        make_result(result_id="cn-330500:r2", subject=S2, flags=("SERIOUS_DISHONESTY",)),
        make_result(result_id="cn-330500:r3", subject=S3, flags=()),
    ]
    store.results.import_results(results, source="r", file_sha256="1" * 64, fmt="t", now=NOW)


def _flags(store: Store, subject: SubjectRef) -> set[str]:
    [current] = store.results.get_current(subject.id_type, subject.id)
    return set(current.flags)


def _state(store: Store) -> tuple[Any, ...]:
    counts = tuple(store.results.count(s) for s in ResultStatus)
    penalties = [(r.record_id, r.status) for r in store.penalties.in_force()]
    return counts, store.changes.head(), penalties


def test_penalties_flag_current_results_and_a_reimport_changes_nothing(store: Store) -> None:
    _results(store)
    year = dt.timedelta(days=365)
    records = [
        _penalty(
            S1, "罚〔2030〕1号", Severity.GENERAL, TODAY - dt.timedelta(days=10), TODAY + year
        ),
        _penalty(S2, "罚〔2030〕2号", Severity.MINOR, TODAY - dt.timedelta(days=5), TODAY + year),
        _penalty(S4, "罚〔2030〕3号", Severity.SERIOUS, TODAY - dt.timedelta(days=5), TODAY + year),
        _penalty(S1, "罚〔2027〕9号", Severity.SERIOUS, TODAY - 3 * year, TODAY - 2 * year),
    ]
    data = CF_XML.render(records)
    summary = _import(store, CF_XML, data, RecordKind.PENALTY)
    assert summary == RecordImportSummary(added=3, expired=1, removed=0, unchanged=0, reissued=2)
    assert _flags(store, S1) == {"RED_LIST", "ADMINISTRATIVE_PENALTY"}
    # The platform's SERIOUS_DISHONESTY is not the penalties' to take away.
    assert _flags(store, S2) == {"SERIOUS_DISHONESTY", "ADMINISTRATIVE_PENALTY"}
    assert _flags(store, S3) == set()
    old = store.results.get("cn-330500:r1")
    assert old is not None and old.status is ResultStatus.SUPERSEDED
    expired = store.penalties.get(records[3].record_id)
    assert expired is not None and expired.status is PenaltyStatus.EXPIRED
    assert expired.publicity_ends_on == TODAY - 2 * year
    held = store.penalties.get(records[0].record_id)
    assert (
        held is not None and dataclasses.replace(held, status=PenaltyStatus.IN_FORCE) == records[0]
    )

    before = _state(store)
    again = _import(store, CF_XML, data, RecordKind.PENALTY)
    assert again == RecordImportSummary(added=0, expired=0, removed=0, unchanged=4, reissued=0)
    assert _state(store) == before


def test_a_bad_file_writes_nothing(store: Store) -> None:
    _results(store)
    good = _penalty(S1, "罚〔2030〕1号", Severity.GENERAL, TODAY, TODAY + dt.timedelta(days=90))
    data = CF_CSV.render([good, good])  # the second row repeats the first
    before = _state(store)
    with pytest.raises(ImportRejected) as caught:
        _import(store, CF_CSV, data, RecordKind.PENALTY)
    assert [(p.row, p.field) for p in caught.value.problems] == [(2, "CF_WSH")]
    assert _state(store) == before and store.penalties.get(good.record_id) is None


def test_a_held_record_is_never_overwritten_by_other_content(store: Store) -> None:
    _results(store)
    first = _penalty(S1, "罚〔2030〕1号", Severity.GENERAL, TODAY, TODAY + dt.timedelta(days=90))
    _import(store, CF_CSV, CF_CSV.render([first]), RecordKind.PENALTY)
    before = _state(store)
    heavier = dataclasses.replace(first, content={**first.content, "fine": "500"})
    other = _penalty(S3, "罚〔2030〕7号", Severity.MINOR, TODAY, TODAY + dt.timedelta(days=30))
    with pytest.raises(ImportRejected, match="held already with other content") as caught:
        _import(store, CF_CSV, CF_CSV.render([other, heavier]), RecordKind.PENALTY)
    assert [p.row for p in caught.value.problems] == [2]
    assert _state(store) == before and store.penalties.get(other.record_id) is None


def test_the_list_sets_and_clears_serious_dishonesty(store: Store) -> None:
    _results(store)
    listed = TODAY - dt.timedelta(days=400)
    entry = _entry(S1, listed)
    summary = _import(
        store, LIST_JSON, LIST_JSON.render([entry]), RecordKind.SERIOUS_DISHONESTY_LIST
    )
    assert (summary.added, summary.reissued) == (1, 1)
    assert _flags(store, S1) == {"RED_LIST", "SERIOUS_DISHONESTY"}
    [flagged] = store.results.get_current(S1.id_type, S1.id)
    # A penalty changes its own flags only: the list's stays.
    penalty = _penalty(S1, "罚〔2030〕1号", Severity.MINOR, TODAY, TODAY + dt.timedelta(days=30))
    _import(store, CF_CSV, CF_CSV.render([penalty]), RecordKind.PENALTY)
    assert _flags(store, S1) == {"RED_LIST", "SERIOUS_DISHONESTY", "ADMINISTRATIVE_PENALTY"}
    [flagged] = store.results.get_current(S1.id_type, S1.id)

    removal = _removal(entry, TODAY, RevocationReason.CREDIT_REPAIRED)
    data = LIST_JSON.render([removal])
    summary = _import(store, LIST_JSON, data, RecordKind.SERIOUS_DISHONESTY_LIST)
    assert (summary.removed, summary.reissued) == (1, 1)
    assert _flags(store, S1) == {"RED_LIST", "ADMINISTRATIVE_PENALTY"}
    old = store.results.get(flagged.result_id)
    assert old is not None and old.status is ResultStatus.REVOKED
    closed = store.penalties.get(entry.record_id)
    assert closed is not None and closed.status is PenaltyStatus.REMOVED
    assert f"removed from the list on {TODAY}" in closed.close_reason

    before = _state(store)
    again = _import(store, LIST_JSON, data, RecordKind.SERIOUS_DISHONESTY_LIST)
    assert (again.removed, again.unchanged) == (0, 1) and _state(store) == before


def test_a_removal_of_an_entry_never_listed_is_refused(store: Store) -> None:
    _results(store)
    stray = _removal(_entry(S3, TODAY - dt.timedelta(days=30)), TODAY, RevocationReason.CORRECTED)
    entry = _entry(S1, TODAY - dt.timedelta(days=30))
    data = LIST_JSON.render([entry, stray])
    before = _state(store)
    with pytest.raises(ImportRejected, match="not on the list") as caught:
        _import(store, LIST_JSON, data, RecordKind.SERIOUS_DISHONESTY_LIST)
    assert [p.row for p in caught.value.problems] == [2]
    assert _state(store) == before


def test_an_entry_and_its_removal_in_one_file_leave_the_results_alone(store: Store) -> None:
    _results(store)
    entry = _entry(S1, TODAY - dt.timedelta(days=400))
    data = LIST_JSON.render([entry, _removal(entry, TODAY, RevocationReason.EXPIRED)])
    summary = _import(store, LIST_JSON, data, RecordKind.SERIOUS_DISHONESTY_LIST)
    assert (summary.added, summary.removed, summary.reissued) == (1, 1, 0)
    assert _flags(store, S1) == {"RED_LIST"}
    held = store.penalties.get(entry.record_id)
    assert held is not None and held.status is PenaltyStatus.REMOVED


def test_a_list_entry_is_not_repaired_like_a_penalty(store: Store) -> None:
    entry = _entry(S1, TODAY - dt.timedelta(days=800))
    _import(store, LIST_JSON, LIST_JSON.render([entry]), RecordKind.SERIOUS_DISHONESTY_LIST)
    with pytest.raises(InvalidInput, match="by a removal"):
        credit_repair.repair_record(store, entry.record_id, "修复", ManualClock(NOW))
    assert credit_repair.expire_due(store, ManualClock(NOW + dt.timedelta(days=3650))) == []
