"""Credit repair over the auditor service's HTTP API (issue 12, NDRC Order No. 36): the local
platform, with an operator's token, repairs a penalty record on the real server and store;
too early is refused with the earliest date; every attempt is in the access log; auditors,
strangers and malformed requests are refused without a change and without an echo."""

from __future__ import annotations

import datetime as dt
import json
import pathlib
import urllib.parse
from collections.abc import AsyncIterator

import pytest

from node import model
from node.audit import repairs
from node.identifiers import make_uscc
from node.repair import CHINA, MAX_REASON_CHARS, PenaltyStatus, Severity, add_months, china_day
from node.store import Store
from node.store.penalties import PenaltyRecord
from tests.audit.helpers import Setting, audit_setting
from tests.results import make_result

SUBJECT = model.SubjectRef(model.SubjectIdType.USCC, make_uscc("91330500MA2B00001"))
RECORD = "湖环罚〔2026〕12号"  # a decision number, as 双公示 files name records
PATH = f"api/records/{urllib.parse.quote(RECORD, safe='')}/repair"
REASON = "信用修复决定书 湖信修〔2027〕3号"


def _flag(store: Store, now: dt.datetime, decided: dt.date) -> str:
    """A company's result, then a general penalty that flags it; the flagged result's id."""
    result = make_result(result_id="cn-330500:r1", subject=SUBJECT, flags=("RED_LIST",))
    store.results.import_results(
        [result], source="a.csv", file_sha256="0" * 64, fmt="test", now=now
    )
    record = PenaltyRecord(RECORD, SUBJECT, "湖州绿源", Severity.GENERAL, decided, {})
    [flagged] = store.penalties.add([record], now).replaced.values()
    return flagged


def _body(reason: str) -> bytes:
    return json.dumps({"reason": reason}).encode()


@pytest.fixture
async def audit(sqlite_url: str, tmp_path: pathlib.Path) -> AsyncIterator[Setting]:
    with Store.open(sqlite_url) as store:
        async with audit_setting(store, tmp_path) as setting:
            yield setting


async def test_an_operator_repairs_a_record_once_it_may_be(
    store: Store, tmp_path: pathlib.Path
) -> None:
    async with audit_setting(store, tmp_path) as audit:
        decided = china_day(audit.clock.now()) - dt.timedelta(days=40)
        earliest = add_months(decided, 3)
        flagged = _flag(store, audit.clock.now(), decided)

        # Too early: 409 with the earliest day, and nothing changes.
        head = store.changes.head()
        status, body = await audit.post(PATH, _body(REASON))
        assert (status, body["error"]["reason"]) == (409, "REPAIR_TOO_EARLY")
        assert body["error"]["earliest"] == earliest.isoformat()
        assert f"may be repaired from {earliest} on" in body["error"]["message"]
        assert store.changes.head() == head
        [current] = store.results.get_current(SUBJECT.id_type, SUBJECT.id)
        assert current.result_id == flagged

        # On the earliest day in China, by the service's own clock: repaired.
        audit.clock.set(dt.datetime.combine(earliest, dt.time(0, 30), CHINA))
        status, body = await audit.post(PATH, _body(f"  {REASON}\n"))
        assert status == 200, body
        [current] = store.results.get_current(SUBJECT.id_type, SUBJECT.id)
        assert body == {
            "record_id": RECORD,
            "status": "REPAIRED",
            "reissued": [{"old": flagged, "new": current.result_id}],
        }
        assert current.flags == ("RED_LIST",) and current.supersedes == flagged
        held = store.penalties.get(RECORD)
        assert held is not None and held.status is PenaltyStatus.REPAIRED
        assert held.close_reason == REASON
        assert held.closed_at == audit.clock.now()

        status, body = await audit.post(PATH, _body(REASON))
        assert (status, body["error"]["reason"]) == (409, "RECORD_CLOSED")
        status, body = await audit.post("api/records/CF-404/repair", _body(REASON))
        assert (status, body["error"]["reason"]) == (404, "NO_RECORD")
        status, body = await audit.post(PATH, _body(REASON), token="auditor")
        assert (status, body["error"]["reason"]) == (403, "ROLE_NOT_ALLOWED")

        # Every attempt is in the access log: who, which record, why, what came of it.
        _, logged = await audit.get("api/access-log", "operator", limit="5")
        repairs_logged = [r for r in reversed(logged["records"]) if r["action"] == "repair"]
        assert [(r["who"], r["filter"], r["status"], r["rows"]) for r in repairs_logged] == [
            ("operator", {"record": RECORD, "reason": REASON}, 409, 0),
            ("operator", {"record": RECORD, "reason": REASON}, 200, 1),
            ("operator", {"record": RECORD, "reason": REASON}, 409, 0),
            ("operator", {"record": "CF-404", "reason": REASON}, 404, 0),
            ("auditor", {"record": RECORD}, 403, 0),
        ]


