"""The auditor API (issue 13 §1, §3): every filter, paging that neither skips nor repeats while
the log grows, entries with proofs that verify, checkpoints and consistency, refusals by who is
at fault, the access log of every request, and residents masked unless the token allows."""

from __future__ import annotations

import base64
import datetime as dt
import json
import pathlib
from collections.abc import AsyncIterator, Callable

import pytest
import sqlalchemy as sa

from node import model, wire
from node.answer.builder import pseudonymise
from node.audit import records
from node.audit import web as audit_web
from node.log import merkle, notes
from node.store import Store
from tests.audit.helpers import (
    COMPANIES,
    HMAC_KEY,
    PEERS,
    RESIDENT,
    START,
    Setting,
    audit_setting,
    log_signer,
    record,
    witness_signer,
)

N = 60
PSEUDONYM = pseudonymise(model.SubjectRef(model.SubjectIdType.RESIDENT_ID, RESIDENT), HMAC_KEY).id


@pytest.fixture
async def audit(sqlite_url: str, tmp_path: pathlib.Path) -> AsyncIterator[Setting]:
    """The test log on a SQLite file: for what does not depend on the backend."""
    with Store.open(sqlite_url) as store:
        async with audit_setting(store, tmp_path, N) as setting:
            yield setting


@pytest.fixture
async def audit_db(store: Store, tmp_path: pathlib.Path) -> AsyncIterator[Setting]:
    """The test log on each backend (SQLite file, PostgreSQL)."""
    async with audit_setting(store, tmp_path, N) as setting:
        yield setting


def expected(keep: Callable[[model.ExchangeRecord], bool], count: int = N) -> list[int]:
    """The indices of the test log that `keep` selects, newest first."""
    return [i for i in reversed(range(count)) if keep(record(i))]


async def all_pages(audit: Setting, token: str = "personal", **params: str) -> list[int]:
    found: list[int] = []
    cursor = ""
    while True:
        status, body = await audit.get("api/entries", token, limit="9", cursor=cursor, **params)
        assert status == 200, body
        found += [e["index"] for e in body["entries"]]
        if body["next_cursor"] is None:
            return found
        cursor = body["next_cursor"]


def _day(i: int) -> str:
    return (
        (START + dt.timedelta(hours=7 * i))
        .astimezone(dt.timezone(dt.timedelta(hours=8)))
        .date()
        .isoformat()
    )


FILTERS: list[tuple[str, dict[str, str], Callable[[model.ExchangeRecord], bool]]] = [
    ("peer", {"peer": PEERS[1]}, lambda r: records.peer_of(r) == PEERS[1]),
    ("zone", {"zone": "hjjw"}, lambda r: r.zone == "hjjw"),
    ("purpose", {"purpose": "xinyi-you"}, lambda r: r.purpose == "xinyi-you"),
    (
        "uscc",
        {"subject": COMPANIES[2]},
        lambda r: r.subject is not None and r.subject.id == COMPANIES[2],
    ),
    (
        "resident id",
        {"subject": RESIDENT},
        lambda r: r.subject is not None and r.subject.id == PSEUDONYM,
    ),
    (
        "pseudonym",
        {"subject": PSEUDONYM},
        lambda r: r.subject is not None and r.subject.id == PSEUDONYM,
    ),
    ("decision", {"decision": "refused"}, lambda r: r.decision is model.Decision.REFUSED),
    ("direction", {"direction": "ASKED"}, lambda r: r.direction is model.Direction.ASKED),
    (
        "time range",
        {
            "since": (START + dt.timedelta(hours=70)).isoformat(),
            "until": "2026-03-10T00:00:00+08:00",
        },
        lambda r: (
            START + dt.timedelta(hours=70) <= r.time < dt.datetime(2026, 3, 9, 16, tzinfo=dt.UTC)
        ),
    ),
    (
        "dates",
        {"since": _day(20), "until": _day(30)},
        lambda r: (
            _day(20)
            <= r.time.astimezone(dt.timezone(dt.timedelta(hours=8))).date().isoformat()
            <= _day(30)
        ),
    ),
    (
        "combined",
        {"peer": PEERS[2], "decision": "GRANTED", "purpose": "xinyi-dai"},
        lambda r: (
            records.peer_of(r) == PEERS[2]
            and r.decision is model.Decision.GRANTED
            and r.purpose == "xinyi-dai"
        ),
    ),
]


