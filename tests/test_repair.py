"""Credit repair (issue 12 §2, NDRC Order No. 36): the publicity periods per class, repair
before and after the minimum, expiry at the maximum, and a repaired record gone from results,
flags and the feed — on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import pathlib
import subprocess
import sys

import pytest

from devtools.federation import run_cli
from node import changefeed, credit_repair, model
from node import policy as policies
from node.clock import SYSTEM, ManualClock
from node.errors import NotFound
from node.home import NodeHome
from node.identifiers import make_uscc
from node.repair import (
    CHINA,
    PenaltyStatus,
    Publicity,
    RecordClosed,
    RepairTooEarly,
    Severity,
    add_months,
    check_repair,
    china_day,
    due_within,
    publicity,
)
from node.store import Store
from node.store.penalties import PenaltyRecord
from tests.results import make_result

DECIDED = dt.date(2026, 1, 31)


@pytest.mark.parametrize(
    ("day", "months", "expected"),
    [
        (dt.date(2026, 1, 31), 3, dt.date(2026, 4, 30)),
        (dt.date(2025, 11, 30), 3, dt.date(2026, 2, 28)),
        (dt.date(2027, 11, 30), 3, dt.date(2028, 2, 29)),  # a leap year
        (dt.date(2026, 1, 31), 12, dt.date(2027, 1, 31)),
        (dt.date(2026, 12, 15), 36, dt.date(2029, 12, 15)),
    ],
)
def test_months_are_calendar_months(day: dt.date, months: int, expected: dt.date) -> None:
    assert add_months(day, months) == expected


@pytest.mark.parametrize(
    ("severity", "earliest", "expires"),
    [
        (Severity.MINOR, DECIDED, dt.date(2026, 4, 30)),  # at most 3 months
        (Severity.GENERAL, dt.date(2026, 4, 30), dt.date(2027, 1, 31)),  # 3 months to 1 year
        (Severity.SERIOUS, dt.date(2027, 1, 31), dt.date(2029, 1, 31)),  # 1 year to 3 years
    ],
)
def test_repair_before_and_after_the_minimum_per_class(
    severity: Severity, earliest: dt.date, expires: dt.date
) -> None:
    assert publicity(severity, DECIDED) == Publicity(earliest, expires)
    check_repair("r-1", severity, DECIDED, PenaltyStatus.IN_FORCE, earliest)  # allowed
    if severity is not Severity.MINOR:
        with pytest.raises(RepairTooEarly, match=f"may be repaired from {earliest} on"):
            check_repair(
                "r-1", severity, DECIDED, PenaltyStatus.IN_FORCE, earliest - dt.timedelta(1)
            )
    with pytest.raises(RecordClosed):
        check_repair("r-1", severity, DECIDED, PenaltyStatus.REPAIRED, expires)


def test_due_within_lists_what_becomes_repairable_or_expires() -> None:
    records = [
        ("general", Severity.GENERAL, DECIDED),  # repairable 2026-04-30
        ("minor", Severity.MINOR, DECIDED),  # expires 2026-04-30
        ("serious", Severity.SERIOUS, DECIDED),  # nothing before 2027
    ]
    due = due_within(records, dt.date(2026, 4, 20), 10)
    assert [(d.record_id, d.event, d.on) for d in due] == [
        ("general", "repairable", dt.date(2026, 4, 30)),
        ("minor", "expires", dt.date(2026, 4, 30)),
    ]
    assert due_within(records, dt.date(2026, 4, 20), 9) == []


# --- in the store --------------------------------------------------------------------------


SUBJECT = model.SubjectRef(model.SubjectIdType.USCC, make_uscc("91330500MA2B00001"))


def _china(day: dt.date, hour: int = 9) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, hour, tzinfo=CHINA)


def _setup(store: Store, clock: ManualClock, severity: Severity) -> str:
    result = make_result(result_id="cn-330500:r1", subject=SUBJECT, flags=("RED_LIST",))
    store.results.import_results(
        [result], source="a.csv", file_sha256="0" * 64, fmt="test", now=clock.now()
    )
    record = PenaltyRecord("CF-2026-0001", SUBJECT, "湖州绿源", severity, DECIDED, {"CF_WSH": "1"})
    added = store.penalties.add([record], clock.now())
    [flagged] = added.replaced.values()
    return flagged


def _current(store: Store) -> model.CreditResult:
    [current] = store.results.get_current(SUBJECT.id_type, SUBJECT.id)
    return current


def test_a_penalty_flags_its_subject_and_repair_takes_the_flag_away(store: Store) -> None:
    clock = ManualClock(_china(DECIDED + dt.timedelta(days=5)))
    flagged = _setup(store, clock, Severity.GENERAL)
    assert _current(store).result_id == flagged
    assert set(_current(store).flags) == {"RED_LIST", "ADMINISTRATIVE_PENALTY"}
    assert store.results.get("cn-330500:r1").status is model.ResultStatus.SUPERSEDED  # type: ignore[union-attr]

    # Too early: refused with the earliest date, nothing changes.
    head = store.changes.head()
    with pytest.raises(RepairTooEarly, match="may be repaired from 2026-04-30 on"):
        credit_repair.repair_record(store, "CF-2026-0001", "修复决定 1 号", clock)
    assert store.changes.head() == head and _current(store).result_id == flagged

    # On the earliest day in China (still the day before in UTC at 07:00): allowed.
    clock.set(_china(dt.date(2026, 4, 30), hour=7))
    reissued = credit_repair.repair_record(store, "CF-2026-0001", "修复决定 1 号", clock)
    repaired = _current(store)
    assert reissued.replaced == {flagged: repaired.result_id}
    assert repaired.flags == ("RED_LIST",) and repaired.supersedes == flagged
    old = store.results.get(flagged)
    assert old is not None and old.status is model.ResultStatus.REVOKED
    record = store.penalties.get("CF-2026-0001")
    assert record is not None and record.status is PenaltyStatus.REPAIRED
    assert record.close_reason == "修复决定 1 号"
    with pytest.raises(RecordClosed):
        credit_repair.repair_record(store, "CF-2026-0001", "again", clock)
    with pytest.raises(NotFound):
        credit_repair.repair_record(store, "CF-404", "none", clock)

    # The feed: the flagged result's content is never fed again; its REVOKE is.
    rule = policies.PurposeRule(
        "green-loan", frozenset({model.SubjectType.ENTERPRISE}), policies.OPTIONAL_FIELDS
    )
    scope = changefeed.feed_scope("cn-330000", {"yrd": rule})
    fed = changefeed.select_changes(store.changes.read(0, 100), scope)
    upserted = [c.result for c in fed if c.result is not None]
    assert all("ADMINISTRATIVE_PENALTY" not in r.flags for r in upserted)
    assert [c.kind for c in fed if c.result_id == flagged] == [model.ChangeKind.REVOKE]
    assert upserted[-1].result_id == repaired.result_id


def test_a_record_expires_at_its_maximum_publicity(store: Store) -> None:
    clock = ManualClock(_china(DECIDED + dt.timedelta(days=1)))
    flagged = _setup(store, clock, Severity.MINOR)
    clock.set(_china(dt.date(2026, 4, 29), hour=23))  # the day before: still in force
    assert credit_repair.expire_due(store, clock) == []
    assert _current(store).result_id == flagged
    clock.set(_china(dt.date(2026, 4, 30), hour=0))
    assert credit_repair.expire_due(store, clock) == ["CF-2026-0001"]
    assert _current(store).flags == ("RED_LIST",)
    old = store.results.get(flagged)
    assert old is not None and old.status is model.ResultStatus.REVOKED
    record = store.penalties.get("CF-2026-0001")
    assert record is not None and record.status is PenaltyStatus.EXPIRED
    assert credit_repair.expire_due(store, clock) == []  # nothing twice


def test_the_repair_commands(tmp_path: pathlib.Path) -> None:
    home = tmp_path / "huzhou"
    run_cli("init", "--node-id", "cn-330500", "--name", "湖州", "--home", home)
    node_home = NodeHome(home)
    today = china_day(SYSTEM.now())
    with Store.open(node_home.db_url(node_home.load_config())) as store:
        result = make_result(result_id="cn-330500:r1", subject=SUBJECT)
        store.results.import_results(
            [result], source="a.csv", file_sha256="0" * 64, fmt="test", now=SYSTEM.now()
        )
        record = PenaltyRecord("CF-9", SUBJECT, "湖州绿源", Severity.GENERAL, today, {})
        store.penalties.add([record], SYSTEM.now())
    earliest = add_months(today, 3)

    def creditnode(*args: object) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "node.cli", *map(str, args), "--home", str(home)]
        return subprocess.run(command, capture_output=True, text=True, timeout=120)

    early = creditnode("repair", "CF-9", "--reason", "修复")
    assert early.returncode != 0 and "Traceback" not in early.stderr
    assert f"error: record CF-9 (general penalty decided {today}) may be repaired from " in (
        early.stderr
    )
    assert f"{earliest} on" in early.stderr
    due = creditnode("repair", "due", "--within", "400d")
    assert due.returncode == 0, due.stderr
    assert f"{earliest}  repairable  CF-9" in due.stdout
    expired = creditnode("repair", "expire-due")
    assert expired.returncode == 0 and "0 records expired" in expired.stdout
    unknown = creditnode("repair", "CF-404", "--reason", "x")
    assert unknown.returncode != 0 and "no penalty record 'CF-404' here" in unknown.stderr