async def test_a_resident_id_in_the_reason_is_masked_in_the_access_log(audit: Setting) -> None:
    resident = "330502198001010037"
    status, _ = await audit.post("api/records/CF-404/repair", _body(f"本人 {resident} 申请"))
    assert status == 404
    _, logged = await audit.get("api/access-log", "operator", limit="1")
    [entry] = logged["records"]
    assert entry["filter"]["reason"] == "本人 330502********0037 申请"
    assert resident not in json.dumps(logged)


LONG_ID = "x" * 129
NEEDLE = "SECRETIVE"


@pytest.mark.parametrize(
    ("token", "path", "body", "status", "reason"),
    [
        (None, PATH, _body(REASON), 401, "NO_TOKEN"),
        ("cia_not-a-token", PATH, _body(REASON), 401, "BAD_TOKEN"),
        ("auditor", PATH, _body(REASON), 403, "ROLE_NOT_ALLOWED"),
        ("personal", PATH, _body(REASON), 403, "ROLE_NOT_ALLOWED"),
        ("operator", PATH, b"reason=" + NEEDLE.encode(), 400, "BAD_BODY"),
        ("operator", PATH, b"", 400, "BAD_BODY"),
        ("operator", PATH, json.dumps([NEEDLE]).encode(), 400, "BAD_BODY"),
        ("operator", PATH, json.dumps({"reason": "x", NEEDLE: 1}).encode(), 400, "BAD_BODY"),
        ("operator", PATH, json.dumps({"reason": [NEEDLE]}).encode(), 400, "BAD_BODY"),
        ("operator", PATH, _body("   "), 400, "INVALID_ARGUMENT"),
        ("operator", PATH, _body(NEEDLE * 60), 400, "INVALID_ARGUMENT"),
        ("operator", PATH, _body(NEEDLE + "\x00"), 400, "BAD_BODY"),
        ("operator", PATH, b'{"reason": "\\ud800' + NEEDLE.encode() + b'"}', 400, "BAD_BODY"),
        ("operator", PATH, b"\xff" + NEEDLE.encode(), 400, "BAD_BODY"),
        ("operator", PATH, b"[" * 4000 + b"]" * 4000, 400, "BAD_BODY"),
        ("operator", PATH, _body(NEEDLE * 2000), 400, "BAD_BODY"),
        ("operator", f"api/records/{LONG_ID}/repair", _body(REASON), 400, "BAD_RECORD_ID"),
        ("operator", "api/records/CF%01X/repair", _body(REASON), 400, "BAD_RECORD_ID"),
        ("operator", f"{PATH}?limit=1", _body(REASON), 400, "INVALID_ARGUMENT"),
    ],
    ids=[
        "no token",
        "bad token",
        "auditor",
        "personal auditor",
        "not json",
        "empty",
        "array",
        "extra key",
        "reason not text",
        "blank reason",
        "reason too long",
        "nul",
        "lone surrogate",
        "not utf-8",
        "deeply nested",
        "body too large",
        "record id too long",
        "control character in id",
        "unknown parameter",
    ],
)
async def test_refusals_change_nothing_and_echo_nothing(
    audit: Setting, token: str | None, path: str, body: bytes, status: int, reason: str
) -> None:
    decided = china_day(audit.clock.now()) - dt.timedelta(days=200)  # repairable, in force
    flagged = _flag(audit.store, audit.clock.now(), decided)
    got, answer = await audit.post(path, body, token=token)
    assert (got, answer["error"]["reason"]) == (status, reason)
    message = answer["error"]["message"]
    assert NEEDLE not in message and LONG_ID not in message
    held = audit.store.penalties.get(RECORD)
    assert held is not None and held.status is PenaltyStatus.IN_FORCE
    [current] = audit.store.results.get_current(SUBJECT.id_type, SUBJECT.id)
    assert current.result_id == flagged


def test_the_body_limit_holds_the_longest_reason() -> None:
    longest = "\u4e00" * MAX_REASON_CHARS  # each \\u-escaped: six bytes
    body = json.dumps({"reason": longest}).encode("ascii")
    assert len(body) <= repairs.MAX_BODY_BYTES
    assert repairs.parse_repair(RECORD, body).reason == longest