async def test_each_filter_finds_exactly_its_entries(audit_db: Setting) -> None:
    # One log per backend for every filter: a database per filter would cost more than the
    # filters themselves.
    for name, params, keep in FILTERS:
        want = expected(keep)
        assert want, f"the test log has no entry for filter {name}"
        assert await all_pages(audit_db, **params) == want, name
        assert await all_pages(audit_db, order="asc", **params) == sorted(want), name


async def test_a_zone_limited_auditor_sees_its_zones_only(audit: Setting) -> None:
    assert await all_pages(audit, "auditor") == expected(lambda r: r.zone == "yrd")


async def test_paging_neither_skips_nor_repeats_while_entries_are_appended(
    audit_db: Setting,
) -> None:
    audit = audit_db
    more = iter(range(N, N + 1000))
    seen_desc: list[int] = []
    seen_asc: list[int] = []
    cursors = {"desc": "", "asc": ""}
    done: set[str] = set()
    while len(done) < 2:
        for order, seen in (("desc", seen_desc), ("asc", seen_asc)):
            if order in done:
                continue
            status, body = await audit.get(
                "api/entries", "personal", limit="7", order=order, cursor=cursors[order]
            )
            assert status == 200
            seen += [e["index"] for e in body["entries"]]
            if body["next_cursor"] is None:
                done.add(order)
            else:
                cursors[order] = body["next_cursor"]
        # The log grows between every two pages.
        await audit.append([wire.record_bytes(record(next(more))) for _ in range(3)])
    top = seen_desc[0]
    assert seen_desc == list(range(top, -1, -1)), "newest first: every entry once, none skipped"
    assert seen_asc == list(range(len(seen_asc))), "oldest first: every entry once, in order"
    assert len(seen_asc) > N, "oldest first reaches the entries appended meanwhile"


async def test_an_entry_comes_with_a_proof_that_verifies(audit_db: Setting) -> None:
    audit = audit_db
    status, body = await audit.get("api/entries/5", "personal")
    assert status == 200
    data = base64.b64decode(body["data"])
    assert wire.record_from_bytes(data) == record(5)
    leaf = base64.b64decode(body["leaf_hash"])
    assert leaf == merkle.leaf_hash(data)
    witness = witness_signer().verifier()
    verified = notes.open_checkpoint(body["checkpoint"], log_signer().verifier(), [witness])
    assert verified.note.timestamp_of(witness.name) is not None, "the witness cosigned it"
    proof = body["proof"]
    assert proof["tree_size"] == verified.checkpoint.size == N
    merkle.verify_inclusion(
        5, N, leaf, [base64.b64decode(h) for h in proof["hashes"]], verified.checkpoint.root_hash
    )
    assert body["entry"]["decision"] == record(5).decision.name
    assert (await audit.get("api/entries/99999", "personal"))[0] == 404


async def test_checkpoints_and_consistency_between_them(audit: Setting) -> None:
    old_size = N
    _, old = await audit.get("api/checkpoints", "personal")
    await audit.append([wire.record_bytes(record(i)) for i in range(N, N + 25)])
    status, now = await audit.get("api/checkpoints", "personal", limit="2")
    assert status == 200
    assert [c["size"] for c in now["checkpoints"]] == [N + 25, N]
    old_root = notes.open_checkpoint(old["latest"], log_signer().verifier()).checkpoint.root_hash
    new_root = notes.open_checkpoint(now["latest"], log_signer().verifier()).checkpoint.root_hash
    status, proof = await audit.get(
        "api/consistency", "personal", **{"from": str(old_size), "to": str(N + 25)}
    )
    assert status == 200
    merkle.verify_consistency(
        old_size, N + 25, old_root, new_root, [base64.b64decode(h) for h in proof["hashes"]]
    )
    status, body = await audit.get("api/consistency", "personal", **{"from": "3", "to": "999"})
    assert (status, body["error"]["reason"]) == (400, "INVALID_ARGUMENT")


@pytest.mark.parametrize(
    ("token", "path", "params", "status", "reason"),
    [
        (None, "api/entries", {}, 401, "NO_TOKEN"),
        ("cia_not-a-token", "api/entries", {}, 401, "BAD_TOKEN"),
        ("x" * 5000, "api/entries", {}, 401, "BAD_TOKEN"),
        ("auditor", "api/access-log", {}, 403, "ROLE_NOT_ALLOWED"),
        ("auditor", "api/entries", {"zone": "hjjw"}, 403, "ZONE_NOT_ALLOWED"),
        ("auditor", "api/export", {"zone": "hz-metro"}, 403, "ZONE_NOT_ALLOWED"),
        ("auditor", "api/stats", {"zone": "hjjw"}, 403, "ZONE_NOT_ALLOWED"),
        ("auditor", "api/entries/1", {}, 403, "ZONE_NOT_ALLOWED"),  # entry 1 is of zone hjjw
    ],
    ids=[
        "no token",
        "bad token",
        "huge token",
        "wrong role",
        "zone",
        "export zone",
        "stats zone",
        "entry zone",
    ],
)
async def test_refusals(
    audit: Setting, token: str | None, path: str, params: dict[str, str], status: int, reason: str
) -> None:
    got, body = await audit.get(path, token, **params)
    assert (got, body["error"]["reason"]) == (status, reason)
    if token is not None:
        assert audit.tokens.get(token, token)[:20] not in body["error"]["message"]


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"peer": "cn-" + "9" * 4000}, "9999"),
        ({"subject": "33050219800101003Z"}, "33050219800101003"),  # a bad resident id
        (
            {"subject": RESIDENT[:17] + ("1" if RESIDENT[17] != "1" else "2")},
            RESIDENT[:17],
        ),  # wrong check digit
        ({"zone": "Y" * 90}, "YYYY"),
        ({"nonsense" * 50: "1"}, "nonsense" * 5),
        ({"limit": "100000"}, "100000"),
        ({"cursor": "-1"}, "-1"),
        ({"since": "yesterday"}, "yesterday"),
    ],
    ids=[
        "long peer",
        "bad resident id",
        "wrong check digit",
        "long zone",
        "long name",
        "limit",
        "cursor",
        "since",
    ],
)
async def test_bad_input_is_refused_without_echoing_it(
    audit: Setting, params: dict[str, str], needle: str
) -> None:
    status, body = await audit.get("api/entries", "personal", **params)
    assert status == 400
    assert needle not in body["error"]["message"]


async def test_every_request_is_recorded_and_the_record_cannot_be_altered(
    audit_db: Setting,
) -> None:
    audit = audit_db
    await audit.get("api/entries", "auditor", purpose="xinyi-dai", limit="5")
    audit.clock.advance(60)
    await audit.get("api/entries", "personal", subject=RESIDENT)
    await audit.get("api/entries", None)
    await audit.get("api/access-log", "auditor")
    status, body = await audit.get("api/access-log", "operator")
    assert status == 200
    logged = list(reversed(body["records"]))[-4:]
    assert [(r["who"], r["action"], r["status"]) for r in logged] == [
        ("auditor", "search", 200),
        ("personal", "search", 200),
        ("-", "search", 401),
        ("auditor", "access-log", 403),
    ]
    first, second = logged[0], logged[1]
    assert first["filter"] == {"purpose": "xinyi-dai", "limit": "5"} or first["filter"] == {
        "purpose": "xinyi-dai"
    }
    assert first["rows"] == 5
    assert first["at"] == (audit.clock.now() - dt.timedelta(seconds=60)).isoformat().replace(
        "+00:00", "Z"
    )
    # The clear resident id reaches neither the access log nor anything else it records.
    assert second["filter"] == {"subject": PSEUDONYM}
    assert second["rows"] == len(
        expected(lambda r: r.subject is not None and r.subject.id == PSEUDONYM)
    )
    assert RESIDENT not in json.dumps(body)
    for statement in ("UPDATE audit_access SET who = 'x'", "DELETE FROM audit_access"):
        with pytest.raises(sa.exc.DBAPIError, match="append-only"), audit.store.begin() as conn:
            conn.execute(sa.text(statement))


async def test_residents_are_masked_unless_the_token_allows(audit: Setting) -> None:
    person = 4  # record(4) is about a resident (helpers.subject_of)
    status, masked = await audit.get(f"api/entries/{person}", "operator")
    assert status == 200
    assert masked["entry"]["subject"] == PSEUDONYM[: len("hmac-sha256:") + 8] + "…"
    assert masked["data"] is None, "the entry's bytes hold the pseudonym whole"
    _, whole = await audit.get(f"api/entries/{person}", "personal")
    assert whole["entry"]["subject"] == PSEUDONYM
    assert base64.b64decode(whole["data"]) == wire.record_bytes(record(person))
    for token, shown in (("operator", False), ("personal", True)):
        _, csv_body = await audit.get("api/export", token, subject=RESIDENT)
        text = csv_body.decode("utf-8-sig")
        assert (PSEUDONYM in text) is shown
        assert RESIDENT not in text
        _, page = await audit.get("api/entries", token, subject=RESIDENT)
        assert {e["subject"] == PSEUDONYM for e in page["entries"]} == {shown}


def test_free_text_is_masked() -> None:
    text = f"peer said: subject {RESIDENT} unknown; code 9133050MA0000001X stays"
    assert records.mask_text(text) == (
        f"peer said: subject {RESIDENT[:6]}********{RESIDENT[-4:]} unknown; "
        "code 9133050MA0000001X stays"
    )


async def test_exports_as_csv_with_bom_gb18030_and_ndjson(audit: Setting) -> None:
    want = expected(lambda r: r.zone == "yrd")
    status, body = await audit.get("api/export", "auditor")
    assert status == 200
    assert body.startswith(b"\xef\xbb\xbf")
    lines = body.decode("utf-8-sig").splitlines()
    assert lines[0].split(",") == list(records.FIELDS)
    assert [int(line.split(",")[0]) for line in lines[1:]] == want
    status, gb = await audit.get("api/export", "auditor", encoding="gb18030", order="asc")
    assert status == 200 and not gb.startswith(b"\xef\xbb\xbf")
    assert [int(line.split(",")[0]) for line in gb.decode("gb18030").splitlines()[1:]] == sorted(
        want
    )
    status, nd = await audit.get("api/export", "auditor", format="ndjson", decision="GRANTED")
    rows = [json.loads(line) for line in nd.decode().splitlines()]
    assert [r["index"] for r in rows] == [
        i for i in want if record(i).decision is model.Decision.GRANTED
    ]
    assert (await audit.get("api/export", "auditor", format="ndjson", encoding="gb18030"))[0] == 400


async def test_charts_count_by_peer_day_and_refusal_reason(audit_db: Setting) -> None:
    audit = audit_db
    status, body = await audit.get("api/stats", "personal", since="2026-01-01")
    assert status == 200
    assert sum(v["count"] for v in body["volume"]) == N
    day = {(v["day"], v["peer"]): v["count"] for v in body["volume"]}
    i = 10
    assert day[(_day(i), records.peer_of(record(i)))] >= 1
    refused = {r["reason"]: r["count"] for r in body["refusals"]}
    assert refused == {
        "NOT_IN_ZONE": len(expected(lambda r: r.decision is model.Decision.REFUSED)),
        "SUBJECT_NOT_FOUND": len(expected(lambda r: r.decision is model.Decision.NOT_FOUND)),
        "FAILED": len(expected(lambda r: r.decision is model.Decision.FAILED)),
    }
    _, limited = await audit.get("api/stats", "auditor", since="2026-01-01")
    assert sum(v["count"] for v in limited["volume"]) == len(expected(lambda r: r.zone == "yrd"))


async def test_the_openapi_description_names_every_route(audit: Setting) -> None:
    status, body = await audit.get("api/openapi.json", None)
    assert status == 200
    described = set(body["paths"])
    served = {
        route.resource.canonical
        for route in audit_web.application(audit.service).router.routes()
        if route.resource is not None and route.resource.canonical.startswith("/api/")
    }
    assert (
        described
        == served
        == {
            "/api/info",
            "/api/entries",
            "/api/entries/{index}",
            "/api/checkpoints",
            "/api/consistency",
            "/api/stats",
            "/api/export",
            "/api/access-log",
            "/api/records/{record_id}/repair",
            "/api/openapi.json",
        }
    )
    names = {p["name"] for p in body["paths"]["/api/entries"]["get"]["parameters"]}
    assert names >= {
        "peer",
        "zone",
        "purpose",
        "subject",
        "decision",
        "direction",
        "since",
        "until",
        "cursor",
        "limit",
    }


async def test_info_names_the_keys_to_pin(audit: Setting) -> None:
    status, body = await audit.get("api/info", "auditor")
    assert status == 200
    assert body["log_verifier_key"] == log_signer().verifier_key_text()
    assert body["witnesses"] == [
        {"name": witness_signer().name, "verifier_key": witness_signer().verifier_key_text()}
    ]
    assert body["you"] == {
        "name": "auditor",
        "role": "auditor",
        "zones": ["yrd"],
        "personal": False,
    }
    assert body["log_size"] == N
